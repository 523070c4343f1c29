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

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny settings: every analysis runs in well under a second on the tiny model.
FAST = [
    "--bin-edges",
    "4",
    "15",
    "60",
    "--chunk-size",
    "4",
    "--window",
    "17",
    "--max-delay",
    "4",
    "--segment-length",
    "16",
    "--state-gradient-positions",
    "20",
    "--max-distance",
    "8",
    "--passage-length",
    "6",
    "--swap-context-length",
    "10",
    "--swap-segment-length",
    "8",
    "--swap-samples",
    "8",
    "--mi-max-distance",
    "40",
    "--no-progress-bar",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    classes.write_text(
        "# word class\n" + "".join(f"w{i} {'A' if i < 5 else 'B'}\n" for i in range(12)), encoding="utf-8"
    )
    output = tmp_path_factory.mktemp("report") / "analysis"
    status = main(
        [str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), "--word-classes", str(classes), *FAST]
    )
    assert status == 0
    return output


def test_cli_writes_report_json_and_figures(report_dir):
    text = (report_dir / "report.json").read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    report = load_report(report_dir)
    assert report["format_version"] == 2 and report["split"] == "validation"
    assert list(report["analyses"]) == list(ANALYSES) and report["skipped"] == {} and report["pending"] == []
    expected_figures = {
        "timescales_layer1",
        "timescales_layer2",
        "timescale_histograms",
        "routing_frequency",
        "routing_classes",
        "memory_span",
        "weighted_sum_layer1",
        "weighted_sum_layer2",
        "state_gradients",
        "mutual_information",
        "context_swap_timescales",
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
    assert [layer["layer"] for layer in timescales["layers"]] == [1, 2]  # numbered from 1
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
    assert memory["distances"] == list(range(8)) and len(memory["mean_norm"]) == 2 and memory["layers"] == [1, 2]
    gradients = analyses["state_gradients"]
    assert [layer["layer"] for layer in gradients["layers"]] == [1, 2]
    assert gradients["n_tokens"] == report["n_stream_tokens"] and gradients["positions"] == 20
    assert gradients["n_sources"] == 20 == len(gradients["source_positions"])
    assert len(gradients["layers"][0]["pooled_memory"]) == 4
    weighted = analyses["weighted_sum"]
    assert (
        len(weighted["tokens"]) == 6
        and len(weighted["layers"][0]["norms"]) == 6
        and weighted["layers"][1]["layer"] == 2
    )
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
    checkpoint = _save_checkpoint(
        tmp_path / "gates", corpus_dir, cell_types="lstm-gates", timescale_schedules=[None, None]
    )
    output = tmp_path / "out"
    status = main(
        [
            str(checkpoint),
            "--data",
            str(corpus_dir),
            "--output-dir",
            str(output),
            "--analyses",
            "timescales,mutual_information",
            *FAST,
        ]
    )
    assert status == 0
    report = load_report(output)
    assert "forget gate" in report["skipped"]["timescales"]
    assert list(report["analyses"]) == ["mutual_information"]
    assert "skipped timescales" in capsys.readouterr().err
    # Only inapplicable analyses selected: nothing ran, exit status 1.
    assert (
        main(
            [str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), "--analyses", "timescales", *FAST]
        )
        == 2
    )


def test_data_shorter_than_the_requested_delays(checkpoint, corpus_dir, tmp_path):
    settings = AnalysisSettings(max_tokens=50, max_distance=100, max_delay=60, segment_length=60)
    report = analyze_checkpoint(
        checkpoint,
        corpus_dir,
        tmp_path / "short",
        analyses="memory_span,state_gradients",
        settings=settings,
        figures=False,
    )
    assert report["analyses"] == {}
    assert "too short" in report["skipped"]["memory_span"]
    assert "too short" in report["skipped"]["state_gradients"]


def test_cli_errors(checkpoint, corpus_dir, tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--data", str(corpus_dir), "--no-progress-bar"]) == 2
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


# ---------------------------------------------------------------------------
# --data from the training record
# ---------------------------------------------------------------------------

QUICK = ["--analyses", "mutual_information", "--no-figures", "--max-tokens", "300", "--no-progress-bar"]


def _training_record(folder, data):
    (folder / "training_config.json").write_text(
        json.dumps({"data": data, "dataset_config_name": None}), encoding="utf-8"
    )


@pytest.mark.parametrize("layout", ["checkpoint folder", "run folder of best_model", "run folder of a checkpoint"])
def test_data_defaults_to_the_shipped_sample_when_the_run_used_it(checkpoint, tmp_path, layout, capsys):
    from mtlstm_hf.data import sample_corpus_dir

    run = tmp_path / "run"
    folder = run / ("best_model" if layout != "run folder of a checkpoint" else "checkpoints/step-00000150")
    shutil.copytree(checkpoint, folder)
    _training_record(folder if layout == "checkpoint folder" else run, None)
    assert main([str(folder), "--output-dir", str(tmp_path / "out"), *QUICK]) == 0
    assert load_report(tmp_path / "out")["data"] == str(sample_corpus_dir())
    assert str(sample_corpus_dir()) in capsys.readouterr().err  # says which corpus it took


def test_data_defaults_to_the_recorded_corpus_and_is_required_without_a_record(
    checkpoint, corpus_dir, tmp_path, capsys
):
    recorded = shutil.copytree(checkpoint, tmp_path / "recorded")
    _training_record(recorded, str(corpus_dir))
    assert main([str(recorded), "--output-dir", str(tmp_path / "out"), *QUICK]) == 0
    assert load_report(tmp_path / "out")["data"] == str(corpus_dir)
    capsys.readouterr()
    assert main([str(checkpoint), "--output-dir", str(tmp_path / "none"), *QUICK]) == 2
    error = capsys.readouterr().err
    assert "--data is needed" in error and "wikitext2_sample" in error
    assert not (tmp_path / "none" / "report.json").exists()


# ---------------------------------------------------------------------------
# Written as it goes, continued, restarted, never mixed
# ---------------------------------------------------------------------------


def _report_json(folder):
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def test_an_interrupted_run_keeps_what_it_finished_and_a_rerun_continues(checkpoint, corpus_dir, tmp_path, monkeypatch):
    import dataclasses

    from mtlstm_hf.analysis.registry import ANALYSIS_REGISTRY

    output = tmp_path / "out"
    arguments = [str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), *FAST]

    def interrupted(context):
        raise KeyboardInterrupt

    stopped = dataclasses.replace(ANALYSIS_REGISTRY["state_gradients"], run=interrupted)
    monkeypatch.setitem(ANALYSIS_REGISTRY, "state_gradients", stopped)
    assert main(arguments) == 130  # Ctrl-C: exit code 130, what was finished is kept
    first = _report_json(output)
    assert list(first["analyses"]) == ["timescales", "ablation"]
    assert first["pending"] == ["state_gradients", "weighted_sum", "memory_span", "mutual_information", "context_swap"]
    assert set(first["figures"]) == {
        "timescales_layer1",
        "timescales_layer2",
        "timescale_histograms",
        "routing_frequency",
    }
    assert all((output / relative).is_file() for relative in first["figures"].values())
    assert [path.name for path in output.rglob("*tmp*")] == []  # only complete files, no temporaries

    # The rerun does only what is missing: a marker left in a finished entry survives.
    first["analyses"]["timescales"]["marker"] = "kept"
    (output / "report.json").write_text(json.dumps(first), encoding="utf-8")
    monkeypatch.undo()
    assert main(arguments) == 0
    second = _report_json(output)
    assert second["analyses"]["timescales"]["marker"] == "kept"
    assert list(second["analyses"]) == list(ANALYSES) and second["pending"] == []
    assert second["seconds"]["ablation"] == first["seconds"]["ablation"]
    # The interrupted run had the timescales: mutual information compares with the estimated ones.
    assert second["analyses"]["mutual_information"]["model_timescales"] == "estimated"

    # --restart redoes everything (the marker is gone).
    assert main([*arguments, "--restart", "--analyses", "timescales"]) == 0
    third = _report_json(output)
    assert list(third["analyses"]) == ["timescales"] and "marker" not in third["analyses"]["timescales"]
    assert set(third["figures"]) == {"timescales_layer1", "timescales_layer2", "timescale_histograms"}
    assert not (output / "figures" / "memory_span.png").exists()  # the old report's figures went with it


def test_results_of_other_settings_or_weights_are_never_mixed(checkpoint, corpus_dir, tmp_path, capsys):
    output = tmp_path / "out"
    arguments = [str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(output), "--no-figures", *FAST]
    assert main([*arguments, "--analyses", "timescales"]) == 0
    before = (output / "report.json").read_bytes()
    capsys.readouterr()
    assert main([*arguments, "--analyses", "memory_span", "--max-distance", "5"]) == 2
    error = capsys.readouterr().err
    assert "settings.max_distance: 8 there, 5 now" in error and "--restart" in error
    other_weights = _save_checkpoint(tmp_path / "other", corpus_dir, timescale_schedules=[None, None])
    assert main([str(other_weights), *arguments[1:], "--analyses", "memory_span"]) == 2
    assert "fingerprints.model" in capsys.readouterr().err
    assert (output / "report.json").read_bytes() == before  # refused before anything was written


def test_run_wide_progress_covers_every_analysis(checkpoint, corpus_dir, tmp_path, capsys):
    """Plain lines (stderr is not a terminal here): one bar for the whole run, with an estimate of
    the total time while it runs, and every analysis's share adds up to exactly the total."""
    arguments = [str(checkpoint), "--data", str(corpus_dir), "--output-dir", str(tmp_path / "out"), "--no-figures"]
    assert main([*arguments, *[value for value in FAST if value != "--no-progress-bar"]]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mtlstm-analyze: ")]
    assert "in all" in lines[0] and "/1000" in lines[0]
    assert lines[-1].startswith("mtlstm-analyze: 1000/1000 ‰ (100%)")


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (["--ablation-layer", "0"], "layers are numbered from 1"),
        (["--state-gradient-positions", "0"], "positive integer or 'all'"),
        (["--max-delay", "30", "--segment-length", "20"], "segment_length (--segment-length) must be >= max_delay"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_settings_exit_2_naming_the_option(checkpoint, corpus_dir, argument, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), "--data", str(corpus_dir), *argument])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_ablation_layer_is_a_number_from_1(checkpoint, corpus_dir, tmp_path, capsys):
    output = tmp_path / "out"
    common = [str(checkpoint), "--data", str(corpus_dir), "--analyses", "ablation", "--no-figures", *FAST]
    assert main([*common, "--output-dir", str(output), "--ablation-layer", "2"]) == 0
    routing = load_report(output)["analyses"]["ablation"]["frequency"]
    assert routing["layer"] == 2 and len(routing["chunks"]) == 2  # the 6 units of the second layer, chunks of 4
    assert load_report(output)["settings"]["ablation_layer"] == 2
    assert main([*common, "--output-dir", str(tmp_path / "x"), "--ablation-layer", "3"]) == 2
    assert "from 1 to 2" in capsys.readouterr().err


def test_max_tokens_bounds_every_analysis(checkpoint, corpus_dir, tmp_path):
    settings = AnalysisSettings(
        max_tokens=40,
        max_delay=4,
        segment_length=16,
        state_gradient_positions=None,
        max_distance=8,
        passage_length=6,
        mi_max_distance=30,
        chunk_size=4,
        window=17,
    )
    report = analyze_checkpoint(checkpoint, corpus_dir, None, settings=settings, figures=False)
    analyses = report["analyses"]
    assert report["n_stream_tokens"] == 40
    assert analyses["timescales"]["num_tokens"] == 40
    assert analyses["ablation"]["frequency"]["intact"]["n_tokens"] == 39
    gradients = analyses["state_gradients"]
    assert gradients["n_tokens"] == 40 and gradients["source_positions"] == list(range(40))
    assert sum(map(sum, gradients["layers"][0]["counts"])) <= 40 * 4
    assert max(analyses["mutual_information"]["distances"]) <= 38


def test_help_imports_no_torch_and_not_the_report_module():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.argv = ['mtlstm-analyze', '--help']\n"
        "from mtlstm_hf.analysis.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0\n"
        "print('LOADED:', sorted(m for m in ('torch', 'transformers.modeling_utils', 'mtlstm_hf.analysis.report') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "LOADED: []"
    assert "--state-gradient-positions" in done.stdout and "numbered from 1" in done.stdout


def test_model_card_numbers_layers_from_1_for_both_report_formats(checkpoint, report_dir):
    """The card reads report.json: format 2 numbers layers from 1 (as the card), format 1 from 0."""
    from mtlstm_hf.hub.model_card import build_model_card

    model = MTLSTMForCausalLM.from_pretrained(checkpoint)
    report = load_report(report_dir)
    legacy = json.loads(json.dumps(report))
    legacy["format_version"] = 1
    for entry in legacy["analyses"]["timescales"]["layers"]:
        entry["layer"] -= 1
    tables = []
    for version in (report, legacy):
        card = build_model_card(model, repo_id="someone/mts", report=version).content
        table = card.split("Estimated timescales")[1].split("\n\n")[1]  # the table after that heading
        tables.append([line.split("|")[1].strip() for line in table.splitlines()[2:]])
    assert tables[0] == tables[1] == ["1", "2"]


def test_shares_of_the_run_wide_bar_add_up_to_its_total():
    """Each analysis advances its share in its own units; parts of a share (analyses with several
    phases) and early finishes still add up to exactly the bar's total, in whole steps."""
    from mtlstm_hf.progress import Meter, Share

    class Bar:
        def __init__(self):
            self.steps = []

        def update(self, n):
            assert n == int(n) and n > 0
            self.steps.append(n)

        def set_postfix_str(self, text=""):
            pass

    bar = Bar()
    meter = Meter(bar)
    first, second, third = Share(meter, 333.3), Share(meter, 566.7), Share(meter, 100.0)
    first.total = 7
    for _ in range(10):  # more updates than announced: capped at the share
        first.update(1)
    first.finish()
    assert sum(bar.steps) == 333
    halves = [second.part(0.5), None]
    halves[1] = second.part(1.0)  # the rest
    for part in halves:
        part.total = 4
        part.update(3)
        part.finish()
    second.finish()
    third.finish()  # an analysis that was skipped: its whole share at once
    assert sum(bar.steps) == 1000


def test_every_analysis_setting_is_an_option_and_config_files_work(tmp_path):
    """The options are the fields of AnalysisRunSettings and AnalysisSettings (their help texts); the five
    settings the old command line lacked are settable; --config gives settings, options override."""
    import dataclasses
    import json

    from mtlstm_hf.analysis.cli import build_parser, settings_from_argv
    from mtlstm_hf.analysis.settings import AnalysisRunSettings, AnalysisSettings

    by_dest = {
        action.dest: action for action in build_parser()._actions if f"--{action.dest}" in action.option_strings
    }  # not the --no-<field> one
    for cls in (AnalysisRunSettings, AnalysisSettings):
        for field in dataclasses.fields(cls):
            assert by_dest[field.name].help == field.metadata["help"], field.name
    _, run, settings = settings_from_argv([
        "ckpt", "--families", "lognormal", "exponential", "--other-label", "rest", "--k", "3",
        "--mi-num-distances", "12", "--mi-estimator", "plugin", "--state-gradient-positions", "all", "--no-progress",
    ])  # fmt: skip
    assert (settings.families, settings.other_label, settings.k) == (["lognormal", "exponential"], "rest", 3)
    assert (settings.mi_num_distances, settings.mi_estimator, settings.state_gradient_positions) == (12, "plugin", None)
    assert run.progress_bar is False and run.figures is True  # --no-progress: the deprecated spelling
    (tmp_path / "analysis.json").write_text(json.dumps({"split": "test", "max_delay": 20, "segment_length": 40}))
    _, run, settings = settings_from_argv(["ckpt", "--config", str(tmp_path / "analysis.json"), "--max-delay", "10"])
    assert (run.split, settings.max_delay, settings.segment_length) == ("test", 10, 40)
    (tmp_path / "bad.json").write_text(json.dumps({"max_delays": 20}))
    with pytest.raises(ValueError, match="unknown setting 'max_delays'"):
        settings_from_argv(["ckpt", "--config", str(tmp_path / "bad.json")])
