"""The analysis registry (``mtlstm_hf.analysis.registry``): adding an analysis is one definition and
one ``register_analysis`` call; ``run_analyses``, ``analyze_checkpoint`` and ``mtlstm-analyze``
then run it, write its section and figures, resume it, and name it in their errors; removing it
leaves the registry as it was. Oracles: the report written to disk, the toy's own call log, and
the names as the package has always listed them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from conftest import corpus_and_saved_model, tiny_model

from mtlstm_hf.analysis import settings as settings_module
from mtlstm_hf.analysis.cli import main
from mtlstm_hf.analysis.registry import (
    ANALYSIS_REGISTRY,
    BUILTIN_ANALYSES,
    Analysis,
    register_analysis,
    unregister_analysis,
)
from mtlstm_hf.analysis.report import analyze_checkpoint, run_analyses
from mtlstm_hf.analysis.settings import ANALYSES, AnalysisSettings

pytestmark = pytest.mark.usefixtures("one_thread")

BUILT_IN = (
    "timescales",
    "ablation",
    "state_gradients",
    "weighted_sum",
    "memory_span",
    "mutual_information",
    "context_swap",
)

# ---------------------------------------------------------------------------
# A toy analysis: the whole of what adding one takes (its module would hold these two functions)
# ---------------------------------------------------------------------------

CALLS: list[str] = []  # what the toy was asked to do, in order


def _toy_run(context):
    CALLS.append("run")
    if context.stream.numel() < 3:
        raise ValueError("the toy needs at least 3 tokens")
    counts = torch.bincount(context.stream, minlength=3)
    section = {"n_tokens": int(context.stream.numel()), "first_counts": counts[:3].tolist()}

    def draw():
        from mtlstm_hf.analysis.figures import pyplot

        figure, axes = pyplot("toy").subplots()
        axes.bar(range(3), counts[:3].tolist())
        return figure

    return section, {"toy_counts": draw}


def _toy_estimated_seconds(context):
    CALLS.append("estimate")
    return 0.1


TOY = Analysis("toy_count", ("max_tokens",), run=_toy_run, estimated_seconds=_toy_estimated_seconds)


@pytest.fixture
def toy():
    before = list(ANALYSIS_REGISTRY.items())
    CALLS.clear()
    register_analysis(TOY)
    yield TOY
    unregister_analysis(TOY.name)
    assert list(ANALYSIS_REGISTRY.items()) == before  # the same records, in the same order


def _stream(n=60, seed=0):
    return torch.randint(0, 37, (n,), generator=torch.Generator().manual_seed(seed))


def _report_json(folder):
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------
# The built-in registry
# ---------------------------------------------------------------------------


def test_analyses_are_the_registry_in_run_order():
    """``ANALYSES`` keeps its value and agrees with the registry (a reordered registration would
    change the run order: timescales must come first, the others reuse its estimate)."""
    assert ANALYSES == BUILTIN_ANALYSES == tuple(ANALYSIS_REGISTRY) == BUILT_IN
    import mtlstm_hf.analysis as package

    assert package.ANALYSES is ANALYSES and package.ANALYSIS_REGISTRY is ANALYSIS_REGISTRY
    assert [analysis.name for analysis in ANALYSIS_REGISTRY.values()] == list(BUILT_IN)
    assert all(analysis.module == f"mtlstm_hf.analysis.runs.{name}" for name, analysis in ANALYSIS_REGISTRY.items())


def test_every_setting_is_read_by_an_analysis_and_every_declared_field_exists():
    """The settings fields an analysis declares are fields of AnalysisSettings (no typo), and each
    field is declared by some analysis or applies to all (max_tokens, count_splits)."""
    fields = {field.name for field in dataclasses.fields(AnalysisSettings)}
    declared = {name for analysis in ANALYSIS_REGISTRY.values() for name in analysis.settings_fields}
    assert declared <= fields, declared - fields
    assert fields - declared == {"max_tokens", "count_splits"}


def test_the_registry_imports_no_torch_and_no_analysis_module():
    """Registering names module paths: a process started as mtlstm-analyze reads the registry (and
    settings) without importing torch or any analysis's module."""
    script = (
        "import sys\n"
        "sys.argv = ['mtlstm-analyze', '--help']\n"
        "from mtlstm_hf.analysis.settings import ANALYSES\n"
        "from mtlstm_hf.analysis.registry import ANALYSIS_REGISTRY\n"
        "assert tuple(ANALYSIS_REGISTRY) == ANALYSES, ANALYSES\n"
        "print('LOADED:', sorted(m for m in sys.modules if m == 'torch' or m.startswith('mtlstm_hf.analysis.runs')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "LOADED: []"


def test_register_analysis_refuses_a_taken_or_bad_name_and_unregister_an_unknown_one():
    before = list(ANALYSIS_REGISTRY.items())
    with pytest.raises(ValueError, match="'timescales' is already registered"):
        register_analysis(Analysis("timescales", (), run=_toy_run))
    with pytest.raises(ValueError, match="must be an identifier"):
        register_analysis(Analysis("toy,count", (), run=_toy_run))
    with pytest.raises(ValueError, match="settings_fields"):
        register_analysis(Analysis("toy_count", "max_tokens", run=_toy_run))
    with pytest.raises(ValueError, match="needs a module or a run function"):
        register_analysis(Analysis("toy_count"))
    with pytest.raises(KeyError, match="no analysis 'toy_count' is registered"):
        unregister_analysis("toy_count")
    assert list(ANALYSIS_REGISTRY.items()) == before


# ---------------------------------------------------------------------------
# A registered toy analysis runs like the built-in ones
# ---------------------------------------------------------------------------


def test_a_registered_analysis_runs_writes_its_section_and_figures_and_resumes(toy, tmp_path):
    model = tiny_model()
    stream = _stream()
    settings = AnalysisSettings(window=17)
    output = tmp_path / "report"
    # Named out of order as a string: run in the registry's order, the toy after the built-in ones.
    report = run_analyses(model, None, stream, stream, "toy_count, timescales", settings, output, progress=True)
    written = _report_json(output)
    assert list(written["analyses"]) == ["timescales", "toy_count"] and written["pending"] == []
    assert written["analyses"]["toy_count"] == {"n_tokens": 60, "first_counts": torch.bincount(stream)[:3].tolist()}
    assert written["analysis_figures"]["toy_count"] == ["toy_counts"]
    assert written["figures"]["toy_counts"] == "figures/toy_counts.png"
    assert (output / "figures" / "toy_counts.png").read_bytes().startswith(b"\x89PNG")
    assert report["analyses"]["toy_count"] == written["analyses"]["toy_count"]
    assert CALLS == ["estimate", "run"]  # its estimate sized its share of the progress bar

    # A rerun into the same folder keeps what is there: the toy is not run again.
    CALLS.clear()
    run_analyses(model, None, stream, stream, ["timescales", "toy_count"], settings, output)
    assert CALLS == [] and _report_json(output)["analyses"] == written["analyses"]

    # An analysis that does not apply is recorded under "skipped" with its reason.
    short = tmp_path / "short"
    skipped = run_analyses(model, None, stream[:2], stream, ["toy_count"], settings, short, figures=False)
    assert skipped["skipped"] == {"toy_count": "the toy needs at least 3 tokens"}
    assert _report_json(short)["skipped"] == skipped["skipped"]


def test_analyze_checkpoint_and_the_command_run_a_registered_analysis(toy, tmp_path, capsys):
    corpus, model_dir = corpus_and_saved_model(tmp_path)
    report = analyze_checkpoint(model_dir, corpus, tmp_path / "api", analyses=["toy_count"], figures=False)
    assert list(report["analyses"]) == ["toy_count"] and report["analyses"]["toy_count"]["n_tokens"] > 3
    arguments = [str(model_dir), "--data", str(corpus), "--no-progress-bar", "--no-figures"]
    assert main([*arguments, "--analyses", "toy_count", "--output-dir", str(tmp_path / "cli")]) == 0
    assert _report_json(tmp_path / "cli")["analyses"] == report["analyses"]
    assert "analyses: toy_count;" in capsys.readouterr().out


def test_an_unknown_analysis_is_refused_naming_the_registered_ones(toy, tmp_path, capsys):
    model, stream = tiny_model(), _stream()
    listed = ", ".join(BUILT_IN)
    with pytest.raises(ValueError) as error:
        run_analyses(model, None, stream, stream, ["nope"])
    assert str(error.value) == f"unknown analyses ['nope']; choose from {listed}, toy_count."
    with pytest.raises(ValueError, match="choose from .*toy_count"):
        analyze_checkpoint(tmp_path / "no-checkpoint-needed", analyses="nope,timescales")
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--analyses", "nope"])
    assert stop.value.code == 2
    assert f"--analyses: unknown ['nope']; choose from {','.join(BUILT_IN)},toy_count" in capsys.readouterr().err


def test_without_the_toy_the_messages_are_the_built_in_ones(tmp_path, capsys):
    model, stream = tiny_model(), _stream()
    with pytest.raises(ValueError) as error:
        run_analyses(model, None, stream, stream, "timescales,nope")
    assert str(error.value) == f"unknown analyses ['nope']; choose from {', '.join(BUILT_IN)}."
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--analyses", "toy_count"])
    assert f"--analyses: unknown ['toy_count']; choose from {','.join(BUILT_IN)}" in capsys.readouterr().err
    assert settings_module.AnalysisRunSettings().analyses == list(BUILT_IN)
