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

import torch

from ..data.batching import batchify
from ..models.mtlstm.checks import check_positive_int

__all__ = ["perplexity", "token_log_probs", "target_positions"]


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
    batch_size = check_positive_int(batch_size, "batch_size")
    window = check_positive_int(window, "window")
    ids = torch.as_tensor(stream)
    if ids.dim() != 1:
        raise ValueError(f"stream must be a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"stream must hold integer token ids, got dtype {ids.dtype}")
    piece = ids.numel() // batch_size
    if piece < 2:
        raise ValueError(
            f"stream has {ids.numel()} tokens; with batch_size={batch_size} each piece needs at least 2 tokens"
        )
    device = torch.device(device) if device is not None else _model_device(model)
    # AWD batchify: row j is the contiguous piece stream[j*piece:(j+1)*piece].
    data = batchify(ids.long(), batch_size).to(device)

    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    state = None
    try:
        with torch.inference_mode():
            for start in range(0, piece - 1, window):
                stop = min(start + window, piece - 1)
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
