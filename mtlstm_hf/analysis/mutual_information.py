"""Mutual information between words at distance ``d`` and its power-law decay.

Lin & Tegmark ("Critical behavior in physics and probabilistic formal languages", Entropy 2017)
found that the mutual information between two words ``d`` tokens apart decays like a power of
``d`` in natural language; Mahto et al. (ICLR 2021) build their LSTM so
that its units' average decay is a power law too. This module measures the first and compares
it with the second:

* :func:`mutual_information`: ``I(d) = H(X) + H(Y) - H(X, Y)`` for the pairs
  ``(X, Y) = (w_t, w_{t+d})`` of one token stream, with a bias-corrected entropy estimator;
* :func:`fit_power_law`: ``I(d) ~ A d^-k`` by least squares in log-log space;
* :func:`timescale_decay` / :func:`compare_decay`: the decay implied by a model's timescales,
  ``mean_i exp(-d / T_i)`` (or ``(1 + d/beta)^-alpha`` for inverse-gamma timescales,
  :func:`mtlstm_hf.analysis.power_law.power_law_decay`), fitted the same way.

Estimator (``estimator=``). The plug-in ("maximum likelihood") entropy underestimates the true
entropy by about ``(m - 1) / (2 n)`` nats (``m`` occupied bins, ``n`` samples); for the joint of two
words ``m`` is huge, so the plug-in MI is biased *upward*, and at large ``d`` where the true MI is
tiny that bias dominates and flattens the curve. Default ``"grassberger"``: Grassberger's (2003,
arXiv physics/0307138, eq. 35) estimator ``H = ln n - (1/n) sum_i n_i G(n_i)`` with
``G(n) = psi(n) + (-1)^n / 2 * (psi((n+1)/2) - psi(n/2))``; it corrects each count, including the
many singletons of an undersampled joint distribution, and is the estimator Lin & Tegmark used.
``"miller_madow"`` (``H_plugin + (m - 1) / (2n)``) is the classic first-order correction; it only
knows the number of observed bins and under-corrects when most pairs are seen once.
``"plugin"`` gives the raw estimate. Every estimator is applied to the three entropies.

No estimator removes the bias of a Zipfian vocabulary's undersampled joint table (at 2,000
types and 200,000 i.i.d. tokens Grassberger still reports ~0.8 bits). By default
:func:`mutual_information` therefore also subtracts the same estimate on a shuffled copy of the
stream (same word frequencies, no dependence): ``shuffle_baseline=1``; set 0 for the raw estimate.

Counting is vectorised: ids are compacted to ``0..K-1``, each pair becomes the integer
``w1 * K + w2`` and :func:`torch.unique` counts them; the only Python loop is over distances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .settings import MI_ESTIMATORS

__all__ = [
    "ESTIMATORS",
    "DecayComparison",
    "MutualInformationResult",
    "PowerLawFit",
    "compare_decay",
    "entropy_from_counts",
    "fit_power_law",
    "log_spaced_distances",
    "mutual_information",
    "timescale_decay",
]

ESTIMATORS: tuple[str, ...] = MI_ESTIMATORS
"""Entropy estimators accepted by :func:`entropy_from_counts` and :func:`mutual_information`."""


def log_spaced_distances(max_distance: int = 1000, num: int = 30, min_distance: int = 1) -> torch.Tensor:
    """About ``num`` integer distances from ``min_distance`` to ``max_distance``, evenly spaced in log.

    Returns:
        ``(K,)`` int64, strictly increasing, ``K <= num`` (rounding merges close small values).
    """
    if not (isinstance(min_distance, int) and isinstance(max_distance, int) and 1 <= min_distance <= max_distance):
        raise ValueError(f"need integers 1 <= min_distance <= max_distance, got {min_distance}, {max_distance}.")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}.")
    grid = torch.logspace(math.log10(min_distance), math.log10(max_distance), num, dtype=torch.float64)
    return torch.unique(grid.round().long())


def entropy_from_counts(counts: torch.Tensor, estimator: str = "grassberger") -> float:
    """Entropy in nats of a distribution observed through its (non-negative) bin counts.

    ``plugin``: ``H = ln n - (1/n) sum c ln c``; ``miller_madow``: plug-in plus ``(m - 1) / (2n)``
    with ``m`` the occupied bins; ``grassberger``: ``H = ln n - (1/n) sum c G(c)`` (see the module
    docstring). Zero counts are ignored.

    Args:
        counts: any shape, integer or float counts.
        estimator: one of :data:`ESTIMATORS`.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    counts = counts.reshape(-1).to(torch.float64)
    counts = counts[counts > 0]
    total = float(counts.sum())
    if total == 0:
        raise ValueError("entropy of an empty sample: all counts are zero.")
    if estimator == "grassberger":
        parity = 1.0 - 2.0 * torch.remainder(counts, 2.0)  # (-1)^c
        correction = torch.special.digamma((counts + 1) / 2) - torch.special.digamma(counts / 2)
        g = torch.special.digamma(counts) + 0.5 * parity * correction
        return math.log(total) - float((counts * g).sum()) / total
    plugin = math.log(total) - float((counts * torch.log(counts)).sum()) / total
    if estimator == "miller_madow":
        return plugin + (counts.numel() - 1) / (2.0 * total)
    return plugin


@dataclass
class MutualInformationResult:
    """``I(d)`` of a token stream.

    Attributes:
        distances: ``(K,)`` int64.
        mutual_information: ``(K,)`` float64, bias-corrected, in units of ``base`` (bits for 2);
            may be slightly negative where the true value is ~0.
        plugin: ``(K,)`` float64, the uncorrected plug-in estimate (same units).
        num_pairs: ``(K,)`` int64, ``N - d`` pairs per distance.
        estimator: the estimator used for ``mutual_information``.
        base: logarithm base of the units.
        baseline: ``(K,)`` the shuffled-stream estimate already subtracted (zeros without one).
    """

    distances: torch.Tensor
    mutual_information: torch.Tensor
    plugin: torch.Tensor
    num_pairs: torch.Tensor
    estimator: str
    base: float
    baseline: torch.Tensor | None = None


def _as_token_stream(token_stream: Any) -> torch.Tensor:
    stream = torch.as_tensor(token_stream)
    if stream.dim() != 1 or stream.is_floating_point() or stream.is_complex() or stream.dtype == torch.bool:
        raise ValueError(
            f"token_stream must be a 1-D integer tensor (N,), got {stream.dtype} of shape {tuple(stream.shape)}."
        )
    return stream.long().cpu()


def _information_at_distances(
    compact: torch.Tensor, num_types: int, distances: list[int], estimator: str
) -> torch.Tensor:
    """``H(w_t) + H(w_{t+d}) - H(w_t, w_{t+d})`` in nats per distance, for compact ids ``(N,)`` in ``[0, K)``."""
    values = []
    for distance in distances:
        first, second = compact[:-distance], compact[distance:]
        # One integer per pair: counting pairs is counting integers, no Python loop. A dense
        # bincount (O(N)) when the K^2 table is small, else sort-based unique on the sparse ids.
        pair_ids = first * num_types + second
        if num_types * num_types <= max(4 * pair_ids.numel(), 1 << 20):
            joint = torch.bincount(pair_ids, minlength=num_types * num_types)
        else:
            joint = torch.unique(pair_ids, return_counts=True)[1]
        values.append(
            entropy_from_counts(torch.bincount(first, minlength=num_types), estimator)
            + entropy_from_counts(torch.bincount(second, minlength=num_types), estimator)
            - entropy_from_counts(joint, estimator)
        )
    return torch.tensor(values, dtype=torch.float64)


def mutual_information(
    token_stream: torch.Tensor,
    distances: Sequence[int] | torch.Tensor | None = None,
    max_distance: int = 1000,
    num_distances: int = 30,
    estimator: str = "grassberger",
    base: float = 2.0,
    shuffle_baseline: int = 1,
    seed: int = 0,
) -> MutualInformationResult:
    """Mutual information between the words at positions ``t`` and ``t + d`` of a stream.

    ``I(d) = H(w_t) + H(w_{t+d}) - H(w_t, w_{t+d})`` over the ``N - d`` pairs, each entropy from
    :func:`entropy_from_counts` with ``estimator`` (the two marginals are counted over their own
    ``N - d`` positions, so ``I >= 0`` exactly for the plug-in estimate).

    With a Zipfian vocabulary the joint table is badly undersampled and even the Grassberger
    estimate keeps a positive bias (e.g. ~0.02 bits for 200 Zipf-distributed types and 200,000
    i.i.d. tokens, against ~0.14 for the plug-in). ``shuffle_baseline=S`` estimates what remains
    from ``S`` random permutations of the stream (same word frequencies, no dependence at all)
    and subtracts their mean, per distance; the result then measures dependence beyond chance.

    Args:
        token_stream: ``(N,)`` integer ids (any range; they are compacted).
        distances: the distances ``d >= 1``; default :func:`log_spaced_distances` up to ``max_distance``.
        max_distance, num_distances: the default log-spaced grid.
        estimator: one of :data:`ESTIMATORS` (default ``"grassberger"``, see module docstring).
        base: logarithm base of the result (2 = bits, ``math.e`` = nats).
        shuffle_baseline: number of shuffled copies whose MI is subtracted (default 1; 0 = none,
            the raw bias-corrected estimate).
        seed: seed of the shuffles (the result is deterministic).

    Raises:
        ValueError: a distance ``< 1`` or ``> N - 2`` (at least 2 pairs are needed), an unknown
            estimator, a malformed stream.
    """
    stream = _as_token_stream(token_stream)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    if not base > 0 or base == 1:
        raise ValueError(f"base must be positive and != 1, got {base}.")
    if isinstance(shuffle_baseline, bool) or not isinstance(shuffle_baseline, int) or shuffle_baseline < 0:
        raise ValueError(f"shuffle_baseline must be a non-negative integer, got {shuffle_baseline!r}.")
    if distances is None:
        distances = log_spaced_distances(max_distance, num_distances)
    distances = torch.as_tensor(distances, dtype=torch.int64).reshape(-1)
    if distances.numel() == 0:
        raise ValueError("give at least one distance.")
    num_tokens = stream.numel()
    if int(distances.min()) < 1:
        raise ValueError(f"distances must be >= 1, got {int(distances.min())}.")
    if int(distances.max()) > num_tokens - 2:
        raise ValueError(
            f"the token stream ({num_tokens} tokens) is too short for distance {int(distances.max())}: "
            f"need at least d + 2 tokens (two pairs); use a longer stream or smaller distances."
        )
    _, compact = torch.unique(stream, return_inverse=True)
    num_types = int(compact.max()) + 1
    to_units = 1.0 / math.log(base)
    distance_list = distances.tolist()
    corrected = _information_at_distances(compact, num_types, distance_list, estimator) * to_units
    plugin = _information_at_distances(compact, num_types, distance_list, "plugin") * to_units
    baseline = torch.zeros_like(corrected)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(shuffle_baseline):
        shuffled = compact[torch.randperm(num_tokens, generator=generator)]
        baseline += _information_at_distances(shuffled, num_types, distance_list, estimator) * to_units
    baseline /= max(shuffle_baseline, 1)
    return MutualInformationResult(
        distances=distances,
        mutual_information=corrected - baseline,
        plugin=plugin,
        num_pairs=num_tokens - distances,
        estimator=estimator,
        base=float(base),
        baseline=baseline,
    )


@dataclass
class PowerLawFit:
    """Least-squares fit of ``log y = log A - k log d`` over ``d_min <= d <= d_max``, ``y > 0``.

    Attributes:
        amplitude: ``A``.
        exponent: ``k`` (positive for a decay).
        r_squared: coefficient of determination of the fit in log-log space.
        d_min, d_max: the fitted range.
        num_points: points used (non-positive ``y`` are left out: no logarithm).
    """

    amplitude: float
    exponent: float
    r_squared: float
    d_min: float
    d_max: float
    num_points: int

    def predict(self, distances: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """``A d^-k`` as float64."""
        return self.amplitude * torch.as_tensor(distances, dtype=torch.float64) ** (-self.exponent)


def fit_power_law(
    distances: torch.Tensor | Sequence[float],
    values: torch.Tensor | Sequence[float],
    d_min: float | None = None,
    d_max: float | None = None,
) -> PowerLawFit:
    """Fit ``values ~ A * distances^-k`` by linear least squares in log-log space.

    Args:
        distances: ``(K,)`` positive.
        values: ``(K,)``; non-positive or non-finite entries are left out.
        d_min, d_max: inclusive fit range (default: all distances).

    Raises:
        ValueError: fewer than 2 usable points in the range.
    """
    distances = torch.as_tensor(distances, dtype=torch.float64).reshape(-1)
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if distances.shape != values.shape:
        raise ValueError(f"distances and values differ in length: {distances.numel()} vs {values.numel()}.")
    low = float(distances.min()) if d_min is None else float(d_min)
    high = float(distances.max()) if d_max is None else float(d_max)
    usable = (distances >= low) & (distances <= high) & (distances > 0) & (values > 0) & torch.isfinite(values)
    if int(usable.sum()) < 2:
        raise ValueError(
            f"need at least 2 positive values with {low} <= d <= {high} to fit a power law, got {int(usable.sum())}."
        )
    log_d, log_y = distances[usable].log(), values[usable].log()
    design = torch.stack([torch.ones_like(log_d), log_d], 1)
    (intercept, slope) = torch.linalg.lstsq(design, log_y[:, None]).solution[:, 0].tolist()
    residual = log_y - (intercept + slope * log_d)
    total = ((log_y - log_y.mean()) ** 2).sum()
    r_squared = 1.0 - float((residual**2).sum() / total) if float(total) > 0 else 1.0
    return PowerLawFit(math.exp(intercept), -slope, r_squared, low, high, int(usable.sum()))


def timescale_decay(
    distances: torch.Tensor | Sequence[float], timescales: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """Average decay of a population of exponentially forgetting units: ``mean_i exp(-d / T_i)``.

    A unit with timescale ``T`` keeps ``exp(-d/T)`` of its cell after ``d`` steps without input
    (Mahto et al. 2021). ``T = inf`` never decays; ``T = 0`` keeps nothing for ``d > 0``. For
    ``T ~ InverseGamma(alpha, beta)`` the mean tends to ``(1 + d/beta)^-alpha``
    (:func:`mtlstm_hf.analysis.power_law.power_law_decay`).

    Args:
        distances: ``(K,)`` non-negative, in tokens.
        timescales: ``(U,)`` non-negative, e.g. ``model.assigned_timescales()[layer]`` or
            timescales estimated from a trained model's forget gates.

    Returns:
        ``(K,)`` float64.
    """
    distances = torch.as_tensor(distances, dtype=torch.float64).reshape(-1, 1)
    timescales = torch.as_tensor(timescales, dtype=torch.float64).reshape(1, -1)
    if timescales.numel() == 0 or bool((timescales < 0).any()) or bool(timescales.isnan().any()):
        raise ValueError("timescales must be a non-empty set of non-negative numbers.")
    # d / T with 0/0 := 0 (a T=0 unit at d=0 still holds its value) and d/inf = 0.
    ratio = torch.where(distances == 0, torch.zeros_like(distances * timescales), distances / timescales)
    return torch.exp(-ratio).mean(1)


@dataclass
class DecayComparison:
    """Power-law fits of the corpus MI and of a model's implied decay over the same range.

    Attributes:
        data_fit: fit of ``I(d)``.
        model_fit: fit of ``decay(d)^power``.
        scale: ``s`` minimising the log-space squared error of ``s * decay(d)^power`` to ``I(d)``
            (to overlay the curves; the geometric mean of their ratio).
        log_rmse: root mean squared ``log I(d) - log(s decay(d)^power)`` over the range (nats).
        power: the exponent applied to the model decay before comparing.
    """

    data_fit: PowerLawFit
    model_fit: PowerLawFit
    scale: float
    log_rmse: float
    power: float

    @property
    def exponent_ratio(self) -> float:
        """``k_model / k_data``: 1 when both decay with the same power of ``d``."""
        return self.model_fit.exponent / self.data_fit.exponent


def compare_decay(
    result: MutualInformationResult,
    model_decay: torch.Tensor | Sequence[float],
    d_min: float | None = None,
    d_max: float | None = None,
    power: float = 1.0,
) -> DecayComparison:
    """Compare the corpus MI decay with a model's implied decay over ``[d_min, d_max]``.

    What should match is a modelling assumption, hence ``power``: ``1`` compares ``I(d)`` with the
    memory decay itself; ``2`` with its square (for weak dependence the MI of two variables is
    quadratic in their correlation, Lin & Tegmark 2017, so a decay of ``d^-k`` in correlation
    gives ``d^-2k`` in MI).

    Args:
        result: from :func:`mutual_information`.
        model_decay: ``(K,)`` decay at ``result.distances`` (:func:`timescale_decay` or
            ``power_law_decay(result.distances, alpha, beta)``).
        d_min, d_max: the common fit range (default all distances).
        power: exponent applied to ``model_decay``.
    """
    model_curve = torch.as_tensor(model_decay, dtype=torch.float64).reshape(-1) ** power
    if model_curve.shape != result.distances.shape:
        raise ValueError(f"model_decay has {model_curve.numel()} values for {result.distances.numel()} distances.")
    data_fit = fit_power_law(result.distances, result.mutual_information, d_min, d_max)
    model_fit = fit_power_law(result.distances, model_curve, data_fit.d_min, data_fit.d_max)
    distances = result.distances.to(torch.float64)
    usable = (
        (distances >= data_fit.d_min)
        & (distances <= data_fit.d_max)
        & (result.mutual_information > 0)
        & (model_curve > 0)
    )
    log_ratio = result.mutual_information[usable].log() - model_curve[usable].log()
    log_scale = float(log_ratio.mean())
    log_rmse = float(((log_ratio - log_scale) ** 2).mean().sqrt())
    return DecayComparison(data_fit, model_fit, math.exp(log_scale), log_rmse, power)
