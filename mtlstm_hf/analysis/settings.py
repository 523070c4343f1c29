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
from dataclasses import dataclass
from typing import Any

from mtlstm_hf.evaluation.bins import bin_labels
from mtlstm_hf.models.mtlstm.checks import check_int_at_least, check_positive_int, is_integer

from ..command_line import DeviceOptions, setting, threads_setting
from ..evaluation.settings import CorpusOptions, ScoringOptions
from ..lazy import deprecated_names
from .registry import ANALYSIS_REGISTRY, BUILTIN_ANALYSES

__all__ = [
    "ANALYSES",
    "DEFAULT_STATE_GRADIENT_POSITIONS",
    "DISTRIBUTION_FAMILIES",
    "MI_ESTIMATORS",
    "AnalysisRunSettings",
    "AnalysisSettings",
    "option_name",
]

DISTRIBUTION_FAMILIES: tuple[str, ...] = ("inverse_gamma", "lognormal", "exponential", "gamma")
"""Families :func:`~.timescales.fit_timescale_distribution` can fit (all with location 0)."""

MI_ESTIMATORS: tuple[str, ...] = ("grassberger", "miller_madow", "plugin")
"""Entropy estimators of :func:`~.mutual_information.mutual_information` (``ESTIMATORS`` there)."""

ANALYSES: tuple[str, ...] = BUILTIN_ANALYSES
"""The analyses that come with the package, in the order they run (:mod:`.registry`:
``ANALYSIS_REGISTRY`` holds them and any registered since, which run after them)."""

DEFAULT_STATE_GRADIENT_POSITIONS = 256
"""Source positions sampled for the state gradients by default (evenly spaced over the analysed
text, see :func:`mtlstm_hf.analysis.state_gradients.source_positions`): the analysis costs one
``G(t, tau)`` per position and delay, and this many keeps a default ``mtlstm-analyze`` run of the
small model on the WikiText-2 sample within 3 minutes on 2 cores (BENCHMARKS.md)."""


def option_name(name: str) -> str:
    """``max_delay (--max-delay)``: how a setting is named in messages (its field and command-line option)."""
    return f"{name} (--{name.replace('_', '-')})"


@dataclass
class AnalysisRunSettings(CorpusOptions, DeviceOptions):
    """What ``mtlstm-analyze`` runs on and where it writes (the checkpoint is the positional
    argument); the analyses' own settings are :class:`AnalysisSettings`. The corpus and device
    options are the ones ``mtlstm-eval`` has (declared once)."""

    split: str = setting("valid", help="split to analyse")
    analyses: list[str] = setting(
        default_factory=lambda: list(ANALYSIS_REGISTRY),
        metavar="ANALYSIS",
        help=f"analyses to run, separated by spaces or commas (default: all of {' '.join(ANALYSES)})",
    )
    output_dir: str | None = setting(
        None,
        help="report folder (default: CHECKPOINT/analysis, the folder the Hub publishing step attaches); a report of the same checkpoint and settings there is continued",
    )
    restart: bool = setting(False, help="discard the report already in the output folder and redo everything")
    figures: bool = setting(True, help="write PNG figures next to report.json")
    threads: int | None = threads_setting()
    progress_bar: bool = setting(True, help="show the progress display")


@dataclass
class AnalysisSettings(ScoringOptions):
    """Settings of every analysis (defaults follow the papers where they say something); each
    field's meaning is its ``help`` (``mtlstm-analyze --help`` prints the same text).

    Work bounds: ``max_tokens`` (every analysis), ``state_gradient_positions``, ``max_delay``,
    ``max_distance``, ``mi_max_distance``. :meth:`validate` raises ``ValueError`` naming the first
    bad setting.
    """

    max_tokens: int | None = setting(
        None, help="use only the first N tokens of the split, in every analysis (default: all)"
    )
    ablation_layer: int | None = setting(
        None,
        metavar="N",
        help="number (from 1, as in the paper) of the layer whose units are ablated (default: the inverse-gamma layer, else the middle one)",
    )
    chunk_size: int = setting(50, help="units per ablated chunk")
    ablation_order: str = setting(
        "auto",
        choices=("auto", "assigned", "estimated", "index"),
        help="order of the units before chunking: auto = assigned timescales if the layer has a schedule, else estimated, else unit order",
    )
    word_classes: dict[str, str] | str | None = setting(
        None,
        help="{word: class} map for the routing report per class; on the command line a file (JSON object or 'word class' lines)",
    )
    other_label: str | None = setting(
        "other", help="class of the words the word-class map leaves out (none: leave them out)"
    )
    families: list[str] = setting(
        default_factory=lambda: list(DISTRIBUTION_FAMILIES),
        choices=DISTRIBUTION_FAMILIES,
        metavar="FAMILY",
        help="distributions fitted to the estimated timescales (maximum likelihood, location 0)",
    )
    max_delay: int = setting(50, help="state-gradient delays (Verwimp et al. 2020)")
    segment_length: int = setting(200, help="state-gradient segment, >= max_delay")
    state_gradient_positions: int | str | None = setting(
        DEFAULT_STATE_GRADIENT_POSITIONS,
        metavar="K|all",
        help="source positions of the state gradients, evenly spaced over the analysed text; 'all' (None) computes every position, the exact full average",
    )
    k: int = setting(5, help="singular values of the state gradients reported")
    passage_start: int = setting(0, help="first token of the weighted-sum passage")
    passage_length: int = setting(30, help="weighted-sum passage tokens (>= 2)")
    max_distance: int = setting(100, help="memory-span distances")
    mi_max_distance: int = setting(1000, help="largest mutual-information distance")
    mi_num_distances: int = setting(30, help="distances (log-spaced) at which the mutual information is estimated")
    mi_estimator: str = setting(
        "grassberger", choices=MI_ESTIMATORS, help="entropy estimator of the mutual information"
    )
    include_units: bool = setting(True, help="per-unit lists (forget gates, timescales) in report.json")
    swap_context_length: int = setting(100, help="context-swap timescales: tokens of each of the two contexts")
    swap_segment_length: int = setting(50, help="context-swap timescales: tokens of the shared segment after them")
    swap_samples: int = setting(32, help="context-swap timescales: segments measured (pairs of runs)")

    def __post_init__(self) -> None:
        # From a command line or a JSON file: 'all' or digits for the positions.
        if isinstance(self.state_gradient_positions, str):
            text = self.state_gradient_positions.strip().lower()
            if text in ("all", "none"):
                self.state_gradient_positions = None
            elif text.isdigit():
                self.state_gradient_positions = int(text)
            else:
                raise ValueError(
                    f"{option_name('state_gradient_positions')} must be a positive integer or 'all', got {self.state_gradient_positions!r}."
                )
        if isinstance(self.other_label, str) and self.other_label.lower() == "none":
            self.other_label = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting, its value and what is allowed."""
        positive = (
            "batch_size",
            "window",
            "chunk_size",
            "max_delay",
            "segment_length",
            "k",
            "max_distance",
            "mi_max_distance",
            "mi_num_distances",
            "swap_context_length",
        )
        for name in positive:
            check_positive_int(getattr(self, name), option_name(name))
        for name, lowest in (("max_tokens", 2), ("state_gradient_positions", 1), ("ablation_layer", 1)):
            value = getattr(self, name)
            if value is not None and not (is_integer(value) and value >= lowest):
                what = {
                    "max_tokens": "all tokens",
                    "state_gradient_positions": "every position",
                    "ablation_layer": "the default layer",
                }[name]
                if name == "state_gradient_positions":
                    raise ValueError(
                        f"{option_name(name)} must be a positive integer or 'all' (None: {what}), got {value!r}."
                    )
                extra = " (layers are numbered from 1)" if name == "ablation_layer" else ""
                raise ValueError(
                    f"{option_name(name)} must be an integer >= {lowest}{extra} or None ({what}), got {value!r}."
                )
        if self.segment_length < self.max_delay:
            raise ValueError(
                f"{option_name('segment_length')} must be >= {option_name('max_delay')} = {self.max_delay}, got "
                f"{self.segment_length}: delays reaching across a segment start are never counted."
            )
        check_int_at_least(self.swap_segment_length, option_name("swap_segment_length"), 2)
        check_int_at_least(self.swap_samples, option_name("swap_samples"), 2)
        check_int_at_least(self.passage_start, option_name("passage_start"), 0)
        check_int_at_least(self.passage_length, option_name("passage_length"), 2)
        if self.ablation_order not in ("auto", "assigned", "estimated", "index"):
            raise ValueError(
                f"{option_name('ablation_order')} must be 'auto', 'assigned', 'estimated' or 'index', got {self.ablation_order!r}."
            )
        if self.mi_estimator not in MI_ESTIMATORS:
            raise ValueError(
                f"{option_name('mi_estimator')} must be one of {list(MI_ESTIMATORS)}, got {self.mi_estimator!r}."
            )
        unknown = [family for family in self.families if family not in DISTRIBUTION_FAMILIES]
        if unknown or not self.families:
            raise ValueError(
                f"families must be a non-empty subset of {list(DISTRIBUTION_FAMILIES)}, got {list(self.families)}."
            )
        if self.word_classes is not None and not isinstance(self.word_classes, dict):
            raise ValueError(
                f"{option_name('word_classes')} must be a {{word: class}} dict, got {type(self.word_classes).__name__} "
                "(mtlstm-analyze reads it from a file: mtlstm_hf.analysis.load_word_classes)."
            )
        if not self.count_splits:
            raise ValueError(f"{option_name('count_splits')} must name at least one split, e.g. train.")
        bin_labels(self.bin_edges)  # positive, distinct integers (raises ValueError naming the edges)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the word-class map as its size and a digest of its content)."""
        values = dataclasses.asdict(self)
        values["count_splits"] = list(self.count_splits)
        values["bin_edges"] = list(self.bin_edges)
        values["families"] = list(self.families)
        if isinstance(self.word_classes, dict):  # a file name not read yet stays as given
            digest = hashlib.sha256(json.dumps(sorted(self.word_classes.items())).encode()).hexdigest()[:16]
            values["word_classes"] = f"<{len(self.word_classes)} words, sha256 {digest}>"
        return values


__getattr__ = deprecated_names(__name__, {"AnalysisRun": "AnalysisRunSettings"})  # the old class name, one version
