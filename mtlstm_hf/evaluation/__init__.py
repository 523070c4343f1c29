"""Evaluation of language models: frequency-binned perplexity, block bootstrap, stream scoring.

The math here is model-independent: :mod:`.frequency` and :mod:`.bootstrap` work on per-token
log-probabilities, and :mod:`.perplexity` only duck-types the Hugging Face causal-LM call, so
nothing in this package imports :mod:`mtlstm_hf.models`.

Typical use::

    lp = token_log_probs(model, test_ids)                # (N-1,) log p of each next token
    targets = test_ids[1:]
    bins = frequency_bin_of_token(token_counts(train_ids, V))
    binned_perplexity(lp, targets, bins)
    paired_block_bootstrap(lp_baseline, lp, targets, bins, generator=0)
"""

from __future__ import annotations

from pathlib import Path

from .bootstrap import block_bootstrap, paired_block_bootstrap
from .frequency import (
    DEFAULT_BIN_EDGES,
    bin_labels,
    binned_perplexity,
    binned_perplexity_by_frequency,
    frequency_bin_of_token,
    token_counts,
)
from .perplexity import target_positions, token_log_probs


def frequency_binned_perplexity_metric_path() -> str:
    """Directory of the ``frequency_binned_perplexity`` metric, for ``evaluate.load(path)`` (works offline)."""
    return str(Path(__file__).resolve().parent / "metrics" / "frequency_binned_perplexity")


__all__ = [
    "DEFAULT_BIN_EDGES",
    "bin_labels",
    "binned_perplexity",
    "binned_perplexity_by_frequency",
    "block_bootstrap",
    "frequency_bin_of_token",
    "frequency_binned_perplexity_metric_path",
    "paired_block_bootstrap",
    "target_positions",
    "token_counts",
    "token_log_probs",
]

# End-to-end evaluation of saved checkpoints (model + tokenizer folders); uses data/ and the
# registered Auto classes, see checkpoint.py. Command line: mtlstm_hf.evaluation.cli (mtlstm-eval).
from .checkpoint import compare_checkpoints, evaluate_checkpoint, load_checkpoint  # noqa: E402

__all__ += ["compare_checkpoints", "evaluate_checkpoint", "load_checkpoint"]
