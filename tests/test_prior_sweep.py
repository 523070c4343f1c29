"""``mtlstm-reproduce prior-sweep`` at a reduced smoke scale (one seed, one epoch), end to end
through the command line. Oracles: each prior's saved model carries its source formula's schedule
spanning the inverse-gamma layer's range of timescales (recomputed here from the preset), each
prior's test perplexity is that of its saved model scored by a hand-written loop, the summary's
best prior is the argmin of those, and REPORT.md is written from the report alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mtlstm_hf.models.mtlstm.presets import PRESETS
from mtlstm_hf.models.mtlstm.timescales import normalize_schedule, realize_timescales
from mtlstm_hf.reproduce import prior_sweep
from mtlstm_hf.reproduce.cli import main
from mtlstm_hf.reproduce.output import run_dir

pytestmark = pytest.mark.usefixtures("one_thread")


def reproduce(*arguments: str) -> int:
    return main([*arguments, "--threads", "1", "--no-progress-bar"])


RUN_PRIORS = ("inverse_gamma", "ring", "powerlaw_spacing")
"""The priors the end-to-end run trains (all five cost twice the time; every prior's schedule is
checked without training in test_each_prior_spans_the_inverse_gamma_layers_range)."""


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    smoke = prior_sweep.sweep_scale("smoke")
    reduced = {**smoke, "seeds": [3], "epochs": 1, "n_resamples": 20}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prior_sweep, "sweep_scale", lambda scale: dict(reduced))
        patch.setattr(prior_sweep, "PRIORS", {name: prior_sweep.PRIORS[name] for name in RUN_PRIORS})
        patch.setattr(prior_sweep, "SWEEP_ARMS", ("baseline", *RUN_PRIORS))
        folder = tmp_path_factory.mktemp("sweep") / "out"
        assert reproduce("prior-sweep", "--scale", "smoke", "--output-dir", str(folder)) == 0
    return folder


def words_of(path: Path) -> list[str]:
    return [word for line in path.read_text().splitlines() for word in [*line.split(), "<eos>"]]


def test_each_prior_spans_the_inverse_gamma_layers_range(sweep_folder):
    """Every prior's configuration (built as the sweep builds it, no training) bounds its layer-2
    timescales by the inverse-gamma layer's; the trained runs carry their schedule unchanged."""
    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM

    scale = prior_sweep.sweep_scale("smoke")
    inverse_gamma = PRESETS["paper"]["timescale_schedules"][1]
    reference = realize_timescales(inverse_gamma, 32)  # the smoke scale's layer 2 has 32 units
    low, high = float(reference.min()), float(reference.max())
    spans = {}
    for arm, overrides in prior_sweep.arm_overrides(scale).items():
        config = MTLSTMConfig(**{**PRESETS["paper"], **scale["model_overrides"], **overrides, "vocab_size": 50})
        schedule = config.timescale_schedules[1]
        assert schedule["type"] == arm and config.timescale_schedules[0] == PRESETS["paper"]["timescale_schedules"][0]
        assigned = MTLSTMForCausalLM(config).assigned_timescales()[1]
        torch.testing.assert_close(assigned, realize_timescales(schedule, 32), rtol=2e-6, atol=0.0)  # float32 biases
        spans[arm] = (float(assigned.min()), float(assigned.max()))
        assert low * (1 - 1e-5) <= spans[arm][0] and spans[arm][1] <= high * (1 + 1e-5), (arm, spans[arm], low, high)
    assert list(spans) == list(prior_sweep.PRIORS)
    for arm in ("geometric", "powerlaw_spacing", "inverse_gamma"):  # index grids (and the reference) reach both ends
        assert spans[arm] == pytest.approx((low, high), rel=1e-5), arm
    assert prior_sweep.arm_overrides(scale)["log_uniform"]["timescale_schedules"][1]["state_size"] == 16  # Mamba's
    for arm in RUN_PRIORS:
        trained = MTLSTMForCausalLM.from_pretrained(run_dir(sweep_folder, arm, 3) / "best_model")
        given = prior_sweep.arm_overrides(scale)[arm]["timescale_schedules"]
        assert trained.config.timescale_schedules == [normalize_schedule(spec, 32) for spec in given]
    baseline = MTLSTMForCausalLM.from_pretrained(run_dir(sweep_folder, "baseline", 3) / "best_model")
    assert all(schedule["type"] == "none" for schedule in baseline.config.timescale_schedules)


def test_every_priors_test_perplexity_is_that_of_its_saved_model(sweep_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = json.loads((sweep_folder / "report.json").read_text())
    evaluation = report["per_seed"]["3"]["evaluation"]
    assert list(evaluation) == list(RUN_PRIORS)
    test_words = words_of(sweep_folder / "smoke-corpus" / "test.txt")
    perplexities = {}
    for arm in ("baseline", *RUN_PRIORS):
        folder = run_dir(sweep_folder, arm, 3) / "best_model"
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
        ids = torch.tensor([[vocab[word] for word in test_words]])
        with torch.no_grad():  # the whole split in one window (the library walks it in bptt windows)
            logp = torch.log_softmax(model(ids[:, :-1]).logits.double(), -1)
        perplexities[arm] = math.exp(float(-logp.gather(-1, ids[:, 1:, None]).mean()))
    for prior in RUN_PRIORS:
        for counting in ("train", "train_valid_test"):
            entry = evaluation[prior][counting]
            assert entry["a"]["perplexity"] == pytest.approx(perplexities["baseline"], rel=1e-5)
            assert entry["b"]["perplexity"] == pytest.approx(perplexities[prior], rel=1e-5)
    summary = report["summary"]
    best = min(RUN_PRIORS, key=lambda prior: perplexities[prior])
    assert summary["best"]["prior"] == best
    assert summary["best"]["test_perplexity"] == pytest.approx(perplexities[best], rel=1e-5)
    for prior in RUN_PRIORS:
        difference = summary["priors"][prior]["test_perplexity"]["difference"]
        assert difference["values"] == [pytest.approx(perplexities[prior] - perplexities["baseline"], rel=1e-4)]
    assert report["claims"] == []


def test_report_md_has_the_sweep_and_no_claims(sweep_folder):
    text = (sweep_folder / "REPORT.md").read_text()
    assert "## Claims" not in text and "## Test perplexity per prior" in text
    for prior in RUN_PRIORS:
        assert f"| {prior} |" in text
        assert (sweep_folder / "figures" / f"perplexity_difference_{prior}_train.png").is_file()
    configuration = json.loads((sweep_folder / "reproduce_config.json").read_text())
    assert set(configuration["priors"]) == set(RUN_PRIORS) and configuration["prior_layer_units"] == 32
    assert "### Each prior's layer 2" in text


def test_the_reference_recipe_is_refused(tmp_path, capsys):
    assert reproduce("prior-sweep", "--scale", "smoke", "--recipe", "reference", "--output-dir", str(tmp_path)) != 0
    assert "prior-sweep trains every prior with the library recipe" in capsys.readouterr().err
