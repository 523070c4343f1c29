"""Timescales a trained LSTM actually uses, their distribution, and how they compare with assigned ones.

Estimator (Mahto et al., ICLR 2021, Sec. 4.1). A unit whose forget
gate is a constant ``f`` decays as ``f^t = exp(-t / T)``, ``T = -1 / ln f``; for a trained
network the gate varies with the input, and the paper uses the gate averaged over a corpus::

    f_bar_h = (1 / N) sum_{b, t} f_{b, t, h}           (eval mode, state carried, all N tokens)
    T_h     = -1 / ln f_bar_h                            (tokens)

:func:`estimate_timescales` computes ``f_bar`` in one pass over a token stream through
:func:`~.traces.trace_moments` (vectorised gates per window, running float64 sums), and ``T`` with
:func:`mtlstm_hf.models.mtlstm.timescales.timescale_from_forget_gate`. The average is over
tokens; the reference code averages per-window means, which differs only by the weight of a
shorter last window.

Degenerate units. A unit whose mean gate is exactly 0 gets ``T = 0``; exactly 1 gets
``T = inf`` (e.g. a frozen bias of ``+-inf``, or saturation in low precision). They are kept in
``timescales`` as 0 / inf (written ``null`` for inf in JSON reports), flagged by
``LayerTimescales.degenerate`` and counted, and **left out** of every fit, correlation and ratio
(``log T`` is undefined there); nothing raises.

Distribution fits (:func:`fit_timescale_distribution`). Maximum likelihood with location fixed
at 0 for the inverse gamma (the paper's model of timescales), log-normal, exponential and gamma;
per family: parameters, log-likelihood, AIC ``2k - 2 ln L``, BIC ``k ln n - 2 ln L``, and the
Kolmogorov-Smirnov statistic and p-value against the fitted distribution. The KS p-value assumes
the parameters were not estimated from the same data (Lilliefors): it is optimistic, use it to
rank families rather than as an exact test. The inverse gamma MLE uses that ``1/T ~
Gamma(alpha, rate=beta)`` when ``T ~ InvGamma(alpha, scale=beta)``: the well-conditioned gamma
MLE of the reciprocals (same maximiser, the Jacobian does not depend on the parameters).

When a fit means nothing (:func:`inverse_gamma_fit_note`): a layer whose schedule fixes its
timescales (``{"type": "fixed"}``, e.g. the paper's layer 1 with T = 3 or 4) was not meant to
follow any distribution, and a layer without timescale spread (90th / 10th percentile of the
finite estimates below :data:`MIN_TIMESCALE_SPREAD`) or with fewer than 3 finite estimates gives a
degenerate fit. The fits are still computed and reported (they are data), but the report marks
them (``fit_note``) and the figures draw no fitted distribution for such layers.

Comparison with assigned timescales (:func:`compare_with_assigned`): Pearson correlation of
``log T``, Spearman rank correlation, and summaries of the ratio ``T_est / T_assigned``.

Layers: ``layers`` arguments and ``LayerTimescales.layer_index`` are 0-based indices into
``model.model.layers``; the report entries of :func:`timescale_report` carry the layer *number*
(from 1, as the paper and ``report.json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from mtlstm_hf.evaluation.perplexity import token_rows
from mtlstm_hf.models.mtlstm.layouts import layer_number
from mtlstm_hf.models.mtlstm.timescales import timescale_from_forget_gate

from .adapter import base_model, deprecated_layer_attribute, forget_gate_layers
from .settings import DISTRIBUTION_FAMILIES
from .traces import trace_moments

__all__ = [
    "DISTRIBUTION_FAMILIES",
    "MIN_TIMESCALE_SPREAD",
    "DistributionFit",
    "LayerTimescales",
    "TimescaleEstimate",
    "compare_with_assigned",
    "estimate_timescales",
    "fit_inverse_gamma",
    "fit_timescale_distribution",
    "inverse_gamma_fit_note",
]


# Fewest usable timescales for a two-parameter fit to mean anything.
_MIN_FIT_SAMPLES = 3

MIN_TIMESCALE_SPREAD = 2.0
"""Smallest ratio of the 90th to the 10th percentile of a layer's finite estimated timescales for
which a distribution fit is drawn (below it the layer has no timescale spread to describe)."""


@dataclass
class LayerTimescales:
    """Estimated timescales of one layer.

    Attributes:
        layer: 0-based index into ``model.model.layers`` (the paper's "layer 2" is index 1).
        cell_type: the layer's cell type.
        mean_forget_gate: ``(H,)`` float64, ``f_bar`` per unit.
        forget_gate_std: ``(H,)`` float64, standard deviation of ``f`` over the tokens.
        timescales: ``(H,)`` float64 ``T = -1 / ln f_bar`` in tokens (0 or inf for degenerate units).
        assigned: ``(H,)`` float64 assigned timescales, or None (no schedule).
        num_tokens: tokens averaged over.
        schedule: the layer's timescale schedule from the model config (e.g. ``{"type": "fixed",
            "values": [3, 4]}``), or None.
    """

    layer_index: int
    cell_type: str
    mean_forget_gate: torch.Tensor
    forget_gate_std: torch.Tensor
    timescales: torch.Tensor
    assigned: torch.Tensor | None
    num_tokens: int
    schedule: dict[str, Any] | None = None

    layer = deprecated_layer_attribute()

    @property
    def degenerate(self) -> torch.Tensor:
        """``(H,)`` bool: units with ``T = 0`` (``f_bar = 0``) or ``T = inf`` (``f_bar = 1``)."""
        return ~(torch.isfinite(self.timescales) & (self.timescales > 0))

    @property
    def finite_timescales(self) -> torch.Tensor:
        """The non-degenerate timescales, ``(K,)`` (what the fits use)."""
        return self.timescales[~self.degenerate]

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and quantiles of the finite timescales (tokens)."""
        finite = self.finite_timescales
        quantiles = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
        levels = torch.tensor(quantiles, dtype=torch.float64)
        values = torch.quantile(finite, levels).tolist() if finite.numel() else [math.nan] * len(quantiles)
        return {
            "n_units": int(self.timescales.numel()),
            "n_finite": int(finite.numel()),
            "n_zero": int((self.timescales == 0).sum()),
            "n_infinite": int(torch.isinf(self.timescales).sum()),
            "quantiles": {f"{q:g}": value for q, value in zip(quantiles, values)},
            "geometric_mean": float(finite.log().mean().exp()) if finite.numel() else math.nan,
        }


@dataclass
class TimescaleEstimate:
    """Timescales of every analysed layer of one model on one stream.

    Attributes:
        layers: one :class:`LayerTimescales` per analysed layer (layers with a forget gate).
        num_tokens: tokens averaged over (``batch_size * tokens per row``).
        batch_size, window: streaming settings.
    """

    layers: list[LayerTimescales]
    num_tokens: int
    batch_size: int
    window: int

    def layer(self, index: int) -> LayerTimescales:
        """The entry of the layer at 0-based index ``index`` (into ``model.model.layers``)."""
        for entry in self.layers:
            if entry.layer_index == index:
                return entry
        raise KeyError(
            f"layer index {index} was not analysed; analysed indices (0-based): {[entry.layer_index for entry in self.layers]}."
        )

    def pooled(self) -> torch.Tensor:
        """All layers' finite timescales concatenated, ``(K,)``."""
        return torch.cat([entry.finite_timescales for entry in self.layers])


def estimate_timescales(
    model: torch.nn.Module,
    stream: torch.Tensor,
    batch_size: int = 1,
    window: int = 70,
    layers: int | Sequence[int] | None = None,
    max_tokens: int | None = None,
    min_tokens: int = 1,
    progress: bool = False,
) -> TimescaleEstimate:
    """Estimate per-unit timescales ``T = -1 / ln mean(f)`` over a token stream.

    Args:
        model: ``MTLSTMForCausalLM`` or ``MTLSTMModel`` (any checkpoint, with or without schedules).
        stream: ``(N,)`` token ids.
        batch_size: rows processed in parallel (1 = the paper's setting; the stream is cut into
            ``B`` contiguous rows, each from the zero state; see ``mtlstm_hf.evaluation.perplexity.token_rows``).
        window: tokens per forward (memory only; the state is carried).
        layers: 0-based indices of the layers to analyse (default: every layer with a forget gate).
        max_tokens: use only the first ``max_tokens`` tokens.
        min_tokens: minimum tokens per row (raise below it).
        progress: True for a progress bar over windows, or an object with ``total`` and ``update(n)``.

    Raises:
        ValueError: a requested layer (or, with ``layers=None``, every layer) has no forget gate
            (e.g. ``lstm-gates``); the stream is too short.
    """
    base: Any = base_model(model)  # the model's own modules (torch's Module typing says Tensor | Module)
    layer_indices = forget_gate_layers(model, layers, "no forget gate", "timescales T = -1/ln f are undefined there")
    token_rows(stream, batch_size, max_tokens, min_tokens)  # a clear error before any forward
    moments = trace_moments(model, stream, ("forget_gate",), batch_size, window, layer_indices, max_tokens, progress)
    assigned: list[torch.Tensor | None] = (
        cast(Any, model).assigned_timescales() if hasattr(model, "assigned_timescales") else [None] * len(base.layers)
    )
    schedules = list(getattr(getattr(model, "config", None), "timescale_schedules", None) or [])
    schedules += [None] * (len(base.layers) - len(schedules))
    means, stds = moments.mean("forget_gate"), moments.std("forget_gate")
    entries = []
    for position, index in enumerate(layer_indices):
        layer_mean, layer_std, layer_assigned = means[position], stds[position], assigned[index]
        assert layer_mean is not None and layer_std is not None  # every layer here has a forget gate
        # Rounding can push a float mean a hair outside [0, 1]; the estimator needs it inside.
        mean = layer_mean.clamp(0.0, 1.0)
        entries.append(
            LayerTimescales(
                layer_index=index,
                cell_type=moments.cell_types[position],
                mean_forget_gate=mean,
                forget_gate_std=layer_std,
                timescales=timescale_from_forget_gate(mean),
                assigned=None if layer_assigned is None else layer_assigned.detach().double().cpu(),
                num_tokens=moments.num_tokens,
                schedule=dict(schedules[index]) if isinstance(schedules[index], Mapping) else None,
            )
        )
    return TimescaleEstimate(entries, moments.num_tokens, int(batch_size), int(window))


# ---------------------------------------------------------------------------
# Distribution fits
# ---------------------------------------------------------------------------


@dataclass
class DistributionFit:
    """Maximum-likelihood fit of one family to positive timescales (location fixed at 0).

    Attributes:
        family: one of :data:`DISTRIBUTION_FAMILIES`.
        parameters: named parameters (``scipy.stats`` parametrisation, location 0):
            inverse_gamma ``{"alpha", "beta"}`` (``invgamma(a=alpha, scale=beta)``), lognormal
            ``{"sigma", "scale"}`` (``lognorm(s=sigma, scale=exp(mu))``), exponential ``{"scale"}``,
            gamma ``{"shape", "scale"}``.
        log_likelihood: ``ln L`` at the fit.
        aic, bic: ``2k - 2 ln L`` and ``k ln n - 2 ln L`` (``k`` free parameters).
        ks_statistic, ks_pvalue: one-sample KS test against the fitted distribution (optimistic,
            see the module docstring).
        num_samples: ``n``.
    """

    family: str
    parameters: dict[str, float]
    log_likelihood: float
    aic: float
    bic: float
    ks_statistic: float
    ks_pvalue: float
    num_samples: int

    def frozen(self) -> Any:
        """The fitted ``scipy.stats`` frozen distribution."""
        return _frozen(self.family, self.parameters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "parameters": dict(self.parameters),
            "log_likelihood": self.log_likelihood,
            "aic": self.aic,
            "bic": self.bic,
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "num_samples": self.num_samples,
        }


def _frozen(family: str, parameters: dict[str, float]) -> Any:
    from scipy import stats

    if family == "inverse_gamma":
        return stats.invgamma(a=parameters["alpha"], scale=parameters["beta"])
    if family == "lognormal":
        return stats.lognorm(s=parameters["sigma"], scale=parameters["scale"])
    if family == "exponential":
        return stats.expon(scale=parameters["scale"])
    if family == "gamma":
        return stats.gamma(a=parameters["shape"], scale=parameters["scale"])
    raise ValueError(f"family must be one of {DISTRIBUTION_FAMILIES}, got {family!r}.")


def _positive_samples(timescales: Any) -> np.ndarray:
    values = torch.as_tensor(timescales, dtype=torch.float64).detach().cpu().reshape(-1).numpy()
    usable = values[np.isfinite(values) & (values > 0)]
    if usable.size < _MIN_FIT_SAMPLES:
        raise ValueError(
            f"need at least {_MIN_FIT_SAMPLES} finite positive timescales to fit a distribution, got {usable.size} "
            f"(of {values.size}; zeros and infinities are left out)."
        )
    if np.ptp(usable) == 0:
        raise ValueError("all timescales are equal: a distribution fit is degenerate.")
    return usable


def _fit_parameters(family: str, samples: np.ndarray) -> dict[str, float]:
    from scipy import stats

    if family == "inverse_gamma":
        # 1/T ~ Gamma(alpha, scale=1/beta): the gamma MLE of the reciprocals (closed-form score in
        # the rate, 1-D root in the shape) is the inverse gamma MLE of T.
        shape, _, scale = stats.gamma.fit(1.0 / samples, floc=0)
        return {"alpha": float(shape), "beta": float(1.0 / scale)}
    if family == "lognormal":
        sigma, _, scale = stats.lognorm.fit(samples, floc=0)
        return {"sigma": float(sigma), "scale": float(scale)}
    if family == "exponential":
        _, scale = stats.expon.fit(samples, floc=0)
        return {"scale": float(scale)}
    if family == "gamma":
        shape, _, scale = stats.gamma.fit(samples, floc=0)
        return {"shape": float(shape), "scale": float(scale)}
    raise ValueError(f"family must be one of {DISTRIBUTION_FAMILIES}, got {family!r}.")


def _fit_family(family: str, samples: np.ndarray) -> DistributionFit:
    from scipy import stats

    parameters = _fit_parameters(family, samples)
    distribution = _frozen(family, parameters)
    log_likelihood = float(np.sum(distribution.logpdf(samples)))
    num_parameters, num_samples = len(parameters), samples.size
    ks = stats.kstest(samples, distribution.cdf)
    return DistributionFit(
        family=family,
        parameters=parameters,
        log_likelihood=log_likelihood,
        aic=2 * num_parameters - 2 * log_likelihood,
        bic=num_parameters * math.log(num_samples) - 2 * log_likelihood,
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        num_samples=int(num_samples),
    )


def fit_inverse_gamma(timescales: Any) -> DistributionFit:
    """MLE of ``T ~ InverseGamma(alpha, scale=beta)`` (location 0) with log-likelihood and KS test.

    Args:
        timescales: ``(K,)`` timescales in tokens; zeros and infinities are left out.

    Raises:
        ValueError: fewer than 3 usable values, or all equal.
    """
    return _fit_family("inverse_gamma", _positive_samples(timescales))


def fit_timescale_distribution(
    timescales: Any, families: Sequence[str] = DISTRIBUTION_FAMILIES
) -> dict[str, DistributionFit]:
    """Fit several families to the same timescales (see the module docstring).

    Returns:
        ``{family: DistributionFit}`` in the order of ``families``; compare by ``aic`` (lower is
        better) or ``ks_statistic``.
    """
    unknown = [family for family in families if family not in DISTRIBUTION_FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {DISTRIBUTION_FAMILIES}, got {list(families)}.")
    samples = _positive_samples(timescales)
    return {family: _fit_family(family, samples) for family in families}


def best_family(fits: dict[str, DistributionFit]) -> str:
    """The family with the lowest AIC."""
    return min(fits, key=lambda family: fits[family].aic)


def inverse_gamma_fit_note(timescales: Any, schedule: Mapping[str, Any] | None = None) -> str | None:
    """Why a distribution fit of a layer's timescales means nothing, or None when it does.

    Args:
        timescales: ``(H,)`` estimated timescales (tokens); zeros and infinities are left out.
        schedule: the layer's timescale schedule (``model.config.timescale_schedules[l]``).

    Returns:
        None, or a sentence: the schedule fixes the timescales (``"fixed"``); fewer than 3 finite
        timescales; or no spread (90th / 10th percentile below :data:`MIN_TIMESCALE_SPREAD`).
    """
    if isinstance(schedule, Mapping) and schedule.get("type") == "fixed":
        values = schedule.get("values")
        shown = (
            "|".join(f"{float(value):g}" for value in values) if isinstance(values, (list, tuple)) else "fixed values"
        )
        return f"the schedule fixes the timescales (T = {shown}); they follow no distribution"
    values = torch.as_tensor(timescales, dtype=torch.float64).detach().cpu().reshape(-1)
    finite = values[torch.isfinite(values) & (values > 0)]
    if finite.numel() < _MIN_FIT_SAMPLES:
        return f"only {finite.numel()} finite timescale(s); a fit needs at least {_MIN_FIT_SAMPLES}"
    low, high = torch.quantile(finite, torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
    spread = high / low
    if spread < MIN_TIMESCALE_SPREAD:
        return (
            f"no timescale spread (90th / 10th percentile = {spread:.3g} < {MIN_TIMESCALE_SPREAD:g}); "
            "a fitted distribution would describe noise"
        )
    return None


# ---------------------------------------------------------------------------
# Estimated vs assigned
# ---------------------------------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy import stats

    return stats.rankdata(values)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan  # undefined for constant inputs
    return float(np.corrcoef(x, y)[0, 1])


def compare_with_assigned(estimated: Any, assigned: Any) -> dict[str, Any]:
    """How well estimated timescales follow the assigned ones, unit by unit.

    Units where either value is 0 or inf are left out (``n_excluded``).

    Args:
        estimated, assigned: ``(H,)`` timescales in tokens, same unit order.

    Returns:
        ``{"n_units", "n_excluded", "log_pearson" (Pearson r of ln T), "spearman" (rank r),
        "ratio": {"geometric_mean", "median", "q05", "q25", "q75", "q95", "min", "max"} of
        ``T_est / T_assigned``, "fraction_within_2x"}``; correlations are NaN when undefined
        (fewer than 2 units or a constant side, e.g. the two-valued layer 1 of the paper gives a
        correlation from two groups).
    """
    estimated = torch.as_tensor(estimated, dtype=torch.float64).detach().cpu().reshape(-1).numpy()
    assigned = torch.as_tensor(assigned, dtype=torch.float64).detach().cpu().reshape(-1).numpy()
    if estimated.shape != assigned.shape:
        raise ValueError(f"estimated has {estimated.size} units but assigned has {assigned.size}.")
    usable = np.isfinite(estimated) & (estimated > 0) & np.isfinite(assigned) & (assigned > 0)
    est, ref = estimated[usable], assigned[usable]
    result: dict[str, Any] = {"n_units": int(estimated.size), "n_excluded": int((~usable).sum())}
    if est.size == 0:
        result.update(log_pearson=math.nan, spearman=math.nan, ratio=None, fraction_within_2x=math.nan)
        return result
    log_ratio = np.log(est) - np.log(ref)
    ratio = np.exp(log_ratio)
    result.update(
        log_pearson=_correlation(np.log(est), np.log(ref)),
        spearman=_correlation(_ranks(est), _ranks(ref)),
        ratio={
            "geometric_mean": float(np.exp(log_ratio.mean())),
            "median": float(np.median(ratio)),
            "q05": float(np.quantile(ratio, 0.05)),
            "q25": float(np.quantile(ratio, 0.25)),
            "q75": float(np.quantile(ratio, 0.75)),
            "q95": float(np.quantile(ratio, 0.95)),
            "min": float(ratio.min()),
            "max": float(ratio.max()),
        },
        fraction_within_2x=float(np.mean(np.abs(log_ratio) <= math.log(2.0))),
    )
    return result


def timescale_report(
    estimate: TimescaleEstimate, families: Sequence[str] = DISTRIBUTION_FAMILIES, include_units: bool = True
) -> dict[str, Any]:
    """JSON-ready summary of an estimate: per layer counts, quantiles, fits, comparison.

    Returns:
        A report entry (``"layer"`` is the layer *number*, from 1): ``{"num_tokens", "batch_size",
        "window", "layers": [{"layer", "cell_type", "schedule", "summary", "fits": {family: fit dict}
        or {"error": ...}, "best_family", "fit_note" (None, or why no fit is drawn: see
        :func:`inverse_gamma_fit_note`), "comparison" or None, "mean_forget_gate", "timescales",
        "assigned"}], "pooled": {"fits", "best_family"}}`` (per-unit lists only with
        ``include_units``; inf timescales become ``None`` once the report goes through
        ``to_json_compatible``).
    """
    layers = []
    for entry in estimate.layers:
        item: dict[str, Any] = {
            "layer": layer_number(entry.layer_index),
            "cell_type": entry.cell_type,
            "schedule": entry.schedule,
            "summary": entry.summary(),
        }
        item.update(_fits_entry(entry.timescales, families))
        item["fit_note"] = inverse_gamma_fit_note(entry.timescales, entry.schedule)
        item["comparison"] = None if entry.assigned is None else compare_with_assigned(entry.timescales, entry.assigned)
        if include_units:
            item["mean_forget_gate"] = entry.mean_forget_gate.tolist()
            item["timescales"] = entry.timescales.tolist()
            item["assigned"] = None if entry.assigned is None else entry.assigned.tolist()
        layers.append(item)
    return {
        "num_tokens": estimate.num_tokens,
        "batch_size": estimate.batch_size,
        "window": estimate.window,
        "layers": layers,
        "pooled": _fits_entry(estimate.pooled(), families),
    }


def _fits_entry(timescales: torch.Tensor, families: Sequence[str]) -> dict[str, Any]:
    try:
        fits = fit_timescale_distribution(timescales, families)
    except ValueError as error:  # too few or constant timescales (e.g. a fixed-schedule layer)
        return {"fits": {"error": str(error)}, "best_family": None}
    return {"fits": {family: fit.to_dict() for family, fit in fits.items()}, "best_family": best_family(fits)}


__all__ += ["best_family", "timescale_report"]
