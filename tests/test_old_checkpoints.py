"""Checkpoints of the earlier format (tests/fixtures/saved_by_f0cac04, written by commit f0cac04, see its README)
load with today's code and give the logits that code gave; saved again, they load as remote code.

The expected logits were computed on another CPU (AVX-512): kernels of another instruction set,
or the same weights at another memory alignment, may round differently in the last bits (measured
here on an AVX2 EPYC: 2.4e-7 at most), so they are compared to float32 rounding (1e-5), which
any wrongly loaded tensor exceeds by orders of magnitude; every way of loading them on this
machine gives bit-identical logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import load_in_fresh_process_without_package
from transformers import AutoModelForCausalLM

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.model_folder import load_model_strictly

FIXTURES = Path(__file__).parent / "fixtures" / "saved_by_f0cac04"
CASES = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())


def test_every_fixture_is_there():
    assert CASES == ["levy-srnn-out-and-gates", "levy-variants-untied", "multi-timescale", "reference-grid-all-frozen"]


@pytest.mark.parametrize("case", CASES)
def test_old_checkpoint_gives_identical_logits(case, tmp_path):
    folder = FIXTURES / case
    expected = torch.load(folder / "expected_logits.pt", weights_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(model) is MTLSTMForCausalLM
    strict = load_model_strictly(folder, MTLSTMForCausalLM).eval()
    with torch.no_grad():
        logits = model(expected["input_ids"]).logits
        assert torch.equal(strict(expected["input_ids"]).logits, logits)
    torch.testing.assert_close(logits, expected["logits"], rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path / "again")
    remote = load_in_fresh_process_without_package(tmp_path / "again", expected["input_ids"], tmp_path / "remote")
    assert torch.equal(remote["logits"], logits)
