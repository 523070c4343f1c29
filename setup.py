"""Packaging of mtlstm_hf. Install with the project's constraints (see README):

    pip install -c constraints.txt -e ".[dev]"
"""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="mtlstm_hf",
    version="0.1.0",
    description="Multi-timescale LSTM language models (Mahto et al., ICLR 2021) for Hugging Face transformers",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["mtlstm_hf", "mtlstm_hf.*"]),
    include_package_data=True,
    package_data={"mtlstm_hf": ["py.typed", "data/wikitext2_sample/*", "evaluation/metrics/*/*", "analysis/README.md"]},
    install_requires=[
        "torch>=2.2",
        "transformers>=5.10,<6",  # 5.10: remote code with nested relative imports
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "datasets>=3.0",
        "accelerate>=1.0",
        "evaluate>=0.4.3",
        "scipy>=1.10",
        "matplotlib>=3.7",  # the analyses' figures (mtlstm-analyze, mtlstm-reproduce)
    ],
    extras_require={
        "plot": [],  # kept so that `pip install mtlstm_hf[plot]` still works: matplotlib is a dependency now
        # peft: LoRA tests (target_parameters); onnx*: the ONNX export run in ONNX Runtime
        "dev": ["pytest>=8", "peft>=0.17", "onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.3"],
    },
    entry_points={
        "console_scripts": [
            "mtlstm-train=mtlstm_hf.training.cli:main",
            "mtlstm-demo=mtlstm_hf.demo:main",
            "mtlstm-eval=mtlstm_hf.evaluation.cli:main",
            "mtlstm-push=mtlstm_hf.hub.cli:main",
            "mtlstm-analyze=mtlstm_hf.analysis.cli:main",
            "mtlstm-convert=mtlstm_hf.convert.cli:main",
            "mtlstm-reproduce=mtlstm_hf.reproduce.cli:main",
        ]
    },
)
