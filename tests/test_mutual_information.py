"""Mutual information at distance d: estimator oracles, power-law fits, model decay comparison."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from mtlstm_hf.analysis.mutual_information import (
    compare_decay,
    entropy_from_counts,
    fit_power_law,
    log_spaced_distances,
    mutual_information,
    timescale_decay,
)
from mtlstm_hf.analysis.power_law import power_law_decay
from mtlstm_hf.models.mtlstm.timescales import inverse_gamma_isf


def _binary_symmetric_chain(length: int, flip: float, seed: int) -> torch.Tensor:
    """x_{t+1} = x_t, flipped with probability ``flip``; stationary (uniform x_0)."""
    generator = torch.Generator().manual_seed(seed)
    steps = (torch.rand(length, generator=generator) < flip).long()
    steps[0] = torch.randint(0, 2, (1,), generator=generator)
    return steps.cumsum(0) % 2


def _chain_mutual_information_bits(distance: torch.Tensor, flip: float) -> torch.Tensor:
    """Closed form: P(x_t = x_{t+d}) = (1 + (1-2p)^d) / 2, I(d) = 1 - H_b(that) bits."""
    same = (1 + (1 - 2 * flip) ** distance.double()) / 2
    binary_entropy = -(same * same.log2() + (1 - same) * (1 - same).log2())
    return 1 - binary_entropy


@pytest.mark.parametrize("estimator", ["grassberger", "miller_madow"])
def test_markov_chain_matches_closed_form(estimator):
    flip = 0.05
    stream = _binary_symmetric_chain(200_000, flip, seed=0)
    distances = torch.tensor([1, 2, 5, 10, 20, 60])
    result = mutual_information(stream, distances, estimator=estimator)
    expected = _chain_mutual_information_bits(distances, flip)
    torch.testing.assert_close(result.mutual_information, expected, rtol=0.1, atol=0.01)
    assert result.estimator == estimator and torch.equal(result.num_pairs, 200_000 - distances)
    # In nats the same numbers scaled by ln 2.
    nats = mutual_information(stream, distances[:2], estimator=estimator, base=math.e)
    torch.testing.assert_close(nats.mutual_information, result.mutual_information[:2] * math.log(2))


def _zipf_iid_stream(vocab: int, length: int = 200_000, seed: int = 1) -> torch.Tensor:
    """Independent tokens with Zipfian frequencies (rare types undersample the joint table)."""
    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    return torch.multinomial(weights, length, replacement=True, generator=torch.Generator().manual_seed(seed))


def test_iid_tokens_have_no_information_after_correction():
    """Well sampled (20 types): the estimator alone removes the plug-in bias ~(V-1)^2 / (2 N ln 2) bits."""
    result = mutual_information(_zipf_iid_stream(20), [1, 7, 100], shuffle_baseline=0)
    assert bool((result.plugin > 1e-3).all())
    # What is left is sampling noise (std ~ sqrt(2) (V-1) / (2 N ln 2) bits), not bias.
    assert bool((result.mutual_information.abs() < 0.3 * result.plugin).all())
    torch.testing.assert_close(result.baseline, torch.zeros(3, dtype=torch.float64))


def test_shuffle_baseline_removes_undersampling_bias():
    """200 Zipfian types: Grassberger leaves a residual bias that the shuffled baseline removes."""
    stream = _zipf_iid_stream(200)
    raw = mutual_information(stream, [1, 7, 100], shuffle_baseline=0)
    assert bool((raw.mutual_information > 0.01).all()) and bool((raw.mutual_information < 0.2 * raw.plugin).all())
    corrected = mutual_information(stream, [1, 7, 100])  # default: one shuffle
    assert bool((corrected.mutual_information.abs() < 5e-3).all())
    torch.testing.assert_close(corrected.mutual_information + corrected.baseline, raw.mutual_information)


@pytest.mark.parametrize(("num_ids", "length"), [(10, 300), (5_000, 3_000)])  # dense and sparse pair counting
def test_vectorised_counts_match_python_counter(num_ids, length):
    generator = torch.Generator().manual_seed(2)
    stream = torch.randint(100, 100 + num_ids, (length,), generator=generator)  # ids need not start at 0
    for distance in (1, 13):
        pairs = list(zip(stream[:-distance].tolist(), stream[distance:].tolist()))
        count = lambda values: torch.tensor(list(Counter(values).values()))  # noqa: E731
        for estimator in ("plugin", "grassberger"):
            expected = (
                entropy_from_counts(count([a for a, _ in pairs]), estimator)
                + entropy_from_counts(count([b for _, b in pairs]), estimator)
                - entropy_from_counts(count(pairs), estimator)
            ) / math.log(2)
            result = mutual_information(stream, [distance], estimator=estimator, shuffle_baseline=0)
            assert result.mutual_information.item() == pytest.approx(expected, abs=1e-12)


def test_entropy_estimators():
    uniform = torch.full((8,), 10_000)
    for estimator in ("plugin", "miller_madow", "grassberger"):
        assert entropy_from_counts(uniform, estimator) == pytest.approx(math.log(8), abs=1e-3)
    # Grassberger's G(1) = -gamma - ln 2 (his eq. 35): two singletons.
    euler_gamma = 0.5772156649015329
    two_singletons = entropy_from_counts(torch.tensor([1, 1]), "grassberger")
    assert two_singletons == pytest.approx(math.log(2) + euler_gamma + math.log(2))
    assert entropy_from_counts(torch.tensor([3, 0, 1]), "miller_madow") == pytest.approx(
        entropy_from_counts(torch.tensor([3, 1]), "plugin") + 1 / 8
    )
    with pytest.raises(ValueError, match="estimator"):
        entropy_from_counts(uniform, "shrinkage")


def test_power_law_fit_recovers_exponent_and_range():
    distances = log_spaced_distances(1000, 25)
    values = 0.7 * distances.double() ** -0.4
    values[0] = 5.0  # outside the fit range below: must not matter
    fit = fit_power_law(distances, values, d_min=2)
    assert fit.exponent == pytest.approx(0.4, abs=1e-10) and fit.amplitude == pytest.approx(0.7, rel=1e-10)
    assert fit.r_squared == pytest.approx(1.0) and fit.num_points == len(distances) - 1
    torch.testing.assert_close(fit.predict(torch.tensor([10.0])), torch.tensor([0.7 * 10**-0.4], dtype=torch.float64))
    noisy = values * torch.exp(0.3 * torch.randn(len(values), dtype=torch.float64))
    assert fit_power_law(distances, noisy, d_min=2).r_squared < 1.0
    with pytest.raises(ValueError, match="at least 2"):
        fit_power_law(distances, -values)


def test_log_spaced_distances_reach_requested_maximum():
    distances = log_spaced_distances(1000, 30)
    assert distances[0] == 1 and distances[-1] == 1000 and bool((distances.diff() > 0).all())
    assert 20 <= len(distances) <= 30


def test_timescale_population_decay_approaches_power_law():
    """Units with inverse-gamma quantile timescales decay on average like (1 + d/beta)^-alpha."""
    alpha, beta, units = 0.56, 1.0, 20_000
    quantiles = torch.linspace(0, 1, units + 2, dtype=torch.float64)[1:-1]
    timescales = inverse_gamma_isf(quantiles, alpha, beta)
    distances = torch.tensor([1.0, 10.0, 100.0])
    expected = power_law_decay(distances, alpha, beta)
    torch.testing.assert_close(timescale_decay(distances, timescales), expected, rtol=0.01, atol=0)
    extremes = timescale_decay(torch.tensor([0.0, 5.0]), torch.tensor([0.0, math.inf]))
    torch.testing.assert_close(extremes, torch.tensor([1.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="timescales"):
        timescale_decay(distances, torch.tensor([-1.0]))


def test_compare_decay_with_squared_model_decay():
    """MI = 0.3 * decay^2 exactly: power=2 matches exponent and scale; power=1 halves the model exponent."""
    distances = log_spaced_distances(1000, 20)
    decay = power_law_decay(distances, 0.56, 1.0)
    result = mutual_information(torch.randint(0, 5, (2000,)), distances=[1])  # a container to fill
    result.distances, result.mutual_information = distances, 0.3 * decay**2
    comparison = compare_decay(result, decay, d_min=10, power=2.0)
    assert comparison.scale == pytest.approx(0.3) and comparison.log_rmse == pytest.approx(0.0, abs=1e-12)
    assert comparison.exponent_ratio == pytest.approx(1.0)
    assert compare_decay(result, decay, d_min=10).exponent_ratio == pytest.approx(0.5)
    with pytest.raises(ValueError, match="model_decay"):
        compare_decay(result, decay[:-1])


def test_clear_errors():
    stream = torch.randint(0, 3, (50,))
    with pytest.raises(ValueError, match="too short"):
        mutual_information(stream, [60])
    with pytest.raises(ValueError, match="too short"):
        mutual_information(stream)  # default grid reaches d = 1000
    with pytest.raises(ValueError, match=">= 1"):
        mutual_information(stream, [0, 1])
    with pytest.raises(ValueError, match="estimator"):
        mutual_information(stream, [1], estimator="nsb")
    with pytest.raises(ValueError, match="1-D integer"):
        mutual_information(stream.double(), [1])
    with pytest.raises(ValueError, match="shuffle_baseline"):
        mutual_information(stream, [1], shuffle_baseline=-1)


def test_default_grid_reaches_distance_1000_and_plot_renders():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from mtlstm_hf.analysis.figures import plot_mutual_information

    stream = _binary_symmetric_chain(5_000, 0.3, seed=3)
    result = mutual_information(stream, max_distance=1000, num_distances=12)
    assert int(result.distances[-1]) == 1000
    decay = timescale_decay(result.distances, torch.tensor([3.0, 4.0, 50.0]))
    comparison = compare_decay(result, decay, d_max=3, power=2.0)
    figure = plot_mutual_information(result, comparison=comparison, model_decay=decay)
    assert isinstance(figure, Figure)
    points, fitted, model = figure.axes[0].lines
    # The data (only positive estimates fit on a log axis), the fit A d^-k on its range, the model curve.
    positive = (result.mutual_information > 0).numpy()
    distances = result.distances.double().numpy()
    np.testing.assert_allclose(points.get_xdata(), distances[positive])
    np.testing.assert_allclose(points.get_ydata(), result.mutual_information.numpy()[positive])
    fit = comparison.data_fit
    span = distances[(distances >= fit.d_min) & (distances <= fit.d_max)]
    np.testing.assert_allclose(fitted.get_xdata(), span)
    np.testing.assert_allclose(fitted.get_ydata(), fit.amplitude * span ** (-fit.exponent), rtol=1e-12)
    np.testing.assert_allclose(model.get_ydata(), comparison.scale * decay.double().numpy() ** 2.0, rtol=1e-12)
    assert points.get_label() == "mutual information of the text (grassberger estimator)"
    assert fitted.get_label().startswith("power-law fit: ")
    assert model.get_label().startswith("decay implied by the model's timescales")
    figure.canvas.draw()
    plt.close(figure)
    alone = plot_mutual_information(result)
    assert len(alone.axes[0].lines) == 1
    plt.close(alone)
