"""Fixed-length token blocks for ``transformers.Trainer`` (the recipe of transformers'
``run_clm``): every line tokenized with one ``<eos>`` at its end (the corpus convention),
the lines of a split concatenated and cut into blocks.

Each block is an independent example that starts from the zero recurrent state: the
Trainer shuffles blocks, so no state can be carried between them (the state-carrying,
AWD-LSTM style batches are :func:`batching.batchify` and :class:`batching.BPTTIterator`).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import datasets


def causal_lm_blocks(corpus: datasets.DatasetDict, tokenizer: Any, block_size: int) -> datasets.DatasetDict:
    """Token blocks of every split: columns ``input_ids``, ``attention_mask`` (all ones) and
    ``labels`` (the inputs; the model shifts them), each a list of ``block_size`` ids. The
    tail of a split shorter than a block is dropped.

    Args:
        corpus: splits with a ``text`` column (one line per row, ``None`` or ``""`` allowed).
        tokenizer: a tokenizer with ``eos_token_id`` (e.g. :func:`tokenizer.build_word_tokenizer`).
        block_size: tokens per block, a positive int.

    Raises:
        ValueError: ``block_size`` is not a positive int, the tokenizer has no ``<eos>``, or a
            split has fewer than ``block_size`` tokens (naming the split).
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token: line ends cannot be marked.")

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer([line or "" for line in batch["text"]], add_special_tokens=False)["input_ids"]
        return {"input_ids": [ids + [eos] for ids in encoded]}

    def group(batch: dict[str, list]) -> dict[str, list]:
        ids = list(chain.from_iterable(batch["input_ids"]))
        usable = (len(ids) // block_size) * block_size
        blocks = [ids[start : start + block_size] for start in range(0, usable, block_size)]
        return {
            "input_ids": blocks,
            "attention_mask": [[1] * block_size for _ in blocks],
            "labels": [list(b) for b in blocks],
        }

    tokenized = corpus.map(tokenize, batched=True, remove_columns=["text"])
    # One map batch per split, so no tokens are lost between batches (these corpora are small).
    grouped = tokenized.map(group, batched=True, batch_size=None)
    for split, dataset in grouped.items():
        if len(dataset) == 0:
            raise ValueError(
                f"block_size={block_size} is longer than the {split!r} split ({len(tokenized[split])} lines)."
            )
    return grouped
