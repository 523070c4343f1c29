"""``mtlstm-reproduce prior-sweep``: which timescale prior is best for language?

The paper's language-model recipe (:mod:`.lm`, PTB, the ``paper`` presets and sizes of the
scale), trained once per arm and seed: the standard LSTM (``baseline``) and one multi-timescale
model per prior of :data:`PRIORS`. Every prior sits on the same layer as the paper's inverse gamma
(layer 2; layer 1 keeps ``T = 3 | 4``, layer 3 none), its schedule spanning the same range of
timescales: the smallest and largest of the inverse-gamma layer at the scale's size (each prior
then places its units in that range by its own formula). The test split is scored at batch 1,
overall and per word-frequency bin, each prior paired with the baseline of the same seed in the
block bootstrap (:func:`mtlstm_hf.evaluation.compare_checkpoints`), and summarised over seeds as
the language-model experiments are (:func:`.summary.prior_sweep_summary`).

The sweep states no claim of the paper: its report gives the numbers (and says which prior has
the lowest perplexity over seeds, and whether its interval against the baseline excludes 0).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from .scales import lm_scale

SWEEP_LAYER = 1
"""0-based index of the layer that carries the prior: the paper's layer 2 (the inverse-gamma layer)."""

CORPUS_EXPERIMENT = "lm-ptb"
"""The language-model experiment whose corpus, presets and scales the sweep uses."""


MAMBA_STATE_SIZE = 16
"""Mamba's state size: each channel's ``dt`` serves ``A_n = -n``, ``n = 1..16``."""

RETNET_HEADS = 8
"""RetNet's number of heads: eight decay rates ``1 - 2^(-5-h)``."""


def _log_uniform(low: float, high: float, hidden: int, depth_ratio: float) -> dict[str, Any]:
    # Mamba's structure: the largest state size <= 16 that divides the layer; T = 1 / (dt n) spans
    # [low, high] with n = 1 at dt_min = 1/high and n = N at dt_max = 1/(N low).
    states = max(n for n in range(1, MAMBA_STATE_SIZE + 1) if hidden % n == 0)
    return {"type": "log_uniform", "dt_min": 1.0 / high, "dt_max": 1.0 / (states * low), "state_size": states}


def _ring(low: float, high: float, hidden: int, depth_ratio: float) -> dict[str, Any]:
    return {"type": "ring", "r_min": math.exp(-1.0 / low), "r_max": math.exp(-1.0 / high)}  # T = -1 / ln r


def _geometric(low: float, high: float, hidden: int, depth_ratio: float) -> dict[str, Any]:
    # RetNet's form: a few heads, their decay rates 1 - a in geometric progression
    return {
        "type": "geometric",
        "min_timescale": low,
        "max_timescale": high,
        "num_timescales": min(RETNET_HEADS, hidden),
        "spacing": "decay_rate",
    }


def _powerlaw_spacing(low: float, high: float, hidden: int, depth_ratio: float) -> dict[str, Any]:
    from mtlstm_hf.models.mtlstm.timescales import forget_bias_from_timescale

    return {
        "type": "powerlaw_spacing",
        "parametrization": "forget_bias",
        "start": float(forget_bias_from_timescale(high)),
        "end": float(forget_bias_from_timescale(low)),
        "depth_ratio": depth_ratio,
    }


PRIORS: dict[str, Callable[[float, float, int, float], dict[str, Any]] | None] = {
    "inverse_gamma": None,  # the paper's own layer 2 (the preset's schedule, unchanged)
    "log_uniform": _log_uniform,
    "ring": _ring,
    "geometric": _geometric,
    "powerlaw_spacing": _powerlaw_spacing,
}
"""The priors of the sweep, in report order: name -> ``(T_min, T_max, H, depth ratio) -> schedule``
whose parameters bound its timescales by ``[T_min, T_max]`` (``None``: the preset's inverse
gamma). Each source's structure is kept: Mamba's state index (``log_uniform``, so it is not the
same prior as a geometric grid), RetNet's eight decay rates (``geometric``), sLSTM's power-law
spacing with the layer's depth ratio (``powerlaw_spacing``), the LRU's ring (``ring``: uniform in
``|lambda|^2``, so most units are short and the realised timescales stay far below ``T_max``;
the report lists each prior's realised range)."""

SWEEP_ARMS: tuple[str, ...] = ("baseline", *PRIORS)
"""The runs of each seed: the baseline first (every comparison is against it), then each prior."""


def sweep_scale(scale: str) -> dict[str, Any]:
    """The sizes of the sweep at ``scale``: those of :data:`CORPUS_EXPERIMENT` (a copy), with the
    sweep's own sizing note (six arms instead of two)."""
    values = lm_scale(CORPUS_EXPERIMENT, scale)
    # the sweep ablates nothing; its six arms are an addition to the paper, said in the sizing
    values["reductions"] = [item for item in values["reductions"] if not item.startswith("ablation")]
    values["sizing"] = f"{values['sizing']}; six arms per seed (the baseline and 5 priors) instead of two"
    if scale == "cpu":
        values["sizing"] = (
            "from lm-ptb's cpu sizing (2,900 training tokens/s on 2 cores, 5.3 min per PTB epoch; measured for "
            "lm-ptb, not re-measured for the sweep): 6 arms x 3 seeds x 3 epochs = about 4 h 50 min of training, "
            "plus per seed 10 paired comparisons at batch 1 (5 priors x 2 ways of counting the bins, each "
            "scoring the baseline and the prior: 20 passes over the test split, about 15 min); the command prints "
            "its own estimate of the training, measured before it starts"
        )
    return values


def realised_ranges(configuration: dict[str, Any], hidden: int) -> dict[str, dict[str, Any]]:
    """Per prior of a recorded configuration (``reproduce_config.json``'s ``priors``), its schedule
    of :data:`SWEEP_LAYER` and the smallest, median and largest timescale it gives the layer's
    ``hidden`` units."""
    from mtlstm_hf.models.mtlstm.timescales import realize_timescales

    ranges = {}
    for prior, overrides in configuration.items():
        schedule = overrides["timescale_schedules"][SWEEP_LAYER]
        timescales = realize_timescales(schedule, hidden)
        assert timescales is not None  # every prior of the sweep assigns timescales
        ranges[prior] = {
            "schedule": schedule,
            "min": float(timescales.min()),
            "median": float(timescales.median()),
            "max": float(timescales.max()),
        }
    return ranges


def prior_layer_range(scale_settings: dict[str, Any]) -> tuple[float, float, int]:
    """``(T_min, T_max, H)`` of the inverse-gamma layer of the multi-timescale preset at this scale
    (the finite realised timescales of its ``H`` units)."""
    from mtlstm_hf.models.mtlstm.presets import PRESETS
    from mtlstm_hf.models.mtlstm.timescales import realize_timescales

    preset = PRESETS[scale_settings["presets"]["multi_timescale"]]
    hidden = scale_settings["model_overrides"].get("hidden_sizes", preset["hidden_sizes"])[SWEEP_LAYER]
    timescales = realize_timescales(preset["timescale_schedules"][SWEEP_LAYER], hidden)
    assert timescales is not None  # the preset's layer 2 has its inverse gamma
    finite = timescales[timescales.isfinite() & (timescales > 0)]
    return float(finite.min()), float(finite.max()), int(hidden)


def arm_overrides(scale_settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per prior, the ``MTLSTMConfig`` fields that put its schedule on :data:`SWEEP_LAYER` (the other
    layers as the multi-timescale preset has them; ``inverse_gamma``: the preset's schedules)."""
    from mtlstm_hf.models.mtlstm.presets import PRESETS

    preset = PRESETS[scale_settings["presets"]["multi_timescale"]]
    layers = len(scale_settings["model_overrides"].get("hidden_sizes", preset["hidden_sizes"]))
    low, high, hidden = prior_layer_range(scale_settings)
    overrides: dict[str, dict[str, Any]] = {}
    for name, make in PRIORS.items():
        schedules = copy.deepcopy(preset["timescale_schedules"])
        if make is not None:
            schedules[SWEEP_LAYER] = make(low, high, hidden, SWEEP_LAYER / max(layers - 1, 1))
        overrides[name] = {"timescale_schedules": schedules}  # the inverse gamma's: the preset's own, written out
    return overrides


def sweep_evaluation_stage(plan: Any, seed: int) -> dict[str, Any]:
    """Test perplexity of every prior paired with the baseline of ``seed``, for each way of counting
    the bins: ``{prior: {counting: compare_checkpoints result}}`` (:func:`.lm.compare_arms`: ``a``
    the baseline, ``b`` the prior)."""
    from .lm import compare_arms

    return {arm: compare_arms(plan, seed, arm) for arm in plan.arms[1:]}


SWEEP_STAGES: dict[str, Callable[[Any, int], dict[str, Any]]] = {"evaluation": sweep_evaluation_stage}
"""The analyses of one seed of the sweep (``report.json``'s ``per_seed[seed][stage]``)."""

__all__ = [
    "CORPUS_EXPERIMENT",
    "PRIORS",
    "SWEEP_ARMS",
    "SWEEP_LAYER",
    "SWEEP_STAGES",
    "arm_overrides",
    "prior_layer_range",
    "realised_ranges",
    "sweep_evaluation_stage",
    "sweep_scale",
]
