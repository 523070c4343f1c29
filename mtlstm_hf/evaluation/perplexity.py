"""Per-token log-probabilities of a recurrent causal LM over a long token stream.

The model is only duck-typed (this module does not import ``mtlstm_hf.models``): it must
follow the Hugging Face causal-LM call (transformers >= 5.24 names the state ``cache``)

    out = model(input_ids=x, cache=state_or_None, use_cache=True)

with ``x`` a ``(B, L)`` LongTensor, ``out.logits`` ``(B, L, V)`` and ``out.cache`` a state
object with a ``.detach()`` method. The stream is fed in windows of ``window`` tokens
and the returned state is passed to the next window, so the model's context is the whole
preceding stream, exactly as in one pass over the stream (truncation only limits the
graph, and there is no graph under ``torch.inference_mode``).

Batching (``batch_size = B > 1``) follows AWD-LSTM's ``batchify``: the stream is cut into B
contiguous pieces of ``n = N // B`` tokens; piece ``j`` is ``stream[j*n:(j+1)*n]`` and the
pieces are processed side by side. Consequences:

* The last ``N mod B`` tokens are dropped.
* Each piece starts from the model's zero state, so its first tokens are predicted with
  less context than with ``B = 1``: results differ slightly from ``B = 1`` (AWD-LSTM's
  reported test numbers use ``B = 1``).
* The first token of each piece is never a target; per piece there are ``n - 1`` targets,
  ``B * (n - 1)`` in total. :func:`target_positions` gives the stream position of each.
"""

from __future__ import annotations

import math
from typing import Any, overload

import torch

from ..data.batching import batchify
from ..models.mtlstm.checks import check_positive_int

__all__ = ["perplexity", "token_log_probs", "token_rows", "target_positions", "windows"]


@overload
def perplexity(mean_nll: float) -> float: ...
@overload
def perplexity(mean_nll: None) -> None: ...
@overload
def perplexity(mean_nll: float | None) -> float | None: ...
def perplexity(mean_nll: float | None) -> float | None:
    """``exp(mean_nll)`` for a mean cross-entropy in nats per token: the one perplexity formula of
    the library (evaluation, training logs and results). ``inf`` on overflow; ``None`` for ``None``.
    """
    if mean_nll is None:
        return None
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def target_positions(num_tokens: int, batch_size: int = 1) -> torch.Tensor:
    """Stream positions of the targets scored by :func:`token_log_probs`, in its output order.

    ``stream[target_positions(len(stream), B)]`` are the target ids aligned with
    ``token_log_probs(model, stream, batch_size=B)`` (what the frequency-bin and bootstrap
    functions take as ``token_ids``). For ``B = 1`` this is ``arange(1, N)``.

    Returns:
        LongTensor ``(B * (N // B - 1),)``.
    """
    num_tokens = check_positive_int(num_tokens, "num_tokens")
    batch_size = check_positive_int(batch_size, "batch_size")
    piece = num_tokens // batch_size
    if piece < 2:
        raise ValueError(
            f"num_tokens={num_tokens} with batch_size={batch_size} leaves {piece} token(s) per stream; need at least 2"
        )
    starts = torch.arange(batch_size).unsqueeze(1) * piece
    return (starts + torch.arange(1, piece)).reshape(-1)


def token_rows(
    stream: Any,
    batch_size: int = 1,
    max_tokens: int | None = None,
    min_row_length: int = 1,
    vocab_size: int | None = None,
    name: str = "stream",
) -> torch.Tensor:
    """A token stream cut into ``batch_size`` contiguous rows by :func:`mtlstm_hf.data.batchify`.

    Row ``b`` is ``stream[b n : (b + 1) n]`` with ``n = N // B`` (the last ``N mod B`` tokens are
    dropped): how :func:`token_log_probs` and every analysis cut a stream (AWD-LSTM's
    ``batchify``, Merity et al. 2018).

    Args:
        stream: ``(N,)`` integer token ids (tensor, list or array).
        batch_size: ``B``.
        max_tokens: use only the first ``max_tokens`` tokens (None = all).
        min_row_length: minimum ``n``; a shorter stream raises.
        vocab_size: ``V``; when given, every id must lie in ``[0, V)``.
        name: the argument's name in error messages.

    Returns:
        ``(B, n)`` int64 on the stream's device.

    Raises:
        ValueError: not a 1-D integer stream; ``batch_size`` or ``max_tokens`` not a positive
            integer; ids outside ``[0, V)``; fewer than ``min_row_length`` tokens per row
            ("the data is too short").
    """
    ids = torch.as_tensor(stream)
    if ids.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of token ids, got shape {tuple(ids.shape)}.")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}.")
    batch_size = check_positive_int(batch_size, "batch_size")
    if max_tokens is not None:
        ids = ids[: check_positive_int(max_tokens, "max_tokens")]
    ids = ids.long()
    if vocab_size is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}) (the vocabulary size), got values from "
            f"{int(ids.min())} to {int(ids.max())}."
        )
    row_length = ids.numel() // batch_size
    if row_length < max(min_row_length, 1):
        raise ValueError(
            f"the data is too short: {name} has {ids.numel()} tokens, {row_length} per batch row with "
            f"batch_size={batch_size}, but at least {max(min_row_length, 1)} are needed (use more data, a smaller "
            "batch_size or smaller delays/distances)."
        )
    return batchify(ids, batch_size)


def windows(row_length: int, window: int, targets: bool = True) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of each window a row of ``row_length`` tokens is walked in, the state
    carried from one window to the next: inputs ``row[start:stop]``; with ``targets``, their targets
    are ``row[start + 1 : stop + 1]`` (so the walk ends one token early), without, the whole row.

    Raises:
        ValueError: ``window`` not a positive integer.
    """
    window = check_positive_int(window, "window")
    end = row_length - 1 if targets else row_length
    return [(start, min(start + window, end)) for start in range(0, max(end, 0), window)]


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def token_log_probs(
    model: torch.nn.Module,
    stream: torch.Tensor,
    batch_size: int = 1,
    window: int = 70,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Log-probability of every next token of ``stream`` under ``model``, state carried across windows.

    Computes ``log p(stream[t+1] | stream[:t+1])`` (natural log, nats) for ``B = 1``; see the
    module docstring for ``B > 1`` (contiguous pieces, each from a zero state).

    Args:
        model: a causal LM with the call convention in the module docstring.
        stream: ``(N,)`` LongTensor of token ids, ``N >= 2``.
        batch_size: number of contiguous pieces processed in parallel (``B``).
        window: tokens per forward call (``L``); only affects speed and memory, not the result.
        device: where the input windows are sent; the model must already be there. Default:
            the device of the model's first parameter (CPU if it has none).

    Returns:
        float32 CPU tensor ``(N - 1,)`` for ``B = 1``, ``(B * (N // B - 1),)`` in general,
        aligned with ``stream[target_positions(N, B)]``. The model's training mode is restored
        on exit (it is put in eval mode while scoring, so dropout is off).
    """
    rows = token_rows(stream, batch_size, min_row_length=2)  # row j: the contiguous piece j
    spans = windows(rows.shape[1], window)
    device = torch.device(device) if device is not None else _model_device(model)
    data = rows.to(device)

    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    state = None
    try:
        with torch.inference_mode():
            for start, stop in spans:
                inputs = data[:, start:stop]
                targets = data[:, start + 1 : stop + 1]
                out = model(input_ids=inputs, cache=state, use_cache=True)
                # float32 at least: log_softmax of half-precision logits loses digits that add up.
                logp = torch.log_softmax(out.logits.float(), dim=-1)
                chunks.append(logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu())
                if out.cache is None:
                    raise ValueError("model returned no cache with use_cache=True; cannot carry the state")
                state = out.cache.detach()
    finally:
        model.train(was_training)
    # (B, piece - 1) -> row-major flatten = stream order of target_positions.
    return torch.cat(chunks, dim=1).reshape(-1)
