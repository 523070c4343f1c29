"""The README's and the documentation's Python runs as pasted: the ``python`` code blocks of
``docs/usage.md`` and then ``docs/lora.md``, in order (each builds on the ones before, as a reader
pastes them into one session), run in a fresh process from an empty folder that holds what the
main job leaves there: ``outputs/mtlstm-small/best_model`` (here a small untrained stand-in with
the sample's tokenizer, saved as ``mtlstm-train`` saves it). The README's example is one of those
blocks, verbatim. Also: in the README and every documentation page, the code fences are balanced
and none is glued to text."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SESSION_PAGES = [DOCS / "usage.md", DOCS / "lora.md"]
"""The pages whose Python blocks make one session, in the order a reader pastes them."""
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return [body for language, body in FENCE.findall(path.read_text(encoding="utf-8")) if language == "python"]


def session_blocks() -> list[str]:
    return [block for page in SESSION_PAGES for block in python_blocks(page)]


@pytest.mark.parametrize("path", [README, *sorted(DOCS.rglob("*.md"))], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_fence_opens_and_closes_on_a_line_of_its_own(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    fences = [line for line in lines if "```" in line]
    assert all(line.strip().startswith("```") and line.count("```") == 1 for line in fences), [
        line for line in fences if not line.strip().startswith("```") or line.count("```") != 1
    ]
    assert len(fences) % 2 == 0
    closing = [line for line in fences[1::2]]
    assert all(line.strip() == "```" for line in closing), closing


def test_the_readme_python_is_a_block_of_the_session():
    readme_blocks = python_blocks(README)
    assert readme_blocks, "the README shows a Python example"
    assert all(block in session_blocks() for block in readme_blocks)


def test_the_documented_python_runs_as_pasted_in_a_fresh_process(tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("onnx")
    blocks = session_blocks()
    assert len(blocks) >= 4
    import torch

    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
    from mtlstm_hf.data import build_word_tokenizer, load_corpus, sample_corpus_dir

    tokenizer = build_word_tokenizer(load_corpus(sample_corpus_dir())["train"])
    torch.manual_seed(0)
    config = MTLSTMConfig.from_preset(
        "small", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    best_model = tmp_path / "outputs" / "mtlstm-small" / "best_model"
    MTLSTMForCausalLM(config).save_pretrained(best_model)
    tokenizer.save_pretrained(best_model)
    script = "\n\n".join(blocks)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "my-model" / "config.json").is_file() and (tmp_path / "mtlstm.onnx").is_file()
    assert re.search(r"layer 2: T from [\d.]+ to [\d.]+ tokens", done.stdout), done.stdout[-2000:]
