"""``mtlstm-analyze`` and the Python API on saved models of other architectures (Mamba, Mamba2, RWKV,
RecurrentGemma, xLSTM; small random models from their configs, saved with a word-level tokenizer):
the analyses that apply run through the registry and report machinery, the others are skipped with
the reason; bad input names what is allowed. Oracles: the report written to disk against the same
analyses run on the loaded pair (``run_analyses``), the channel counts of the configs, the exit codes."""

from __future__ import annotations

import json
import math

import pytest
import torch
import transformers
from architecture_models import ARCHITECTURES, build, corpus_dir, streams, tokenizer  # noqa: F401 (fixtures)
from hub_server import hub  # noqa: F401 (the fixture)
from transformers import MambaConfig

from mtlstm_hf.analysis import AnalysisSettings, analyze_checkpoint, run_analyses
from mtlstm_hf.analysis.architectures import adapter_for
from mtlstm_hf.analysis.cli import main
from mtlstm_hf.evaluation import bin_labels

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = [
    *("--bin-edges", "4", "15", "60", "--chunk-size", "3", "--window", "17", "--mi-max-distance", "40"),
    *("--swap-context-length", "10", "--swap-segment-length", "8", "--swap-samples", "4"),
]


# ---------------------------------------------------------------------------
# End to end: mtlstm-analyze and the Python API on a saved model with its own tokenizer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_mtlstm_analyze_runs_what_applies_and_skips_the_rest(architecture, corpus_dir, tokenizer, tmp_path, capsys):
    folder = tmp_path / "model"
    build(architecture, vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    output = tmp_path / "report"
    status = main([str(folder), "--data", str(corpus_dir), "--output-dir", str(output), "--no-progress-bar", *FAST])
    assert status == 0, capsys.readouterr().err
    report = json.loads((output / "report.json").read_text())
    assert list(report["analyses"]) == ["timescales", "ablation", "mutual_information", "context_swap"]
    assert set(report["skipped"]) == {"state_gradients", "weighted_sum", "memory_span"}
    for name, reason in report["skipped"].items():
        assert (
            reason.startswith(f"{name} needs ") and "timescales, ablation, mutual_information, context_swap" in reason
        )
    swap = report["analyses"]["context_swap"]["layers"]
    # every block's hidden state (attention blocks too: the measure needs no recurrence)
    assert [entry["layer"] for entry in swap] == list(range(1, len(swap) + 1)) and len(swap) >= 1
    assert all(
        entry["units"] == entry["converged_units"] + entry["unmeasured_units"] or entry["units"] > 0 for entry in swap
    )
    assert report["pending"] == []
    assert report["model"]["architecture"] == architecture
    timescales = report["analyses"]["timescales"]
    assert timescales["architecture"]["name"] == architecture
    assert [entry["layer"] for entry in timescales["layers"]] == report["model"]["recurrent_layers"]
    for entry, units in zip(timescales["layers"], report["model"]["units"]):
        assert entry["summary"]["n_units"] == units and len(entry["timescales"]) == units
        assert set(entry["fits"]) == {"inverse_gamma", "lognormal", "exponential", "gamma"} or "error" in entry["fits"]
    ablation = report["analyses"]["ablation"]["frequency"]
    assert ablation["order"] == "estimated" and ablation["labels"] == bin_labels([4, 15, 60])
    assert len(ablation["ratio_matrix"]) == math.ceil(
        report["model"]["channels"][len(report["model"]["channels"]) // 2] / 3
    )
    assert report["analyses"]["mutual_information"]["model_timescales"] == "estimated"
    for name in ("timescale_histograms", "routing_frequency", "mutual_information"):
        assert (output / report["figures"][name]).read_bytes().startswith(b"\x89PNG")
    err = capsys.readouterr().err
    assert "skipped state_gradients" in err
    # The same command again continues the finished report (nothing to redo).
    assert main([str(folder), "--data", str(corpus_dir), "--output-dir", str(output), "--no-progress-bar", *FAST]) == 0


def test_python_api_on_a_folder_and_on_a_loaded_pair(corpus_dir, tokenizer, streams, tmp_path):
    folder = tmp_path / "model"
    model = build("mamba", vocab_size=len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    settings = AnalysisSettings(bin_edges=[4, 15, 60], chunk_size=8, window=17, mi_max_distance=40)
    report = analyze_checkpoint(folder, corpus_dir, analyses="timescales,ablation", settings=settings, figures=False)
    stream, train = streams
    direct = run_analyses(model, tokenizer, stream, [train], "timescales,ablation", settings, figures=False)
    assert report["analyses"]["timescales"]["layers"][0]["timescales"] == pytest.approx(
        direct["analyses"]["timescales"]["layers"][0]["timescales"], rel=1e-12
    )
    found = torch.tensor(report["analyses"]["ablation"]["frequency"]["ratio_matrix"], dtype=torch.float64)
    expected = torch.tensor(direct["analyses"]["ablation"]["frequency"]["ratio_matrix"], dtype=torch.float64)
    torch.testing.assert_close(found, expected, rtol=1e-6, atol=0, equal_nan=True)
    pair = analyze_checkpoint((model, tokenizer), corpus_dir, analyses="timescales", settings=settings, figures=False)
    assert pair["fingerprints"]["model"] == report["fingerprints"]["model"]


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_an_unsupported_architecture_names_the_supported_ones(corpus_dir, tokenizer, tmp_path, capsys):
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2)
    )
    with pytest.raises(
        ValueError,
        match=r"model_type 'gpt2'.*supported architectures: MTLSTMForCausalLM \(mtlstm\), "
        r"MambaForCausalLM \(mamba\), Mamba2ForCausalLM \(mamba2\), RwkvForCausalLM \(rwkv\)",
    ):
        adapter_for(model)
    folder = tmp_path / "gpt2"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    status = main([str(folder), "--data", str(corpus_dir), "--output-dir", str(tmp_path / "out"), "--no-progress-bar"])
    assert status == 2
    err = capsys.readouterr().err
    assert "gpt2" in err and "xLSTMForCausalLM (xlstm)" in err and "RecurrentGemmaForCausalLM (recurrent_gemma)" in err
    with pytest.raises(
        ValueError, match=r"MambaForCausalLM \(the language model with its output layer\), got MambaModel"
    ):
        adapter_for(transformers.MambaModel(MambaConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1)))


def test_an_analysis_that_cannot_run_says_why_and_the_others_run(corpus_dir, tokenizer, tmp_path, capsys):
    folder = tmp_path / "model"
    build("recurrent_gemma", vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    output = tmp_path / "report"
    # Layer 3 is local attention: no retention to order or ablate.
    argv = [str(folder), "--data", str(corpus_dir), "--output-dir", str(output), "--no-progress-bar", *FAST]
    assert main([*argv, "--ablation-layer", "3", "--analyses", "timescales,ablation,weighted_sum"]) == 0
    report = json.loads((output / "report.json").read_text())
    assert list(report["analyses"]) == ["timescales"]
    assert report["skipped"]["ablation"] == (
        "layer 3 of this 3-layer RecurrentGemma model has no recurrence with a retention; layers with one: [1, 2]."
    )
    assert "weighted_sum needs an LSTM memory cell" in report["skipped"]["weighted_sum"]
    assert "RecurrentGemma (recurrent_gemma) has none" in report["skipped"]["weighted_sum"]
    capsys.readouterr()
    # Every selected analysis skipped: exit 2 with the reasons.
    assert main([*argv, "--output-dir", str(tmp_path / "none"), "--analyses", "memory_span"]) == 2
    assert "memory_span needs" in capsys.readouterr().err


def test_a_folder_without_a_tokenizer_or_an_unknown_hub_id(corpus_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "model"
    build("rwkv", vocab_size=40).save_pretrained(folder)
    assert main([str(folder), "--data", str(corpus_dir), "--output-dir", str(tmp_path / "a"), "--no-progress-bar"]) == 2
    assert "has no tokenizer" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = main(["nobody/no-such-model", "--data", str(corpus_dir), "--output-dir", str(tmp_path / "b")])
    assert status == 4  # an I/O failure: the download
    assert "cannot download the Hub model 'nobody/no-such-model'" in capsys.readouterr().err


def test_a_hub_id_is_downloaded_and_analysed_into_a_folder_named_after_it(
    hub, corpus_dir, tokenizer, tmp_path, monkeypatch
):
    from huggingface_hub import HfApi

    folder = tmp_path / "model"
    build("mamba2", vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    api = HfApi(endpoint=hub.endpoint)
    api.create_repo("tester/tiny-mamba2")
    api.upload_folder(repo_id="tester/tiny-mamba2", folder_path=folder)
    monkeypatch.chdir(tmp_path)
    status = main(["tester/tiny-mamba2", "--data", str(corpus_dir), "--analyses", "timescales", "--no-progress-bar"])
    assert status == 0
    report = json.loads((tmp_path / "tester--tiny-mamba2-analysis" / "report.json").read_text())
    assert report["model"]["architecture"] == "mamba2" and list(report["analyses"]) == ["timescales"]
