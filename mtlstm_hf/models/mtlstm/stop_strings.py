"""``generate(stop_strings=...)`` for tokenizers with a closed word vocabulary.

transformers' ``StopStringCriteria`` learns what text each token writes by encoding a probe
word (``"abcdef"``) and reading it back in front of every token. A word-level vocabulary maps
any unknown word to ``<unk>``, so the probe cannot be read back and transformers fails with
``substring not found``; no word tokenizer can pass that probe. For such tokenizers the
model's ``generate`` matches stop strings on decoded text instead
(:class:`WordStopStringCriteria`), with transformers' rule: a row stops once a stop string
ends in the text of its newest token. Tokenizers that can spell the probe keep
transformers' own criterion. This file travels to the Hub with the model; it imports only
torch and transformers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria

PROBE = "abcdef"
"""The word transformers' ``StopStringCriteria.clean_tokenizer_vocab`` encodes and reads back."""


def tokenizer_spells_unknown_words(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer`` reads :data:`PROBE` back from its tokens, as transformers'
    ``StopStringCriteria`` needs (False for a closed word vocabulary: the probe is ``<unk>``)."""
    ids: list[int] = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    tokens = cast(list[str], tokenizer.convert_ids_to_tokens(ids))  # (a list of ids: a list of tokens)
    return PROBE in tokenizer.convert_tokens_to_string(tokens)


class WordStopStringCriteria(StoppingCriteria):
    """``generate(stop_strings=...)`` for word tokenizers: stop a row once a stop string ends
    in the text of its newest token.

    transformers' own ``StopStringCriteria`` probes the vocabulary with a word that a closed
    word table maps to ``<unk>`` and fails (see the module docstring). This criterion decodes
    the last tokens of each row instead, with the tokenizer's own decoder, so it sees the text
    exactly as ``tokenizer.decode`` writes it (``" well-known"`` in WikiText). As in
    transformers, a row stops when a stop string ends inside its newest token's text
    (``"and"`` stops at the word ``and`` and at ``andrew``); a stop string inside the prompt
    alone does not stop anything, and stop strings may span several words (``"the game"``).

    This model's ``generate(stop_strings=["and"], tokenizer=tokenizer)`` uses it; with another model:
    ``model.generate(ids, stopping_criteria=[WordStopStringCriteria(tokenizer, ["and"])])``.

    Args:
        tokenizer: the word tokenizer (any tokenizer with ``decode``).
        stop_strings: one string or several; none may be empty.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_strings: str | Sequence[str]):
        self.stop_strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {stop_strings!r}")
        self.tokenizer = tokenizer
        # every token decodes to at least one character: this many tokens hold any stop string
        self._window = max(map(len, self.stop_strings)) + 1

    def _ends_in_last_token(self, row: list[int]) -> bool:
        text = cast(str, self.tokenizer.decode(row))  # (one sequence: one str)
        before = cast(str, self.tokenizer.decode(row[:-1]))
        start = 0  # where the newest token's text begins: after the common prefix
        while start < min(len(text), len(before)) and text[start] == before[start]:
            start += 1
        for stop in self.stop_strings:
            position = text.find(stop)
            while position >= 0:
                if position + len(stop) > start:
                    return True
                position = text.find(stop, position + 1)
        return False

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None, **kwargs
    ) -> torch.BoolTensor:
        tails = input_ids[:, -self._window :].tolist()
        stops = torch.tensor(
            [self._ends_in_last_token(row) for row in tails], dtype=torch.bool, device=input_ids.device
        )
        return cast(torch.BoolTensor, stops)  # (a bool tensor: what StoppingCriteria's annotation names)


class WordStopStringsMixin:
    """Gives a ``GenerationMixin`` model ``generate(stop_strings=..., tokenizer=...)`` with word
    tokenizers: stop strings go to :class:`WordStopStringCriteria` when the tokenizer cannot
    spell transformers' probe word, to transformers' ``StopStringCriteria`` otherwise."""

    def _get_stopping_criteria(
        self, generation_config: Any, stopping_criteria: Any, tokenizer: Any = None, **kwargs: Any
    ):
        stop_strings = generation_config.stop_strings
        # super(): the model's classes after this mixin in its MRO, whose GenerationMixin has the method (the mixin
        # itself has no base for mypy to find it in).
        generation = cast(Any, super())
        if stop_strings is None or tokenizer is None or tokenizer_spells_unknown_words(tokenizer):
            return generation._get_stopping_criteria(generation_config, stopping_criteria, tokenizer, **kwargs)
        without_stop_strings = copy.copy(generation_config)
        without_stop_strings.stop_strings = None
        criteria = generation._get_stopping_criteria(without_stop_strings, stopping_criteria, tokenizer, **kwargs)
        criteria.append(WordStopStringCriteria(tokenizer, stop_strings))
        return criteria
