"""The Dyck-2 reproduction (mtlstm_hf.reproduce.dyck) at smoke scale, end to end: every number
it reports is recomputed here from the runs' predictions with an independent stack walk, numpy
histograms and textbook Student-t / Welch formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from mtlstm_hf.data.dyck import generate_dyck2
from mtlstm_hf.reproduce import dyck as reproduce
from mtlstm_hf.reproduce.dyck import (
    ARMS,
    PAPER_ACCURACY,
    DyckSettings,
    build_dyck_model,
    dyck_config,
    mean_confidence_interval,
    run_dyck_experiment,
    run_dyck_seed,
    span_bin_edges,
    span_bin_index,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = dict(
    num_train=200, num_validation=50, num_test=100, max_length=40, hidden_size=16, epochs=4, learning_rate=3e-2
)


def walk(word: str) -> tuple[np.ndarray, int]:
    """Oracle: per-symbol stack-top bits (N, 2) and the longest close-open+1."""
    stack, bits, longest = [], [], 0
    for position, symbol in enumerate(word):
        if symbol in "([":
            stack.append((symbol, position))
        else:
            longest = max(longest, position - stack.pop()[1] + 1)
        top = stack[-1][0] if stack else ""
        bits.append([top == "(", top == "["])
    return np.array(bits, dtype=bool).reshape(len(word), 2), longest


def t_interval(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    mean, n = values.mean(), len(values)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


@pytest.fixture(scope="module")
def experiment():
    settings = DyckSettings(**SMOKE)
    return run_dyck_experiment(settings, seeds=[1, 2])


def test_smoke_experiment_numbers_come_from_the_runs(experiment):
    settings = experiment.settings
    data = generate_dyck2(settings.data_seed, num_train=200, num_validation=50, num_test=100, max_length=40)
    test_words = data["test"]
    spans = np.array([walk(word)[1] for word in test_words])
    np.testing.assert_array_equal(experiment.test_spans, spans)
    edges = np.linspace(2, 40, 10)
    np.testing.assert_allclose(experiment.span_edges, edges)
    counts, _ = np.histogram(spans, bins=edges)
    assert experiment.data["test_span_counts"] == counts.tolist()
    assert experiment.data["sizes"] == {"train": 200, "validation": 50, "test": 100}
    assert [(run.arm, run.seed) for run in experiment.runs] == [(a, s) for a in ARMS for s in (1, 2)]
    accuracies = {arm: [] for arm in ARMS}
    for run in experiment.runs:
        assert len(run.predictions) == 100
        correct = np.array(
            [np.array_equal(np.asarray(p, dtype=bool), walk(w)[0]) for p, w in zip(run.predictions, test_words)]
        )
        np.testing.assert_array_equal(run.correct, correct)
        assert run.accuracy == correct.mean()
        accuracies[run.arm].append(correct.mean())
        right, _ = np.histogram(spans[correct], bins=edges)
        assert run.span_counts == counts.tolist()
        expected_bins = [r / c if c else math.nan for r, c in zip(right, counts)]
        np.testing.assert_allclose(run.span_accuracy, expected_bins, equal_nan=True)
        assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
        assert run.steps == 4 * math.ceil(200 / 32) == run.history[-1]["steps"]
        assert all(0 <= h["validation_accuracy"] <= 1 and h["validation_loss"] > 0 for h in run.history)
    assert sum(run.accuracy for run in experiment.runs) > 0  # the smoke scale learns something
    for arm in ARMS:
        summary = experiment.arms[arm]
        assert summary["accuracies"] == accuracies[arm]
        mean, low, high = t_interval(accuracies[arm])
        assert summary["mean"] == pytest.approx(mean)
        if low != high:  # cut at 0 and 1, as mtlstm-reproduce dyck2 reports accuracies
            assert summary["ci95"] == pytest.approx([max(low, 0.0), min(high, 1.0)])
        per_bin = np.array([run.span_accuracy for run in experiment.runs if run.arm == arm])
        np.testing.assert_allclose(summary["span_accuracy_mean"], per_bin.mean(axis=0), equal_nan=True)
    ours, theirs = np.array(accuracies["multi_timescale"]), np.array(accuracies["baseline"])
    assert experiment.difference["mean"] == pytest.approx(ours.mean() - theirs.mean())
    va, vb = ours.var(ddof=1) / 2, theirs.var(ddof=1) / 2
    if va + vb > 0:  # Welch's interval by hand
        df = (va + vb) ** 2 / (va**2 + vb**2)
        half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
        gap = ours.mean() - theirs.mean()
        assert experiment.difference["ci95"] == pytest.approx([gap - half, gap + half])
    report = json.loads(json.dumps(experiment.to_dict()))
    assert report["paper"]["accuracy"] == {"multi_timescale": 0.9382, "baseline": 0.9166}
    assert [r["accuracy"] for r in report["runs"]] == [run.accuracy for run in experiment.runs]


def test_a_run_is_deterministic(experiment):
    settings = experiment.settings
    data = generate_dyck2(0, num_train=200, num_validation=50, num_test=100, max_length=40)
    again = run_dyck_seed("multi_timescale", 2, data, settings)
    first = next(run for run in experiment.runs if run.arm == "multi_timescale" and run.seed == 2)
    assert all(np.array_equal(a, b) for a, b in zip(again.predictions, first.predictions))
    assert again.history == first.history


def test_models_of_the_two_arms():
    settings = DyckSettings(hidden_size=256)
    baseline, multi = build_dyck_model("baseline", 0, settings), build_dyck_model("multi_timescale", 0, settings)
    for m in (baseline, multi):
        assert m.config.hidden_sizes == [256] and m.config.num_labels == 2
        assert m.config.problem_type == "multi_label_classification"
        expected = torch.eye(5)
        expected[4] = 0
        assert torch.equal(m.model.embeddings.weight, expected) and not m.model.embeddings.weight.requires_grad
    assert baseline.config.timescale_schedules == [{"type": "none"}]
    assert len(list(baseline.named_buffers())) == 0
    biases = dict(multi.named_buffers())
    assert len(biases) == 4  # every gate bias frozen
    quantiles = np.linspace(0, 1, 256 + 2)[1:-1]
    timescales = stats.invgamma.isf(quantiles, 1.5, scale=1.0)
    forget = -np.log(np.exp(1 / timescales) - 1)
    np.testing.assert_allclose(biases["model.layers.0.gate_biases.forget_gate"].numpy(), forget, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(biases["model.layers.0.gate_biases.input_gate"].numpy(), -forget, rtol=1e-5, atol=1e-5)
    trainable = sum(p.numel() for p in multi.parameters() if p.requires_grad)
    assert trainable == 4 * 256 * 5 + 4 * 256 * 256 + 2 * 256 + 2
    # the baseline trains the 4 gate biases the other arm freezes, each as two vectors (as nn.LSTM)
    assert sum(p.numel() for p in baseline.parameters() if p.requires_grad) == trainable + 2 * 4 * 256
    config = dyck_config("multi_timescale", DyckSettings(alpha=2.0, scale=0.5))
    assert config.timescale_schedules[0]["alpha"] == 2.0 and config.timescale_schedules[0]["beta"] == 0.5


def test_batches_without_mask_give_the_masked_outputs():
    """Right padding run without attention_mask: the same logits at the words' symbols and the
    same loss as the masked (packed) forward."""
    words = generate_dyck2(0, num_train=16, num_validation=0, num_test=1, max_length=40)["train"]
    encoded = reproduce.EncodedWords(words)
    model = build_dyck_model("multi_timescale", 0, DyckSettings(hidden_size=12))
    masked = encoded.batch(range(16), with_mask=True)
    plain = encoded.batch(range(16))
    assert "attention_mask" not in plain and torch.equal(plain["labels"], masked["labels"])
    with_mask, without = model(**masked), model(**plain)
    real = masked["attention_mask"].bool()
    torch.testing.assert_close(without.logits[real], with_mask.logits[real], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(without.loss, with_mask.loss, rtol=1e-6, atol=1e-7)


def test_training_moves_weights_but_not_frozen_tensors(monkeypatch):
    settings = DyckSettings(**{**SMOKE, "epochs": 1, "max_steps": 3, "validate_every_epoch": False})
    data = generate_dyck2(0, num_train=200, num_validation=50, num_test=100, max_length=40)
    before = build_dyck_model("multi_timescale", 4, settings).state_dict()
    captured = {}
    original = reproduce.build_dyck_model

    def keep(*args, **kwargs):
        captured["model"] = original(*args, **kwargs)
        return captured["model"]

    monkeypatch.setattr(reproduce, "build_dyck_model", keep)
    run = run_dyck_seed("multi_timescale", 4, data, settings)
    after = captured["model"].state_dict()
    assert run.steps == 3 and run.history[0]["validation_loss"] is None
    for name, value in before.items():
        frozen = "gate_biases" in name or "embeddings" in name
        assert torch.equal(after[name], value) == frozen, name


def test_mse_loss_and_early_stop():
    data = generate_dyck2(0, num_train=200, num_validation=50, num_test=100, max_length=40)
    settings = DyckSettings(**{**SMOKE, "loss": "mse", "stop_below_validation_loss": 10.0})
    run = run_dyck_seed("baseline", 1, data, settings)
    assert len(run.history) == 1  # the MSE of sigmoids is below 1 after any epoch
    assert 0 < run.history[0]["train_loss"] < 1 and 0 < run.history[0]["validation_loss"] < 1


def test_span_bins():
    np.testing.assert_allclose(span_bin_edges(200), np.arange(2, 201, 22))
    edges = span_bin_edges(40)
    spans = np.arange(2, 41, 2)
    histogram, _ = np.histogram(spans, bins=edges)
    assert np.bincount(span_bin_index(spans, edges), minlength=9).tolist() == histogram.tolist()
    assert span_bin_index([2, 40], edges).tolist() == [0, 8]
    with pytest.raises(ValueError, match="spans"):
        span_bin_index([42], edges)
    with pytest.raises(ValueError, match="max_length"):
        span_bin_edges(2)
    with pytest.raises(ValueError, match="num_bins"):
        span_bin_edges(200, 0)


def test_mean_confidence_interval():
    values = [0.91, 0.93, 0.92, 0.95]
    assert mean_confidence_interval(values) == pytest.approx(t_interval(values))
    assert mean_confidence_interval([0.5, 0.7, float("nan")]) == pytest.approx(t_interval([0.5, 0.7]))
    mean, low, high = mean_confidence_interval([0.4])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)
    assert mean_confidence_interval([0.3, 0.3]) == (0.3, 0.3, 0.3)
    with pytest.raises(ValueError, match="values"):
        mean_confidence_interval([])
    with pytest.raises(ValueError, match="confidence"):
        mean_confidence_interval([1.0, 2.0], confidence=1.5)


def test_paper_values_are_recorded():
    assert PAPER_ACCURACY == {"multi_timescale": 0.9382, "baseline": 0.9166}
    assert reproduce.PAPER_NUM_SEEDS == 20


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_train", 0),
        ("hidden_size", 0),
        ("epochs", -1),
        ("batch_size", 2.0),
        ("max_steps", 0),
        ("learning_rate", 0.0),
        ("alpha", -1.0),
        ("scale", float("inf")),
        ("clip_grad_norm", 0.0),
        ("loss", "l1"),
        ("threshold", 1.0),
        ("one_hot_inputs", 1),
        ("num_span_bins", 0),
        ("stop_below_validation_loss", -1.0),
        ("max_length", 1),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DyckSettings(**{field: value})


def test_bad_arguments():
    data = generate_dyck2(0, num_train=20, num_validation=5, num_test=10, max_length=20)
    settings = DyckSettings(num_train=20, num_validation=5, num_test=10, max_length=20, hidden_size=4, epochs=1)
    with pytest.raises(ValueError, match="arm"):
        dyck_config("lstm")
    with pytest.raises(ValueError, match="max_length"):
        run_dyck_seed("baseline", 0, data, DyckSettings(max_length=30))
    with pytest.raises(ValueError, match="seeds"):
        run_dyck_experiment(settings, seeds=[1, 1], data=data)
    with pytest.raises(ValueError, match="arms"):
        run_dyck_experiment(settings, seeds=[1], arms=["baseline", "baseline"], data=data)
    with pytest.raises(ValueError, match="split sizes"):
        run_dyck_experiment(
            DyckSettings(num_train=21, num_validation=5, num_test=10, max_length=20), seeds=[1], data=data
        )
    with pytest.raises(ValueError, match="stop_below_validation_loss"):
        DyckSettings(stop_below_validation_loss=0.1, validate_every_epoch=False)


# --- one Dyck-2 path: the library's run_dyck_experiment and mtlstm-reproduce dyck2 --------

NEAR_ONE = {"multi_timescale": {1: 1.0, 2: 0.99, 3: 1.0}, "baseline": {1: 0.97, 2: 0.99, 3: 0.98}}
"""Accuracies whose plain t interval over 3 seeds crosses 1 (multi-timescale: [0.979, 1.011])."""


@pytest.fixture
def near_one_runs(monkeypatch):
    """run_dyck_seed replaced by runs of the accuracies of NEAR_ONE (the first words right, the
    rest wrong), so that both entry points summarise the same runs in a moment."""
    from mtlstm_hf.reproduce.dyck import DyckRun, accuracy_by_span

    def fake(arm, seed, data, settings=None, log=None, device=None):
        words = data["test"]
        correct = np.arange(len(words)) < round(NEAR_ONE[arm][seed] * len(words))
        spans = np.array([walk(word)[1] for word in words])
        edges = span_bin_edges(settings.max_length, settings.num_span_bins)
        span_accuracy, span_counts = accuracy_by_span(correct, spans, edges)
        return DyckRun(
            arm=arm, seed=seed, accuracy=float(correct.mean()), correct=correct,
            predictions=[walk(word)[0] for word in words], span_accuracy=span_accuracy, span_counts=span_counts,
            history=[], steps=0, seconds=0.0,
        )  # fmt: skip

    monkeypatch.setattr(reproduce, "run_dyck_seed", fake)


def test_both_entry_points_give_the_same_summary_with_accuracy_intervals_in_0_1(near_one_runs, tmp_path):
    """The library used to keep the plain t interval of the accuracies (above 1 here) while the
    command cut it at 1: both now give the command's summary of the same runs."""
    from mtlstm_hf.reproduce.cli import main
    from mtlstm_hf.reproduce.output import jsonable
    from mtlstm_hf.reproduce.scales import dyck_scale

    settings = DyckSettings(**dyck_scale("smoke")["settings"])
    experiment = run_dyck_experiment(settings, seeds=[1, 2, 3])
    out = tmp_path / "out"
    assert (
        main(["dyck2", "--scale", "smoke", "--seeds", "1", "2", "3", "--output-dir", str(out), "--threads", "1"]) == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert jsonable(experiment.summary) == report["summary"]
    plain = t_interval(list(NEAR_ONE["multi_timescale"].values()))
    assert plain[2] > 1  # the interval the library used to report
    for arm in ARMS:
        low, high = experiment.arms[arm]["ci95"]
        assert (
            0 <= low <= high <= 1 and experiment.arms[arm]["ci95"] == report["summary"]["arms"][arm]["accuracy"]["ci95"]
        )
        assert experiment.arms[arm]["mean"] == pytest.approx(np.mean(list(NEAR_ONE[arm].values())))
        assert experiment.arms[arm]["accuracies"] == list(NEAR_ONE[arm].values())
        for entry in experiment.arms[arm]["span_accuracy_ci95"]:
            assert all(math.isnan(end) or 0 <= end <= 1 for end in entry)
    assert experiment.arms["multi_timescale"]["ci95"][1] == 1.0
    assert experiment.difference == {key: report["summary"]["difference"][key] for key in ("mean", "ci95", "p_value")}
    only_baseline = run_dyck_experiment(settings, seeds=[1, 2, 3], arms=["baseline"])
    assert set(only_baseline.arms) == {"baseline"} and only_baseline.difference is None
    assert only_baseline.arms["baseline"] == experiment.arms["baseline"]
