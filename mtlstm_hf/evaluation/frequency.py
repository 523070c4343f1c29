"""Word-frequency bins and per-bin perplexity (Mahto et al., ICLR 2021, evaluation section).

The paper reports test perplexity separately for target words grouped by how often they
occur in the corpus: ``>= 10,000``, ``[1,000, 10,000)``, ``[100, 1,000)`` and ``< 100``.

Which corpus the counts come from is the caller's choice of streams passed to
:func:`token_counts`:

* **train only** (the default this library recommends and uses in its examples):
  ``token_counts(train_ids, V)``. The bins then depend on nothing the model is tested on.
* **train + valid + test** (what the paper's reference code does, via the corpus
  dictionary's counter): ``token_counts([train_ids, valid_ids, test_ids], V)``.
  Use this to reproduce the reference per-bin numbers; say which one was used.

Conventions used throughout:

* Bin index 0 is the *most frequent* bin (the order the paper lists them in), the last
  index is the rarest. With edges ``e_1 < ... < e_K`` there are ``K + 1`` bins:
  ``count >= e_K`` -> 0, ``e_{K-1} <= count < e_K`` -> 1, ..., ``count < e_1`` -> K.
  Lower edges are inclusive, upper edges exclusive (so 10,000 is in ">=10K", 9,999 in "1K-10K").
* A word with count 0 (never seen in the counting streams) lands in the rarest bin.
* Log-probabilities are natural logs (nats); NLL = ``-log p``; perplexity = ``exp(mean NLL)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .bins import DEFAULT_BIN_EDGES, _check_edges, bin_labels

__all__ = [
    "DEFAULT_BIN_EDGES",
    "bin_labels",
    "token_counts",
    "frequency_bin_of_token",
    "binned_perplexity",
    "binned_perplexity_by_frequency",
]

# Largest positive log-probability accepted as rounding noise (exact log_softmax gives <= 0).
_LOG_PROB_TOLERANCE = 1e-6


def _as_stream(stream: Any, name: str) -> torch.Tensor:
    """A 1-D integer tensor (lists and numpy arrays accepted)."""
    tensor = torch.as_tensor(stream)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {tensor.dtype}")
    return tensor.long()


def token_counts(streams: torch.Tensor | Sequence[torch.Tensor], vocab_size: int) -> torch.LongTensor:
    """How often each vocabulary id occurs in one or several token streams.

    Args:
        streams: one 1-D LongTensor of token ids ``(N,)``, or a sequence of them (their counts
            are summed). Pass ``train`` for the train-only counting (recommended) or
            ``[train, valid, test]`` to match the paper's reference code.
        vocab_size: ``V``; every id must lie in ``[0, V)``.

    Returns:
        LongTensor ``(V,)``: occurrences of each id (0 for ids never seen).
    """
    if int(vocab_size) != vocab_size or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if isinstance(streams, torch.Tensor):
        stream_list = [streams]
    else:
        stream_list = list(streams)
        if len(stream_list) == 0:
            raise ValueError("streams must contain at least one token stream")
    counts = torch.zeros(int(vocab_size), dtype=torch.long)
    for i, stream in enumerate(stream_list):
        ids = _as_stream(stream, f"streams[{i}]").cpu()
        if ids.numel() == 0:
            continue
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(
                f"streams[{i}] holds ids outside [0, vocab_size={vocab_size}): min {int(ids.min())}, max {int(ids.max())}"
            )
        counts += torch.bincount(ids, minlength=int(vocab_size))
    return counts


def frequency_bin_of_token(counts: torch.Tensor, edges: Sequence[int] = DEFAULT_BIN_EDGES) -> torch.LongTensor:
    """Bin index of each count (0 = most frequent bin, ``len(edges)`` = rarest).

    Args:
        counts: integer tensor of any shape, typically the ``(V,)`` output of
            :func:`token_counts` (then the result is the bin of each vocabulary id), or
            per-token frequencies ``(N,)``.
        edges: thresholds, any order, positive and distinct; default ``(100, 1000, 10000)``.

    Returns:
        LongTensor of the same shape as ``counts``; see the module docstring for the edge rule.
    """
    counts = torch.as_tensor(counts)
    if counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool:
        raise ValueError(f"counts must be an integer tensor, got dtype {counts.dtype}")
    if counts.numel() and counts.min() < 0:
        raise ValueError(f"counts must be non-negative, got minimum {int(counts.min())}")
    asc = torch.tensor(_check_edges(edges), dtype=torch.long, device=counts.device)
    # Number of edges the count reaches, counted from the top: reaching none of them means
    # rarest bin (index K), reaching all means bin 0.
    return (counts.long().unsqueeze(-1) < asc).sum(-1)


def _check_log_probs(log_probs: Any, name: str) -> torch.Tensor:
    """Validate per-token log-probabilities (1-D, non-empty, finite, <= 0); return float64 on CPU."""
    if isinstance(log_probs, torch.Tensor):
        values = log_probs.detach().cpu().double()
    else:  # lists/arrays straight to float64 (torch.as_tensor would round Python floats to float32)
        values = torch.as_tensor(log_probs, dtype=torch.float64)
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one log-probability per token), got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} must be finite (NaN or +-inf found; a -inf log-probability makes perplexity infinite)")
    if values.max() > _LOG_PROB_TOLERANCE:
        raise ValueError(
            f"{name} must be log-probabilities (<= 0, natural log), got maximum {float(values.max()):.6g}; "
            "did you pass NLLs or logits?"
        )
    return values


def _check_same_length(a: torch.Tensor, name_a: str, b: torch.Tensor, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} has {a.shape[0]} entries but {name_b} has {b.shape[0]}; they must align token by token")


def _token_bins(
    token_ids: Any, bin_of_token: Any, n_bins: int, name_ids: str = "token_ids"
) -> torch.LongTensor:
    """Per-token bin indices ``bin_of_token[token_ids]`` with range checks."""
    ids = _as_stream(token_ids, name_ids).cpu()
    table = torch.as_tensor(bin_of_token).cpu()
    if table.dim() != 1 or table.numel() == 0:
        raise ValueError(f"bin_of_token must be a non-empty 1-D tensor (V,), got shape {tuple(table.shape)}")
    if table.is_floating_point():
        raise ValueError(f"bin_of_token must hold integer bin indices, got dtype {table.dtype}")
    table = table.long()
    if table.min() < 0 or table.max() >= n_bins:
        raise ValueError(
            f"bin_of_token values must lie in [0, {n_bins}) for {n_bins - 1} edges, got range "
            f"[{int(table.min())}, {int(table.max())}]; were different edges used to build it?"
        )
    if ids.numel() and (ids.min() < 0 or ids.max() >= table.numel()):
        raise ValueError(
            f"{name_ids} must lie in [0, V={table.numel()}) (the length of bin_of_token), got range "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    return table[ids]


def _perplexity(nll_sum: float, n_tokens: int) -> float:
    return math.exp(nll_sum / n_tokens) if n_tokens > 0 else float("nan")


def _perplexity_by_bin(nll: torch.Tensor, token_bins: torch.Tensor, labels: list[str]) -> dict[str, Any]:
    """Core: overall and per-bin perplexity from per-token NLLs (float64) and bin indices."""
    n_bins = len(labels)
    nll_sums = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, token_bins, nll)
    n_tokens = torch.bincount(token_bins, minlength=n_bins)
    total_nll = float(nll.sum())
    result: dict[str, Any] = {
        "perplexity": _perplexity(total_nll, nll.numel()),
        "n_tokens": int(nll.numel()),
        "nll_sum": total_nll,
        "bins": {},
    }
    for k, label in enumerate(labels):
        # An empty bin has no perplexity: NaN (not 0 or inf) so it cannot be mistaken for a score.
        result["bins"][label] = {
            "perplexity": _perplexity(float(nll_sums[k]), int(n_tokens[k])),
            "n_tokens": int(n_tokens[k]),
            "nll_sum": float(nll_sums[k]),
        }
    return result


def binned_perplexity(
    token_log_probs: torch.Tensor,
    token_ids: torch.Tensor,
    bin_of_token: torch.Tensor,
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
) -> dict[str, Any]:
    """Overall and per-frequency-bin perplexity of a scored token stream.

    Per bin ``k``: ``ppl_k = exp(sum_{t: bin(y_t)=k} -log p(y_t) / n_k)``, the perplexity of the
    tokens whose *target* word falls in bin ``k`` (as in the reference code).

    Args:
        token_log_probs: ``(N,)`` float, ``log p(y_t | context)`` in nats for each target ``y_t``
            (e.g. the output of :func:`mtlstm_hf.evaluation.perplexity.token_log_probs`).
        token_ids: ``(N,)`` int, the target ids ``y_t`` aligned with ``token_log_probs``.
        bin_of_token: ``(V,)`` int, bin index per vocabulary id, from
            :func:`frequency_bin_of_token` with the same ``edges``.
        edges: the bin thresholds; they give the number of bins and the labels.

    Returns:
        ``{"perplexity": float, "n_tokens": int, "nll_sum": float,
        "bins": {label: {"perplexity": float, "n_tokens": int, "nll_sum": float}}}``,
        bins ordered most frequent first; ``nll_sum`` in nats; an empty bin has perplexity NaN.
    """
    nll = -_check_log_probs(token_log_probs, "token_log_probs")
    labels = bin_labels(edges)
    bins = _token_bins(token_ids, bin_of_token, len(labels))
    _check_same_length(nll, "token_log_probs", bins, "token_ids")
    return _perplexity_by_bin(nll, bins, labels)


def binned_perplexity_by_frequency(
    token_log_probs: torch.Tensor,
    token_frequencies: torch.Tensor,
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
) -> dict[str, Any]:
    """Like :func:`binned_perplexity`, but given each target's corpus frequency instead of its id.

    ``token_frequencies[t]`` is the count of target word ``y_t`` in the counting streams
    (``token_counts(...)[token_ids]``). Same definition and return value as
    :func:`binned_perplexity`; this is the form the ``evaluate`` metric uses.
    """
    nll = -_check_log_probs(token_log_probs, "token_log_probs")
    freqs = _as_stream(token_frequencies, "token_frequencies").cpu()
    _check_same_length(nll, "token_log_probs", freqs, "token_frequencies")
    if freqs.min() < 0:
        raise ValueError(f"token_frequencies must be non-negative, got minimum {int(freqs.min())}")
    return _perplexity_by_bin(nll, frequency_bin_of_token(freqs, edges), bin_labels(edges))
