"""The experiments of mtlstm-reproduce as objects: one registry, EXPERIMENTS, that the
command and prepare/run look up once, and nothing else in the package asking which experiment it
is, so that a new experiment is one Experiment subclass and one entry (here a toy one, run through
the command end to end without any other change)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtlstm_hf.reproduce import claims
from mtlstm_hf.reproduce.cli import build_parser, main
from mtlstm_hf.reproduce.experiments import (
    EXPERIMENTS,
    Dyck2Experiment,
    Experiment,
    Inputs,
    LanguageModelExperiment,
    PriorSweepExperiment,
    experiment_named,
)

PACKAGE = Path(__file__).resolve().parents[1] / "mtlstm_hf" / "reproduce"


def test_one_registry_names_the_experiments_and_the_commands_choices():
    assert list(EXPERIMENTS) == ["lm-ptb", "lm-wikitext2", "dyck2", "prior-sweep"]
    assert all(isinstance(e, Experiment) and e.name == name for name, e in EXPERIMENTS.items())
    assert isinstance(EXPERIMENTS["lm-ptb"], LanguageModelExperiment)
    assert isinstance(EXPERIMENTS["dyck2"], Dyck2Experiment) and EXPERIMENTS["dyck2"].phases == ("train",)
    assert isinstance(EXPERIMENTS["prior-sweep"], PriorSweepExperiment) and not EXPERIMENTS["prior-sweep"].states_claims
    (positional,) = [action for action in build_parser()._actions if action.dest == "experiment"]
    assert list(positional.choices) == list(EXPERIMENTS)
    with pytest.raises(
        ValueError, match="unknown experiment 'lm-penn'; choose one of lm-ptb, lm-wikitext2, dyck2, prior-sweep"
    ):
        experiment_named("lm-penn")


def test_no_module_but_the_registry_dispatches_on_an_experiment_name():
    """What differs between experiments lives in their classes (and scales' and claims' data)."""
    dispatch = re.compile(r"""[=!]= ?["'](dyck2|lm-ptb|lm-wikitext2)["']|startswith\(["']lm""")
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "experiments.py":
            continue
        found = [line.strip() for line in path.read_text().splitlines() if dispatch.search(line)]
        assert not found, f"{path.name}: {found}"


class Toy(Experiment):
    """An experiment of one seed whose report holds one number."""

    name = "toy"
    phases = ("train",)

    def check_settings(self, settings):
        return settings

    def scale(self, scale):
        return {"seeds": [7], "sizing": "a toy", "reductions": []}

    def inputs(self, settings, scale, output_dir):
        return Inputs({"experiment": self.name, "scale": settings.scale}, data_description="none")

    def run(self, prepared, log, finish, share):
        report = self.collect(prepared)
        finish(report)
        return report

    def collect(self, prepared):
        return {"experiment": self.name, "scale": prepared.settings.scale, "seeds": prepared.seeds, "runs": {}}

    def summarise(self, report):
        return {"answer": 42.0}

    def claims(self, prepared, summary):
        return [
            {"id": "toy_answer", "claim": "The answer is 42", "paper": "42", "ours": f"{summary['answer']:.0f}",
             "verdict": claims.HOLDS, "rule": "value"}
        ]  # fmt: skip

    def draw_figures(self, report, folder):
        return [], "a toy draws nothing"

    def tables(self, report):
        return ["## Toy table", "", f"answer: {report['summary']['answer']}", ""]


def test_a_new_experiment_is_one_class_and_one_registry_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(EXPERIMENTS, "toy", Toy())
    out = tmp_path / "out"
    assert main(["toy", "--scale", "smoke", "--output-dir", str(out), "--threads", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"] == {"answer": 42.0} and report["claims"][0]["id"] == "toy_answer"
    markdown = (out / "REPORT.md").read_text()
    assert "# Reproduction: toy at scale smoke" in markdown and "## Toy table" in markdown
    assert "answer: 42.0" in markdown and "Not drawn: a toy draws nothing." in markdown
    assert json.loads((out / "reproduce_config.json").read_text()) == {"experiment": "toy", "scale": "smoke"}


def test_the_claims_are_tables_a_new_claim_is_one_row():
    """Each experiment's claims are a table of rows (the summary section a row reads, and how it is
    decided): a row whose section has not run is left out, a new claim is one more row."""
    from mtlstm_hf.reproduce import claims

    context = claims.ClaimContext("lm-ptb", "cpu", True, claims.PAPER_LM["lm-ptb"])
    assert [row.section for row in claims.LM_CLAIMS] == ["perplexity"] * 4 + ["timescales", "routing"]
    assert claims.judge(claims.LM_CLAIMS, context, {}) == []  # no stage has run

    def toy(context, section):
        return [claims._claim("toy", "A toy claim", "-", str(section["value"]), claims.HOLDS, "direction")]

    rows = (*claims.DYCK_CLAIMS[:0], claims.ClaimRow("toy_section", toy))
    assert claims.judge(rows, context, {"toy_section": {"value": 3}})[0]["ours"] == "3"
    assert claims.judge(rows, context, {"other": {}}) == []
