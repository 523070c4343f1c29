"""Evaluation of language models: frequency-binned perplexity, block bootstrap, stream scoring.

The math here is model-independent: :mod:`.binned` (perplexity overall and per bin of the
targets, the one place it is computed), :mod:`.frequency` and :mod:`.bootstrap` work on per-token
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

from ..lazy import lazy_exports

# End-to-end evaluation of saved checkpoints (model + tokenizer folders) is in checkpoint.py;
# it uses data/ and the registered Auto classes. Command line: mtlstm_hf.evaluation.cli (mtlstm-eval).
_EXPORTS = {
    "block_bootstrap": ".bootstrap",
    "format_p_value": ".bootstrap",
    "paired_block_bootstrap": ".bootstrap",
    "DEFAULT_BIN_EDGES": ".bins",
    "bin_labels": ".bins",
    "binned_perplexity": ".frequency",
    "class_binned_perplexity": ".binned",
    "perplexities_by_bin": ".binned",
    "perplexity_by_bin": ".binned",
    "binned_perplexity_by_frequency": ".frequency",
    "frequency_bin_of_token": ".frequency",
    "token_counts": ".frequency",
    "target_positions": ".perplexity",
    "token_log_probs": ".perplexity",
    "compare_checkpoints": ".checkpoint",
    "evaluate_checkpoint": ".checkpoint",
    "load_checkpoint": ".checkpoint",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def frequency_binned_perplexity_metric_path() -> str:
    """Directory of the ``frequency_binned_perplexity`` metric, for ``evaluate.load(path)`` (works offline)."""
    return str(Path(__file__).resolve().parent / "metrics" / "frequency_binned_perplexity")


__all__ = sorted([*_EXPORTS, "frequency_binned_perplexity_metric_path"])
