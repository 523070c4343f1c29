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

from collections.abc import Sequence
from typing import Any

import torch

from ..models.mtlstm.checks import check_positive_int
from .binned import as_integers, as_token_ids, check_log_probs, check_same_length, perplexity_by_bin, target_bins
from .bins import DEFAULT_BIN_EDGES, bin_labels, check_edges

__all__ = [
    "DEFAULT_BIN_EDGES",
    "bin_labels",
    "token_counts",
    "frequency_bin_of_token",
    "binned_perplexity",
    "binned_perplexity_by_frequency",
]


def token_counts(streams: torch.Tensor | Sequence[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """How often each vocabulary id occurs in one or several token streams.

    Args:
        streams: one 1-D LongTensor of token ids ``(N,)``, or a sequence of them (their counts
            are summed). Pass ``train`` for the train-only counting (recommended) or
            ``[train, valid, test]`` to match the paper's reference code.
        vocab_size: ``V``; every id must lie in ``[0, V)``.

    Returns:
        LongTensor ``(V,)``: occurrences of each id (0 for ids never seen).

    Raises:
        ValueError: ``vocab_size`` not a positive integer; a stream that is not 1-D integer ids
            (booleans refused) or holds an id outside ``[0, V)``.
    """
    check_positive_int(vocab_size, "vocab_size")
    if isinstance(streams, torch.Tensor):
        stream_list = [streams]
    else:
        stream_list = list(streams)
        if len(stream_list) == 0:
            raise ValueError("streams must contain at least one token stream")
    counts = torch.zeros(int(vocab_size), dtype=torch.long)
    for i, stream in enumerate(stream_list):
        ids = as_token_ids(stream, f"streams[{i}]").cpu()
        if ids.numel() == 0:
            continue
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(
                f"streams[{i}] holds ids outside [0, vocab_size={vocab_size}): min {int(ids.min())}, max {int(ids.max())}"
            )
        counts += torch.bincount(ids, minlength=int(vocab_size))
    return counts


def frequency_bin_of_token(counts: torch.Tensor, edges: Sequence[int] = DEFAULT_BIN_EDGES) -> torch.Tensor:
    """Bin index of each count (0 = most frequent bin, ``len(edges)`` = rarest).

    Args:
        counts: integer tensor of any shape, typically the ``(V,)`` output of
            :func:`token_counts` (then the result is the bin of each vocabulary id), or
            per-token frequencies ``(N,)``.
        edges: thresholds, any order, positive and distinct; default ``(100, 1000, 10000)``.

    Returns:
        LongTensor of the same shape as ``counts``; see the module docstring for the edge rule.

    Raises:
        ValueError: counts that are not integers (floating-point or boolean values, also a
            boolean inside a list of integers) or are negative; bad ``edges``
            (:func:`~mtlstm_hf.evaluation.bins.check_edges`).
    """
    counts = as_integers(counts, "counts", "integer counts (occurrences of each word)")
    if counts.numel() and counts.min() < 0:
        raise ValueError(f"counts must be non-negative, got minimum {int(counts.min())}")
    asc = torch.tensor(check_edges(edges), dtype=torch.long, device=counts.device)
    # Number of edges the count reaches, counted from the top: reaching none of them means
    # rarest bin (index K), reaching all means bin 0.
    return (counts.long().unsqueeze(-1) < asc).sum(-1)


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
    nll = -check_log_probs(token_log_probs, "token_log_probs")
    labels = bin_labels(edges)
    bins = target_bins(token_ids, bin_of_token, len(labels))
    check_same_length(nll, "token_log_probs", bins, "token_ids")
    return perplexity_by_bin(nll, bins, labels)


def binned_perplexity_by_frequency(
    token_log_probs: torch.Tensor,
    token_frequencies: torch.Tensor,
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
) -> dict[str, Any]:
    """Like :func:`binned_perplexity`, but given each target's corpus frequency instead of its id.

    ``token_frequencies[t]`` is the count of target word ``y_t`` in the counting streams
    (``token_counts(...)[token_ids]``). Same definition and return value as
    :func:`binned_perplexity`; this is the form the ``evaluate`` metric uses.

    Raises:
        ValueError: as :func:`binned_perplexity`; ``token_frequencies`` not 1-D integer counts
            (floating-point or boolean values refused, also a boolean among integers), negative,
            or of another length than ``token_log_probs``.
    """
    nll = -check_log_probs(token_log_probs, "token_log_probs")
    freqs = as_integers(token_frequencies, "token_frequencies", "integer counts (each target's corpus count)").cpu()
    if freqs.dim() != 1:
        raise ValueError(f"token_frequencies must be 1-D, got shape {tuple(freqs.shape)}")
    check_same_length(nll, "token_log_probs", freqs, "token_frequencies")
    if freqs.min() < 0:
        raise ValueError(f"token_frequencies must be non-negative, got minimum {int(freqs.min())}")
    return perplexity_by_bin(nll, frequency_bin_of_token(freqs, edges), bin_labels(edges))
