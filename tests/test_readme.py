"""The README's Python runs as pasted (issue 23 item 10): its ``python`` code blocks, in order
(each builds on the ones before, as a reader pastes them into one session), run in a fresh
process from an empty folder that holds what the README's commands leave there: the main job's
``outputs/mtlstm-small/best_model`` (here a small untrained stand-in with the sample's tokenizer,
saved as ``mtlstm-train`` saves it). Also: the code fences are balanced and none is glued to text."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.S | re.M)


def python_blocks() -> list[str]:
    return [body for language, body in FENCE.findall(README.read_text(encoding="utf-8")) if language == "python"]


def test_every_fence_opens_and_closes_on_a_line_of_its_own():
    lines = README.read_text(encoding="utf-8").splitlines()
    fences = [line for line in lines if "```" in line]
    assert all(line.strip().startswith("```") and line.count("```") == 1 for line in fences), [
        line for line in fences if not line.strip().startswith("```") or line.count("```") != 1
    ]
    assert len(fences) % 2 == 0
    closing = [line for line in fences[1::2]]
    assert all(line.strip() == "```" for line in closing), closing


def test_the_readme_python_runs_as_pasted_in_a_fresh_process(tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("onnx")
    blocks = python_blocks()
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
