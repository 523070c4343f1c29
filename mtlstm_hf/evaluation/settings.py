"""The settings of an evaluation (``mtlstm-eval``), one dataclass whose fields are the command's
options (help text included; :mod:`mtlstm_hf.command_line`), and the option groups it shares with
``mtlstm-analyze`` (:class:`CorpusOptions`, :class:`ScoringOptions`), declared once. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..command_line import DeviceOptions, setting, threads_setting
from ..lazy import deprecated_names
from .bins import DEFAULT_BIN_EDGES


@dataclass
class CorpusOptions:
    """The corpus a model is scored or analysed on."""

    data: str | None = setting(
        None,
        help="corpus: a folder with train/valid/test.txt (PTB/WikiText format), a Hub dataset id, or one text file (default: the corpus mtlstm-train recorded with the checkpoint, in its training_config.json)",
    )
    dataset_config_name: str | None = setting(
        None, aliases=["--dataset-config"], help="Hub dataset configuration, e.g. wikitext-2-v1"
    )


@dataclass
class ScoringOptions:
    """How a corpus is walked and its words binned by frequency (the same for scoring and analysis)."""

    batch_size: int = setting(
        1,
        help="1 (the paper's setting) carries the state across the whole split; B > 1 walks B contiguous pieces, each from a zero state",
    )
    window: int = setting(
        70,
        help="tokens per forward call; the state is carried from call to call, so results do not depend on it (speed and memory only)",
    )
    count_splits: list[str] = setting(
        default_factory=lambda: ["train"],
        metavar="SPLIT",
        help="splits whose word counts define the frequency bins ('train valid test' reproduces the reference code); counted in the training corpus recorded with the checkpoint when --data has none of them",
    )
    bin_edges: list[int] = setting(
        default_factory=lambda: list(DEFAULT_BIN_EDGES), metavar="COUNT", help="frequency bin thresholds"
    )


@dataclass
class EvaluationSettings(CorpusOptions, ScoringOptions, DeviceOptions):
    """How ``mtlstm-eval`` scores a checkpoint (the arguments of
    :func:`~mtlstm_hf.evaluation.evaluate_checkpoint` / :func:`~mtlstm_hf.evaluation.compare_checkpoints`);
    the values are checked by those functions, which name the argument they refuse."""

    split: str = setting("test", help="split to score")
    compare: str | None = setting(
        None,
        metavar="OTHER_CHECKPOINT",
        help="second checkpoint to compare with (paired block bootstrap of OTHER - CHECKPOINT)",
    )
    block_size: int = setting(100, help="bootstrap block length in tokens")
    n_resamples: int = setting(10_000, help="bootstrap resamples")
    seed: int = setting(0, help="bootstrap seed")
    confidence_level: float = setting(0.95, help="confidence level of the interval")
    threads: int | None = threads_setting()
    output: str | None = setting(
        None, help="also write the results as JSON to this file (checked before the evaluation, replaced atomically)"
    )


__getattr__ = deprecated_names(__name__, {"EvaluationConfig": "EvaluationSettings"})  # the old class name, one version
