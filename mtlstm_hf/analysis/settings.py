"""What ``mtlstm-analyze`` can run and with which settings: plain Python, no torch.

The command line builds its parser from this module (``--help`` must not wait for torch), and
:mod:`.report` runs the analyses with an :class:`AnalysisSettings`. The constants the settings
are checked against live here too: :data:`DISTRIBUTION_FAMILIES` (used by :mod:`.timescales`)
and :data:`MI_ESTIMATORS` (:mod:`.mutual_information`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
from dataclasses import dataclass
from typing import Any

from mtlstm_hf.evaluation.bins import DEFAULT_BIN_EDGES, bin_labels

__all__ = [
    "ANALYSES",
    "DEFAULT_STATE_GRADIENT_POSITIONS",
    "DISTRIBUTION_FAMILIES",
    "MI_ESTIMATORS",
    "AnalysisSettings",
    "option_name",
]

DISTRIBUTION_FAMILIES: tuple[str, ...] = ("inverse_gamma", "lognormal", "exponential", "gamma")
"""Families :func:`~.timescales.fit_timescale_distribution` can fit (all with location 0)."""

MI_ESTIMATORS: tuple[str, ...] = ("grassberger", "miller_madow", "plugin")
"""Entropy estimators of :func:`~.mutual_information.mutual_information` (``ESTIMATORS`` there)."""

ANALYSES: tuple[str, ...] = (
    "timescales",
    "ablation",
    "state_gradients",
    "weighted_sum",
    "memory_span",
    "mutual_information",
)
"""Analyses :func:`run_analyses` knows, in the order they run."""

DEFAULT_STATE_GRADIENT_POSITIONS = 256
"""Source positions sampled for the state gradients by default (evenly spaced over the analysed
text, see :func:`mtlstm_hf.analysis.state_gradients.source_positions`): the analysis costs one
``G(t, tau)`` per position and delay, and this many keeps a default ``mtlstm-analyze`` run of the
small model on the WikiText-2 sample within 3 minutes on 2 cores (BENCHMARKS.md)."""


def option_name(name: str) -> str:
    """``max_delay (--max-delay)``: how a setting is named in messages (its field and command-line option)."""
    return f"{name} (--{name.replace('_', '-')})"


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@dataclass
class AnalysisSettings:
    """Settings of every analysis (defaults follow the papers where they say something).

    Work bounds: ``max_tokens`` (the first N tokens of the split, for *every* analysis: streaming,
    ablation, state gradients, memory span, mutual information), ``state_gradient_positions``,
    ``max_delay``, ``max_distance``, ``mi_max_distance``.

    Streaming (timescales, ablation, memory span): ``batch_size`` (1 = state carried over the
    whole split, the paper's setting), ``window`` (tokens per forward; memory only),
    ``max_tokens`` (None = all).
    Frequency bins: ``count_splits`` (word counts from train by default), ``bin_edges``.
    Ablation: ``ablation_layer`` (the layer *number*, from 1 as in the paper; None:
    :func:`~.report.default_ablation_layer`), ``chunk_size`` (50), ``ablation_order`` (``"auto"``: assigned
    timescales if the layer has a schedule, else estimated, else unit order; or ``"assigned"``,
    ``"estimated"``, ``"index"``), ``word_classes`` (``{word: class}`` for the class routing
    report), ``other_label``.
    Timescales: ``families`` fitted.
    State gradients (Verwimp et al.): ``max_delay`` (50), ``segment_length`` (200),
    ``state_gradient_positions`` (source positions: an int ``K`` = ``K`` evenly spaced positions of
    the analysed text, default :data:`DEFAULT_STATE_GRADIENT_POSITIONS`; None = every position,
    the exact full sums), ``k`` singular values.
    Weighted sum: ``passage_start``, ``passage_length``. Memory span: ``max_distance``.
    Mutual information: ``mi_max_distance``, ``mi_num_distances``, ``mi_estimator``.
    ``include_units``: per-unit lists (forget gates, timescales) in the JSON.
    """

    batch_size: int = 1
    window: int = 70
    max_tokens: int | None = None
    count_splits: tuple[str, ...] = ("train",)
    bin_edges: tuple[int, ...] = tuple(DEFAULT_BIN_EDGES)
    ablation_layer: int | None = None
    chunk_size: int = 50
    ablation_order: str = "auto"
    word_classes: dict[str, str] | None = None
    other_label: str | None = "other"
    families: tuple[str, ...] = DISTRIBUTION_FAMILIES
    max_delay: int = 50
    segment_length: int = 200
    state_gradient_positions: int | None = DEFAULT_STATE_GRADIENT_POSITIONS
    k: int = 5
    passage_start: int = 0
    passage_length: int = 30
    max_distance: int = 100
    mi_max_distance: int = 1000
    mi_num_distances: int = 30
    mi_estimator: str = "grassberger"
    include_units: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting, its value and what is allowed."""
        positive = ("batch_size", "window", "chunk_size", "max_delay", "segment_length", "k", "max_distance",
                    "mi_max_distance", "mi_num_distances")
        for name in positive:
            value = getattr(self, name)
            if not _positive_int(value):
                raise ValueError(f"{option_name(name)} must be a positive integer, got {value!r}.")
        for name, lowest in (("max_tokens", 2), ("state_gradient_positions", 1), ("ablation_layer", 1)):
            value = getattr(self, name)
            if value is not None and not (_positive_int(value) and value >= lowest):
                what = {"max_tokens": "all tokens", "state_gradient_positions": "every position",
                        "ablation_layer": "the default layer"}[name]
                extra = " (layers are numbered from 1)" if name == "ablation_layer" else ""
                raise ValueError(f"{option_name(name)} must be an integer >= {lowest}{extra} or None ({what}), got {value!r}.")
        if self.segment_length < self.max_delay:
            raise ValueError(
                f"{option_name('segment_length')} must be >= {option_name('max_delay')} = {self.max_delay}, got "
                f"{self.segment_length}: delays reaching across a segment start are never counted."
            )
        if not isinstance(self.passage_start, numbers.Integral) or isinstance(self.passage_start, bool) or self.passage_start < 0:
            raise ValueError(f"{option_name('passage_start')} must be an integer >= 0, got {self.passage_start!r}.")
        if not _positive_int(self.passage_length) or self.passage_length < 2:
            raise ValueError(f"{option_name('passage_length')} must be an integer >= 2, got {self.passage_length!r}.")
        if self.ablation_order not in ("auto", "assigned", "estimated", "index"):
            raise ValueError(
                f"{option_name('ablation_order')} must be 'auto', 'assigned', 'estimated' or 'index', got {self.ablation_order!r}."
            )
        if self.mi_estimator not in MI_ESTIMATORS:
            raise ValueError(f"{option_name('mi_estimator')} must be one of {list(MI_ESTIMATORS)}, got {self.mi_estimator!r}.")
        unknown = [family for family in self.families if family not in DISTRIBUTION_FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty subset of {list(DISTRIBUTION_FAMILIES)}, got {list(self.families)}.")
        if not self.count_splits:
            raise ValueError(f"{option_name('count_splits')} must name at least one split, e.g. train.")
        bin_labels(self.bin_edges)  # positive, distinct integers (raises ValueError naming the edges)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the word-class map as its size and a digest of its content)."""
        values = dataclasses.asdict(self)
        values["count_splits"] = list(self.count_splits)
        values["bin_edges"] = list(self.bin_edges)
        values["families"] = list(self.families)
        if self.word_classes is not None:
            digest = hashlib.sha256(json.dumps(sorted(self.word_classes.items())).encode()).hexdigest()[:16]
            values["word_classes"] = f"<{len(self.word_classes)} words, sha256 {digest}>"
        return values


