"""Stage 0 of the GPU check: what the machine and its software are (versions, cuDNN, TF32 flags,
the GPU), and whether the library imports there (``datasets`` must have been carried as a wheel).

    python benchmarks/gpu/env.py --json env.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
from pathlib import Path


def version(name: str) -> str | None:
    try:
        return getattr(importlib.import_module(name), "__version__", "?")
    except Exception as error:  # noqa: BLE001 (recorded, not raised)
        return f"missing ({type(error).__name__}: {error})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {
            name: version(name)
            for name in (
                "torch",
                "transformers",
                "accelerate",
                "datasets",
                "safetensors",
                "tokenizers",
                "numpy",
                "scipy",
            )
        },
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32": {
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": properties.name,
            "count": torch.cuda.device_count(),
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "capability": f"{properties.major}.{properties.minor}",
            "multiprocessors": properties.multi_processor_count,
            "bf16": torch.cuda.is_bf16_supported(),
        }
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:
            info["nvidia_smi"] = f"failed: {error}"
    imports = {}
    for module in (
        "mtlstm_hf",
        "mtlstm_hf.data.corpus",
        "mtlstm_hf.training",
        "mtlstm_hf.evaluation",
        "mtlstm_hf.analysis",
    ):
        try:
            importlib.import_module(module)
            imports[module] = "ok"
        except Exception as error:  # noqa: BLE001
            imports[module] = f"{type(error).__name__}: {error}"
    info["imports"] = imports
    Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0 if all(value == "ok" for value in imports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
