"""``mtlstm-analyze`` end to end on a tiny saved checkpoint and corpus, and ``load_report``."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from conftest import tiny_config

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.analysis import ANALYSES, AnalysisSettings, analyze_checkpoint, load_report
from mtlstm_hf.analysis.cli import main
from mtlstm_hf.data import build_word_tokenizer

# Tiny settings: every analysis runs in well under a second on the tiny model.
FAST = [
    "--bin-edges", "4", "15", "60",
    "--chunk-size", "4",
    "--window", "17",
    "--max-delay", "4",
    "--segment-length", "16",
    "--state-gradient-tokens", "64",
    "--max-distance", "8",
    "--passage-length", "6",
    "--mi-max-distance", "40",
    "--quiet",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine OpenMP spinning
    makes them much slower; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    weights = [1.0 / (rank + 1) for rank in range(30)]
    directory = tmp_path_factory.mktemp("corpus")
    for name, n_lines in (("train", 100), ("valid", 30), ("test", 10)):
        lines = [" ".join(rng.choices(words, weights, k=rng.randint(3, 9))) for _ in range(n_lines)]
        (directory / f"{name}.txt").write_text("".join(f" {line} \n" for line in lines), encoding="utf-8")
    return directory


def _save_checkpoint(folder, corpus_dir, **overrides):
    tokenizer = build_word_tokenizer(corpus_dir / "train.txt")
    torch.manual_seed(0)
    fields = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        timescale_schedules=[{"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}, None],
    )
    fields.update(overrides)
    MTLSTMForCausalLM(tiny_config(**fields)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(corpus_dir, tmp_path_factory):
    return _save_checkpoint(tmp_path_factory.mktemp("checkpoint"), corpus_dir)


@pytest.fixture(scope="module")
def report_dir(checkpoint, corpus_dir, tmp_path_factory):
    classes = tmp_path_factory.mktemp("classes") / "pos.tsv"
    classes.write_text("# word class\n" + "".join(f"w{i} {'A' if i < 5 else 'B'}\n" for i in range(12)), encoding="utf-8")
    output = tmp_path_factory.mktemp("report") / "analysis"
    status = main([str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), "--word-classes", str(classes), *FAST])
    assert status == 0
    return output


def test_cli_writes_report_json_and_figures(report_dir):
    text = (report_dir / "report.json").read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    report = load_report(report_dir)
    assert report["format_version"] == 1 and report["split"] == "validation"
    assert list(report["analyses"]) == list(ANALYSES) and report["skipped"] == {}
    expected_figures = {
        "timescales_layer0", "timescales_layer1", "timescale_histograms", "routing_frequency", "routing_classes",
        "memory_span", "weighted_sum_layer0", "weighted_sum_layer1", "state_gradients_layer0",
        "state_gradients_layer1", "mutual_information",
    }
    assert set(report["figures"]) == expected_figures
    for name, relative in report["figures"].items():
        assert relative == f"figures/{name}.png"
        path = report_dir / relative
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert report["figure_paths"][name] == str(path.resolve())


def test_report_contents(report_dir):
    report = load_report(report_dir)
    analyses = report["analyses"]
    timescales = analyses["timescales"]
    assert [layer["layer"] for layer in timescales["layers"]] == [0, 1]
    assert len(timescales["layers"][0]["timescales"]) == 10 and len(timescales["layers"][0]["assigned"]) == 10
    assert timescales["layers"][1]["assigned"] is None and timescales["layers"][1]["comparison"] is None
    assert set(timescales["layers"][0]["fits"]) == {"inverse_gamma", "lognormal", "exponential", "gamma"}
    assert timescales["num_tokens"] == report["n_stream_tokens"]

    routing = analyses["ablation"]["frequency"]
    assert routing["layer"] == 1 and routing["order"] == "assigned"  # the inverse-gamma layer by default
    assert routing["columns"] == [">=60", "15-60", "4-15", "<4", "overall"]
    assert len(routing["ratio_matrix"]) == 3  # 10 units in chunks of 4
    assert analyses["ablation"]["classes"]["labels"] == ["A", "B", "other"]

    memory = analyses["memory_span"]
    assert memory["distances"] == list(range(8)) and len(memory["mean_norm"]) == 2
    gradients = analyses["state_gradients"]
    assert [layer["layer"] for layer in gradients["layers"]] == [0, 1] and gradients["n_tokens"] == 64
    assert len(gradients["layers"][0]["pooled_memory"]) == 4
    weighted = analyses["weighted_sum"]
    assert len(weighted["tokens"]) == 6 and len(weighted["layers"][0]["norms"]) == 6
    assert weighted["layers"][0]["norms"][5][0] is None  # j > t: the future
    assert analyses["mutual_information"]["model_timescales"] == "estimated"
    assert report["settings"]["chunk_size"] == 4 and report["model"]["hidden_sizes"] == [10, 6]


def test_default_output_dir_is_inside_the_checkpoint(checkpoint, corpus_dir, tmp_path):
    copy = shutil.copytree(checkpoint, tmp_path / "ckpt")
    assert main([str(copy), "--data", str(corpus_dir), "--analyses", "mutual_information", "--no-figures", *FAST]) == 0
    report = load_report(copy / "analysis")
    assert list(report["analyses"]) == ["mutual_information"] and report["figures"] == {}
    assert report["analyses"]["mutual_information"]["model_timescales"] == "assigned"


def test_inapplicable_analyses_are_skipped_with_the_reason(corpus_dir, tmp_path, capsys):
    checkpoint = _save_checkpoint(tmp_path / "gates", corpus_dir, cell_types="lstm-gates", timescale_schedules=[None, None])
    output = tmp_path / "out"
    status = main([str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), "--analyses", "timescales,mutual_information", *FAST])
    assert status == 0
    report = load_report(output)
    assert "forget gate" in report["skipped"]["timescales"]
    assert list(report["analyses"]) == ["mutual_information"]
    assert "skipped timescales" in capsys.readouterr().err
    # Only inapplicable analyses selected: nothing ran, exit status 1.
    assert main([str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), "--analyses", "timescales", *FAST]) == 1


def test_data_shorter_than_the_requested_delays(checkpoint, corpus_dir, tmp_path):
    settings = AnalysisSettings(max_tokens=50, max_distance=100, max_delay=60, segment_length=60, state_gradient_tokens=50)
    report = analyze_checkpoint(
        checkpoint, corpus_dir, tmp_path / "short", analyses="memory_span,state_gradients", settings=settings, figures=False
    )
    assert report["analyses"] == {}
    assert "too short" in report["skipped"]["memory_span"]
    assert "too short" in report["skipped"]["state_gradients"]


def test_cli_errors(checkpoint, corpus_dir, tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--data", str(corpus_dir), "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), "--data", str(corpus_dir), "--analyses", "timescales,bogus"])
    assert exit_info.value.code == 2
    with pytest.raises(FileNotFoundError):
        load_report(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="not an mtlstm analysis report"):
        load_report(tmp_path / "bad")
