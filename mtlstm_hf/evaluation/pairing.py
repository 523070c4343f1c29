"""Whether two models can be compared target by target: the same token streams from the same text.

A paired comparison (:func:`~mtlstm_hf.evaluation.checkpoint.compare_checkpoints`,
``mtlstm-eval --compare``) sets each model's log-probability of target ``t`` against the
other's, and bins both by one table of word counts. That holds only when the two tokenizers
turn the text into the same ids, which an equal word -> id table does not guarantee: two
tokenizers with one vocabulary but other word conventions (``"wikitext"`` splits ``city,`` into
``city ,``, ``"whitespace"`` keeps it one unknown word) give streams of other lengths and other
targets. :func:`check_same_token_streams` refuses such a pair, naming where they first differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["check_same_token_streams", "first_difference"]


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """The first position where the 1-D streams ``a`` and ``b`` differ, ``None`` when they are equal.

    A stream that is a proper prefix of the other differs at its own length.
    """
    common = min(a.numel(), b.numel())
    differing = torch.nonzero(a[:common] != b[:common])
    if differing.numel():
        return int(differing[0, 0])
    return None if a.numel() == b.numel() else common


def _token_at(stream: torch.Tensor, position: int, tokenizer: Any) -> str:
    """``'word' (id N)`` at ``position``, or ``the end of the stream``."""
    if position >= stream.numel():
        return f"the end of the stream ({stream.numel()} tokens)"
    token_id = int(stream[position])
    return f"{tokenizer.convert_ids_to_tokens(token_id)!r} (id {token_id})"


def _convention(tokenizer: Any) -> str:
    return repr(getattr(tokenizer, "init_kwargs", {}).get("word_convention", "not recorded"))


def check_same_token_streams(
    streams: Sequence[Mapping[str, torch.Tensor]],
    names: Sequence[str],
    tokenizers: Sequence[Any],
    eos_token_id: int | None = None,
) -> None:
    """Raise unless two tokenizers gave the same token stream for every piece of text.

    Args:
        streams: two mappings ``{what: (N,) int64 stream}`` with the same keys, one per model,
            e.g. ``{"the test split": ..., "the train split (word counts of the bins)": ...}``.
        names: the two models, for the message (their folders).
        tokenizers: the two tokenizers (to show the words and the word conventions).
        eos_token_id: the line end, to give the line of the first difference (optional).

    Raises:
        ValueError: one line naming both models, the text, the first position (from 0) where the
            streams differ with its line, the token each gave there, and both word conventions.
    """
    first, second = streams
    for what, stream_a in first.items():
        stream_b = second[what]
        position = first_difference(stream_a, stream_b)
        if position is None:
            continue
        line = "" if eos_token_id is None else f", line {int((stream_a[:position] == eos_token_id).sum()) + 1}"
        token_a, token_b = _token_at(stream_a, position, tokenizers[0]), _token_at(stream_b, position, tokenizers[1])
        raise ValueError(
            f"{names[0]} and {names[1]} give different token streams for {what} ({stream_a.numel()} and "
            f"{stream_b.numel()} tokens): they first differ at position {position}{line}, where {names[0]} has "
            f"{token_a} and {names[1]} has {token_b} "
            f"(word conventions {_convention(tokenizers[0])} and {_convention(tokenizers[1])}); a paired comparison "
            "needs both models to score the same targets: evaluate each alone, or compare models whose tokenizers "
            "split the text alike"
        )
