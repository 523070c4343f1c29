"""Block bootstrap of perplexity, for one model or a paired comparison of two models.

Procedure (after the paper's reference code, ``model_evaluation.py``):

1. The test stream's per-token NLLs (``-log p``, nats) are cut into consecutive blocks of
   ``block_size`` tokens (default 100). Blocks keep local dependencies between neighbouring
   tokens together, which a token-level bootstrap would break.
2. A resample draws ``n_blocks`` blocks uniformly *with replacement*; ``n_resamples`` such
   resamples are drawn (default 10,000).
3. In each resample, overall and per-frequency-bin perplexity is
   ``exp(sum of NLL of the drawn tokens in the bin / number of those tokens)``. For a paired
   comparison both models are evaluated on the *same* drawn blocks.

Tail: with ``tail="drop"`` (default) the last ``N mod block_size`` tokens, which do not fill
a block, are excluded from everything (observed values included), so every resampling unit
has the same size. With ``tail="keep"`` they form one shorter last block. (The reference
code always drops the last block start, i.e. it drops a *full* last block when
``N`` is a multiple of 100; that quirk is not reproduced.)

Empty bins: a resample may draw no token of a rare bin; its perplexity for that resample is
undefined and stored as NaN. Means, standard deviations, percentiles and p-values of a bin
are computed over the resamples where the bin is non-empty (``n_valid_resamples``); a bin
empty in every resample reports NaN.

Statistics reported (per bin and overall):

* ``mean``/``std``: mean and sample standard deviation (``ddof=1``, like the reference's
  ``statistics.stdev``) of the perplexity across resamples; ``observed``: the perplexity of the
  blocks as they are (each used once).
* ``diff`` (paired): ``ppl_B - ppl_A`` per resample (negative when model B is better), with a
  percentile confidence interval at ``confidence_level`` (default 0.95: the 2.5th and 97.5th
  percentiles, linear interpolation). The reference code prints ``baseline - mts`` with the
  5th and 9,996th of 10,001 sorted values (about a 99.9% interval); pass
  ``confidence_level=0.999`` and swap A/B to match it.
* ``p_value`` (paired, two-sided): with ``d_r`` the resampled differences and ``R`` the
  number of valid resamples, ``p = min(1, 2 * (1 + min(#{d_r <= 0}, #{d_r >= 0})) / (R + 1))``:
  twice the (add-one smoothed) fraction of resamples on the less populated side of zero, i.e.
  how often the sign of the difference flips. Identical models give ``p = 1``; the smallest
  attainable value is ``2 / (R + 1)`` (a p-value of exactly 0 is never claimed); when no
  resample lies on the other side of zero, ``p_value_is_smallest`` is True and the p-value is
  only an upper bound (:func:`format_p_value` writes it ``<=``). It is consistent with the
  percentile interval: ``p < 1 - level`` roughly when the interval excludes 0.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, Literal

import torch

from ..command_line import check_seed
from ..models.mtlstm.checks import check_int_at_least, check_positive_int
from .binned import check_log_probs, check_same_length, target_bins
from .bins import DEFAULT_BIN_EDGES, bin_labels

__all__ = ["block_bootstrap", "format_p_value", "paired_block_bootstrap"]

# Cap on the (resamples x blocks) weight matrix built at once (elements); keeps memory at
# ~32 MB whatever n_resamples is, while staying vectorised within each chunk.
_MAX_CHUNK_ELEMENTS = 1 << 22


def _make_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """An int seeds a fresh CPU generator; None means torch's global RNG."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    try:
        seed = None if isinstance(generator, bool) else operator.index(generator)  # numpy integers too
    except TypeError:
        seed = None
    if seed is None:
        raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")
    return torch.Generator().manual_seed(check_seed(seed, "the bootstrap seed (generator)"))


def _check_options(block_size: int, n_resamples: int, confidence_level: float, tail: str) -> None:
    check_positive_int(block_size, "block_size")
    check_int_at_least(n_resamples, "n_resamples", 2)
    if not 0.0 < float(confidence_level) < 1.0:
        raise ValueError(f"confidence_level must lie strictly between 0 and 1, got {confidence_level!r}")
    if tail not in ("drop", "keep"):
        raise ValueError(f"tail must be 'drop' or 'keep', got {tail!r}")


def _block_ids(n_tokens: int, block_size: int, tail: str) -> tuple[torch.Tensor, int]:
    """Block index of each used token ``(n_used,)`` and the number of blocks."""
    n_used = n_tokens - n_tokens % block_size if tail == "drop" else n_tokens
    n_blocks = math.ceil(n_used / block_size)
    if n_blocks == 0:
        raise ValueError(
            f"the stream has {n_tokens} tokens, fewer than block_size={block_size}: no full block; "
            "use a smaller block_size or tail='keep'"
        )
    return torch.arange(n_used) // block_size, n_blocks


def _block_table(values: torch.Tensor, block_ids: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Sum ``values (n_used, C)`` within each block: ``(n_blocks, C)`` float64."""
    return torch.zeros(n_blocks, values.shape[1], dtype=torch.float64).index_add_(0, block_ids, values)


def _resample_sums(table: torch.Tensor, n_resamples: int, generator: torch.Generator | None) -> torch.Tensor:
    """Column sums of ``table (n_blocks, C)`` over ``n_resamples`` block resamples: ``(R, C)``.

    Each resample is encoded as how many times every block was drawn (a weight row), so a
    chunk of resamples is one matrix product instead of a Python loop over resamples.
    """
    n_blocks = table.shape[0]
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n_blocks)
    out = torch.empty(n_resamples, table.shape[1], dtype=torch.float64)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        draws = torch.randint(n_blocks, (rows, n_blocks), generator=generator)
        weights = torch.zeros(rows, n_blocks, dtype=torch.float64)
        weights.scatter_add_(1, draws, torch.ones(rows, n_blocks, dtype=torch.float64))
        out[start : start + rows] = weights @ table
    return out


def _ppl(nll_sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``exp(nll_sum / count)``, NaN where the count is 0 (empty bin)."""
    return torch.where(counts > 0, torch.exp(nll_sums / counts.clamp(min=1)), torch.nan)


def _nan_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Column-wise mean, sample std (ddof=1) and number of non-NaN entries of ``x (R, C)``."""
    valid = ~torch.isnan(x)
    n = valid.sum(0)
    filled = torch.where(valid, x, 0.0)
    mean = filled.sum(0) / n  # NaN when n == 0
    sq = torch.where(valid, (x - mean) ** 2, 0.0).sum(0)
    std = torch.where(n > 1, torch.sqrt(sq / (n - 1).clamp(min=1)), torch.nan)
    return mean, std, n


def _prepare(
    log_probs: Sequence[tuple[torch.Tensor, str]],
    token_ids: torch.Tensor | None,
    bin_of_token: torch.Tensor | None,
    edges: Sequence[int],
    block_size: int,
    n_resamples: int,
    confidence_level: float,
    tail: str,
) -> tuple[list[torch.Tensor], torch.Tensor, list[str], torch.Tensor, int, int]:
    """Validate inputs; return per-model NLLs, per-token bins, labels, block ids, n_blocks, N."""
    _check_options(block_size, n_resamples, confidence_level, tail)
    nlls = [-check_log_probs(lp, name) for lp, name in log_probs]
    first_name = log_probs[0][1]
    for nll, (_, name) in zip(nlls[1:], log_probs[1:]):
        check_same_length(nlls[0], first_name, nll, name)
    n_tokens = nlls[0].shape[0]
    if (token_ids is None) != (bin_of_token is None):
        raise ValueError("token_ids and bin_of_token must be given together (or both omitted for overall only)")
    if token_ids is None:
        labels: list[str] = []
        bins = torch.zeros(n_tokens, dtype=torch.long)  # one pseudo-bin; only 'overall' is reported
    else:
        labels = bin_labels(edges)
        bins = target_bins(token_ids, bin_of_token, len(labels))
        check_same_length(nlls[0], first_name, bins, "token_ids")
    block_ids, n_blocks = _block_ids(n_tokens, int(block_size), tail)
    return nlls, bins, labels, block_ids, n_blocks, n_tokens


def _bin_tables(
    nlls: list[torch.Tensor], bins: torch.Tensor, n_columns: int, block_ids: torch.Tensor, n_blocks: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-block NLL sums for each model and token counts, with an 'overall' last column.

    Returns ``[(n_blocks, n_columns + 1)] * n_models`` and ``(n_blocks, n_columns + 1)``.
    """
    n_used = block_ids.shape[0]
    onehot = torch.nn.functional.one_hot(bins[:n_used], n_columns).double()  # (n_used, K)
    onehot = torch.cat([onehot, torch.ones(n_used, 1, dtype=torch.float64)], dim=1)  # + overall
    nll_tables = [_block_table(onehot * nll[:n_used, None], block_ids, n_blocks) for nll in nlls]
    return nll_tables, _block_table(onehot, block_ids, n_blocks)


def _meta(
    block_size: int, n_blocks: int, n_used: int, n_tokens: int, n_resamples: int, level: float, tail: str
) -> dict[str, Any]:
    return {
        "block_size": int(block_size),
        "n_blocks": n_blocks,
        "n_tokens": n_used,
        "n_tail_tokens_dropped": n_tokens - n_used,
        "n_resamples": int(n_resamples),
        "confidence_level": float(level),
        "tail": tail,
    }


def block_bootstrap(
    log_probs: torch.Tensor,
    token_ids: torch.Tensor | None = None,
    bin_of_token: torch.Tensor | None = None,
    *,
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
    block_size: int = 100,
    n_resamples: int = 10_000,
    confidence_level: float = 0.95,
    tail: Literal["drop", "keep"] = "drop",
    generator: torch.Generator | int | None = None,
) -> dict[str, Any]:
    """Block-bootstrap spread of one model's perplexity (the reference's ``bootstrap_evaluation``).

    Args:
        log_probs: ``(N,)`` per-token log-probabilities (nats) over the test stream, in order.
        token_ids: ``(N,)`` target ids, to also report frequency bins (optional).
        bin_of_token: ``(V,)`` bin per vocabulary id from ``frequency_bin_of_token(counts, edges)``.
        edges: bin thresholds matching ``bin_of_token``.
        block_size: tokens per block (> 0); see the module docstring for the tail.
        n_resamples: number of bootstrap resamples (>= 2).
        confidence_level: level of the percentile interval.
        tail: ``"drop"`` the incomplete last block (default) or ``"keep"`` it as a short block.
        generator: a ``torch.Generator``, an int seed, or None for torch's global RNG.

    Returns:
        ``{"overall": stats, "bins": {label: stats}, "block_size", "n_blocks", "n_tokens"
        (tokens used), "n_tail_tokens_dropped", "n_resamples", "confidence_level", "tail"}``
        with ``stats = {"observed", "mean", "std", "ci_low", "ci_high", "n_tokens",
        "n_valid_resamples"}`` (perplexities; ``bins`` is empty without ``token_ids``).
    """
    nlls, bins, labels, block_ids, n_blocks, n_tokens = _prepare(
        [(log_probs, "log_probs")], token_ids, bin_of_token, edges, block_size, n_resamples, confidence_level, tail
    )
    n_cols = max(len(labels), 1)
    (nll_table,), count_table = _bin_tables(nlls, bins, n_cols, block_ids, n_blocks)
    sums = _resample_sums(torch.cat([nll_table, count_table], dim=1), int(n_resamples), _make_generator(generator))
    width = n_cols + 1
    ppl = _ppl(sums[:, :width], sums[:, width:])
    observed = _ppl(nll_table.sum(0), count_table.sum(0))
    n_observed = count_table.sum(0)
    mean, std, n_valid = _nan_mean_std(ppl)
    alpha = 1.0 - float(confidence_level)
    ci = torch.nanquantile(ppl, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64), dim=0)

    def stats(col: int) -> dict[str, Any]:
        return {
            "observed": float(observed[col]),
            "mean": float(mean[col]),
            "std": float(std[col]),
            "ci_low": float(ci[0, col]),
            "ci_high": float(ci[1, col]),
            "n_tokens": int(n_observed[col]),
            "n_valid_resamples": int(n_valid[col]),
        }

    result: dict[str, Any] = {"overall": stats(n_cols), "bins": {label: stats(k) for k, label in enumerate(labels)}}
    result.update(_meta(block_size, n_blocks, block_ids.shape[0], n_tokens, n_resamples, confidence_level, tail))
    return result


def paired_block_bootstrap(
    log_probs_a: torch.Tensor,
    log_probs_b: torch.Tensor,
    token_ids: torch.Tensor | None = None,
    bin_of_token: torch.Tensor | None = None,
    *,
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
    block_size: int = 100,
    n_resamples: int = 10_000,
    confidence_level: float = 0.95,
    tail: Literal["drop", "keep"] = "drop",
    generator: torch.Generator | int | None = None,
) -> dict[str, Any]:
    """Paired block bootstrap: is model B's perplexity different from model A's on the same stream?

    Both models are scored on the same resampled blocks in every resample, so shared
    difficulty of the text cancels in the difference. Definitions (difference ``B - A``,
    percentile interval, two-sided p-value, tail and empty-bin handling) are in the module
    docstring.

    Args:
        log_probs_a: ``(N,)`` per-token log-probabilities (nats) of model A (e.g. the baseline).
        log_probs_b: ``(N,)`` the same for model B, aligned token by token with A.
        token_ids, bin_of_token, edges, block_size, n_resamples, confidence_level, tail, generator: as
            in :func:`block_bootstrap`.

    Returns:
        ``{"overall": stats, "bins": {label: stats}, ...}`` with the same metadata keys as
        :func:`block_bootstrap` and ``stats = {"n_tokens", "n_valid_resamples",
        "a": {"observed", "mean", "std"}, "b": {...}, "diff": {"observed", "mean", "std",
        "ci_low", "ci_high", "p_value", "p_value_is_smallest"}}``; all values are perplexities
        (``diff = ppl_B - ppl_A``).
    """
    nlls, bins, labels, block_ids, n_blocks, n_tokens = _prepare(
        [(log_probs_a, "log_probs_a"), (log_probs_b, "log_probs_b")],
        token_ids,
        bin_of_token,
        edges,
        block_size,
        n_resamples,
        confidence_level,
        tail,
    )
    n_cols = max(len(labels), 1)
    (table_a, table_b), count_table = _bin_tables(nlls, bins, n_cols, block_ids, n_blocks)
    width = n_cols + 1
    # One draw of blocks per resample, shared by A and B (that is what makes it paired).
    sums = _resample_sums(
        torch.cat([table_a, table_b, count_table], dim=1), int(n_resamples), _make_generator(generator)
    )
    counts = sums[:, 2 * width :]
    ppl_a, ppl_b = _ppl(sums[:, :width], counts), _ppl(sums[:, width : 2 * width], counts)
    diff = ppl_b - ppl_a
    n_observed = count_table.sum(0)
    obs_a, obs_b = _ppl(table_a.sum(0), n_observed), _ppl(table_b.sum(0), n_observed)

    mean_a, std_a, _ = _nan_mean_std(ppl_a)
    mean_b, std_b, _ = _nan_mean_std(ppl_b)
    mean_d, std_d, n_valid = _nan_mean_std(diff)
    alpha = 1.0 - float(confidence_level)
    ci = torch.nanquantile(diff, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64), dim=0)
    valid = ~torch.isnan(diff)
    n_le = ((diff <= 0) & valid).sum(0)
    n_ge = ((diff >= 0) & valid).sum(0)
    flips = torch.minimum(n_le, n_ge)  # resamples on the less populated side of zero
    p = (2.0 * (1 + flips).double() / (n_valid + 1)).clamp(max=1.0)  # float64, as the rest
    p = torch.where(n_valid > 0, p, torch.nan)
    at_floor = (flips == 0) & (n_valid > 0)

    def stats(col: int) -> dict[str, Any]:
        return {
            "n_tokens": int(n_observed[col]),
            "n_valid_resamples": int(n_valid[col]),
            "a": {"observed": float(obs_a[col]), "mean": float(mean_a[col]), "std": float(std_a[col])},
            "b": {"observed": float(obs_b[col]), "mean": float(mean_b[col]), "std": float(std_b[col])},
            "diff": {
                "observed": float(obs_b[col] - obs_a[col]),
                "mean": float(mean_d[col]),
                "std": float(std_d[col]),
                "ci_low": float(ci[0, col]),
                "ci_high": float(ci[1, col]),
                "p_value": float(p[col]),
                "p_value_is_smallest": bool(at_floor[col]),
            },
        }

    result: dict[str, Any] = {"overall": stats(n_cols), "bins": {label: stats(k) for k, label in enumerate(labels)}}
    result.update(_meta(block_size, n_blocks, block_ids.shape[0], n_tokens, n_resamples, confidence_level, tail))
    return result


def format_p_value(diff: dict[str, Any], digits: int = 4) -> str:
    """A paired bootstrap's p-value as text: ``"0.0312"``, ``"<=0.0002"`` when no resample crossed
    zero (the smallest value ``2 / (R + 1)`` its resamples can give, so only a bound), ``"-"``
    when undefined (a bin empty in every resample). ``diff``: a ``diff`` entry of
    :func:`paired_block_bootstrap`'s result."""
    p = diff.get("p_value")
    if p is None or p != p:
        return "-"
    return f"{'<=' if diff.get('p_value_is_smallest') else ''}{p:.{digits}f}"
