"""Perplexity per bin of the target words: the one place overall and per-bin perplexity are computed.

A *bin* is any grouping of the target words: a word-frequency bin (:mod:`.frequency`, the
paper's >=10K / 1K-10K / 100-1K / <100, Mahto et al. ICLR 2021) or a word class such as a part
of speech (:func:`class_binned_perplexity`; used by the routing reports of
:mod:`mtlstm_hf.analysis.ablation`). Log-probabilities are natural logs (nats); NLL = ``-log p``;
perplexity = ``exp(mean NLL)``. Also the validation helpers the other evaluation modules share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .perplexity import perplexity

__all__ = [
    "as_integers",
    "as_token_ids",
    "check_log_probs",
    "check_same_length",
    "class_binned_perplexity",
    "perplexities_by_bin",
    "perplexity_by_bin",
    "target_bins",
]

# Largest positive log-probability accepted as rounding noise (exact log_softmax gives <= 0).
_LOG_PROB_TOLERANCE = 1e-6


_NONE_FOUND = object()


def _first_element(values: Any, odd: Any) -> Any:
    """The first leaf of a (nested) list or tuple for which ``odd(leaf)`` holds, else ``_NONE_FOUND``."""
    for value in values:
        found = (
            _first_element(value, odd) if isinstance(value, (list, tuple)) else (value if odd(value) else _NONE_FOUND)
        )
        if found is not _NONE_FOUND:
            return found
    return _NONE_FOUND


def _is_boolean(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool)


def _is_not_integer(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.bool or value.is_floating_point() or value.is_complex()
    return _is_boolean(value) or not isinstance(value, (int, np.integer))


def as_integers(values: Any, name: str, what: str) -> torch.Tensor:
    """``values`` (a tensor, numpy array or nested list of any shape) as an int64 tensor.

    Booleans are refused, also inside a list of integers (``torch.as_tensor([True, 5])`` would
    silently be ``[1, 5]``), and so are floating-point values (``100.7`` is no count).

    Args:
        name: the argument's name, what: what it must hold (``"integer counts"``), for messages.

    Raises:
        ValueError: naming ``name``, the dtype or value found and what is allowed.
    """
    if isinstance(values, (list, tuple)):
        found = _first_element(values, _is_not_integer)
        if found is not _NONE_FOUND:
            raise ValueError(f"{name} must hold {what}, got {type(found).__name__} {found!r}")
    tensor = torch.as_tensor(values)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold {what}, got dtype {tensor.dtype}")
    return tensor.long()


def as_token_ids(stream: Any, name: str) -> torch.Tensor:
    """``stream`` as a 1-D int64 tensor (lists and numpy arrays accepted).

    Raises:
        ValueError: not 1-D, or not integer (floating-point or boolean values, also a boolean
            inside a list of integers).
    """
    tensor = as_integers(stream, name, "integer token ids")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    return tensor


def check_log_probs(log_probs: Any, name: str, rows: bool = False) -> torch.Tensor:
    """Validated per-token log-probabilities as float64 on the CPU.

    Args:
        log_probs: ``(N,)`` natural-log probabilities (nats), or ``(R, N)`` with ``rows=True``
            (e.g. one row per ablated model).
        name: the argument's name in error messages.

    Raises:
        ValueError: booleans, wrong number of dimensions, empty, non-finite, or a value above 0
            beyond rounding (1e-6: NLLs or logits were passed).
    """
    if isinstance(log_probs, torch.Tensor):
        if log_probs.dtype == torch.bool or log_probs.is_complex():
            raise ValueError(f"{name} must hold real log-probabilities, got dtype {log_probs.dtype}")
        values = log_probs.detach().cpu().double()
    else:  # lists/arrays straight to float64 (torch.as_tensor would round Python floats to float32)
        found = _first_element(log_probs, _is_boolean) if isinstance(log_probs, (list, tuple)) else _NONE_FOUND
        if found is not _NONE_FOUND or getattr(log_probs, "dtype", None) == np.bool_:
            raise ValueError(f"{name} must hold real log-probabilities, got booleans")
        values = torch.as_tensor(log_probs, dtype=torch.float64)
    if values.dim() != (2 if rows else 1):
        what = "2-D (one row of log-probabilities per model)" if rows else "1-D (one log-probability per token)"
        raise ValueError(f"{name} must be {what}, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(values).all():
        raise ValueError(
            f"{name} must be finite (NaN or +-inf found; a -inf log-probability makes perplexity infinite)"
        )
    if values.max() > _LOG_PROB_TOLERANCE:
        raise ValueError(
            f"{name} must be log-probabilities (<= 0, natural log), got maximum {float(values.max()):.6g}; "
            "did you pass NLLs or logits?"
        )
    return values


def check_same_length(a: torch.Tensor, name_a: str, b: torch.Tensor, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same first dimension (token by token)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} has {a.shape[0]} entries but {name_b} has {b.shape[0]}; they must align token by token"
        )


def target_bins(
    token_ids: Any, bin_of_token: Any, n_bins: int, name_ids: str = "token_ids", allow_excluded: bool = False
) -> torch.Tensor:
    """Per-token bin indices ``bin_of_token[token_ids]`` ``(N,)`` with range checks.

    Args:
        token_ids: ``(N,)`` target ids; bin_of_token: ``(V,)`` integer bin (or class) of every id.
        n_bins: number of bins; values must lie in ``[0, n_bins)``, or ``[-1, n_bins)`` with
            ``allow_excluded`` (-1: a target that is not scored).

    Raises:
        ValueError: a malformed table (not 1-D, empty, floating-point or boolean), a value out of
            range, an id outside ``[0, V)``.
    """
    ids = as_token_ids(token_ids, name_ids).cpu()
    table = as_integers(bin_of_token, "bin_of_token", "integer bin indices").cpu()
    if table.dim() != 1 or table.numel() == 0:
        raise ValueError(f"bin_of_token must be a non-empty 1-D tensor (V,), got shape {tuple(table.shape)}")
    lowest = -1 if allow_excluded else 0
    if table.min() < lowest or table.max() >= n_bins:
        groups = f"{n_bins} classes" if allow_excluded else f"{n_bins - 1} edges"
        raise ValueError(
            f"bin_of_token values must lie in [{lowest}, {n_bins}) for {groups}, got range "
            f"[{int(table.min())}, {int(table.max())}]; were different edges used to build it?"
        )
    if ids.numel() and (ids.min() < 0 or ids.max() >= table.numel()):
        raise ValueError(
            f"{name_ids} must lie in [0, V={table.numel()}) (the length of bin_of_token), got range "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    return table[ids]


def _perplexity(nll_sum: float, n_tokens: int) -> float:
    """``exp(mean NLL)`` (:func:`.perplexity.perplexity`); NaN without tokens."""
    return perplexity(nll_sum / n_tokens) if n_tokens > 0 else float("nan")  # type: ignore[return-value]


def perplexity_by_bin(nll: torch.Tensor, token_bins: torch.Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """Overall and per-bin perplexity from per-token NLLs: the one place both are computed.

    ``ppl = exp(sum nll / N)``, ``ppl_k = exp(sum_{t: bin_t = k} nll_t / n_k)`` (nats; an empty bin
    has perplexity NaN, not 0 or inf, so it cannot be mistaken for a score).

    Args:
        nll: ``(N,)`` float64 ``-log p`` of each target (from :func:`check_log_probs`).
        token_bins: ``(N,)`` int64 bin of each target, in ``[0, len(labels))``.
        labels: the bin names, in bin order.

    Returns:
        ``{"perplexity", "n_tokens", "nll_sum", "bins": {label: {"perplexity", "n_tokens", "nll_sum"}}}``.
    """
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


def perplexities_by_bin(nll: torch.Tensor, token_bins: torch.Tensor, labels: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`perplexity_by_bin` of every row of ``nll (R, N)`` (e.g. one model per row), same bins.

    Returns:
        ``R`` dicts in the layout of :func:`perplexity_by_bin`.
    """
    return [perplexity_by_bin(row, token_bins, labels) for row in nll]


def class_binned_perplexity(
    token_log_probs: torch.Tensor, token_ids: torch.Tensor, class_of_token: torch.Tensor, labels: Sequence[str]
) -> dict[str, Any]:
    """Overall and per-class perplexity, like :func:`mtlstm_hf.evaluation.binned_perplexity` with
    arbitrary classes: ``ppl_k = exp(mean_{t: class(y_t) = k} -log p(y_t))``.

    Args:
        token_log_probs: ``(M,)`` natural-log probabilities of the targets.
        token_ids: ``(M,)`` target ids ``y_t``.
        class_of_token: ``(V,)`` class index per vocabulary id, in ``[-1, len(labels))``.
        labels: the class names.

    Returns:
        ``{"perplexity", "n_tokens", "nll_sum", "bins": {label: {"perplexity", "n_tokens",
        "nll_sum"}}, "n_excluded"}``: targets of class -1 are left out (``n_excluded``; the
        overall numbers are over the scored targets); an empty class has perplexity NaN.

    Raises:
        ValueError: not 1-D finite log-probabilities <= 0, lengths differ, ids or classes out of range,
            no target with a class.
    """
    nll = -check_log_probs(token_log_probs, "token_log_probs")
    classes = target_bins(token_ids, class_of_token, len(labels), allow_excluded=True)
    check_same_length(nll, "token_log_probs", classes, "token_ids")
    scored = classes >= 0
    if not bool(scored.any()):
        raise ValueError("no target token has a class (all are -1).")
    result = perplexity_by_bin(nll[scored], classes[scored], list(labels))
    result["n_excluded"] = int((~scored).sum())
    return result
