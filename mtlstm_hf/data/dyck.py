"""The Dyck-2 formal language task of Mahto et al. (ICLR 2021, section 5).

Words are balanced strings over two bracket types, ``(`` ``)`` and ``[`` ``]``, drawn from the
probabilistic context-free grammar of the paper (and of the authors' ``create_dyckn.py``,
github HuthLab/multi-timescale-LSTM-LMs)::

    S -> ( S )     probability p_0 = 0.25
    S -> [ S ]     probability p_1 = 0.25
    S -> S S       probability q   = 0.25
    S -> (empty)   probability 1 - p_0 - p_1 - q = 0.25

expanded leftmost first with one uniform draw per expansion (the bracket type is read from the
same draw, as the reference does). A derivation is abandoned as soon as the brackets it has
placed exceed ``max_length`` symbols (200 in the paper; the reference's ``max_length`` counts
both brackets of a pair), and the empty word is discarded (the reference's ``min_length=2``).
Abandoning a derivation early never changes the probability of a word that fits: a
derivation of a word of ``n <= max_length`` symbols never holds more than ``n`` brackets.

Distinct words are collected in the order first drawn until the three splits can be filled,
then shuffled and cut into train / validation / test (10,000 / 2,000 / 5,000 by default), as
the reference's set of unique samples is permuted and divided. With these probabilities the
grammar is critical (each ``S`` has on average one ``S`` child), so lengths are heavy-tailed
and the cap matters.

Per symbol, the target is the bracket type on top of the stack *after* that symbol, a 2-bit
one-hot (bit ``k`` for bracket type ``k``: ``(`` is type 0, ``[`` type 1), all zero when the
stack is empty. The reference encodes the same information as ``2**k`` written in binary, so its
column 0 is type 1 and column 1 type 0: the columns are swapped relative to ours.

The longest span of a word is the largest ``close - open + 1`` over its matching pairs (in
symbols, both brackets included: ``"()"`` has span 2), the maximum of the reference's
``compute_timescales``.

Randomness comes only from ``numpy.random.Generator(PCG64(seed)).random()`` (uniform doubles,
whose stream numpy keeps stable across platforms); the shuffle is a Fisher-Yates walk on the
same stream. The same arguments therefore give the same splits on any machine.

This module depends on numpy and torch only (not on the model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models.mtlstm.checks import check_int_at_least, is_number

BRACKETS: tuple[tuple[str, str], ...] = (("(", ")"), ("[", "]"))
"""The two bracket types, ``(opening, closing)``; the index is the bracket type."""

SYMBOL_IDS: dict[str, int] = {"(": 0, ")": 1, "[": 2, "]": 3}
"""Input id of each symbol (the reference's vocabulary order)."""

PAD_ID: int = 4
"""Input id of padding; the vocabulary has ``VOCAB_SIZE = 5`` ids."""

VOCAB_SIZE: int = 5

NUM_LABELS: int = 2
"""Width of the per-symbol target: one bit per bracket type."""

IGNORE_INDEX: int = -100
"""Label value of padded positions (transformers' convention)."""

PAPER_BRACKET_PROBABILITIES: tuple[float, float] = (0.25, 0.25)
PAPER_CONCATENATION_PROBABILITY: float = 0.25
PAPER_MAX_LENGTH: int = 200
PAPER_SPLIT_SIZES: dict[str, int] = {"train": 10_000, "validation": 2_000, "test": 5_000}
"""The paper's grammar and sizes (Mahto et al., ICLR 2021, arXiv 2009.12727, section 5)."""

_OPENING = {opening: kind for kind, (opening, _) in enumerate(BRACKETS)}
_CLOSING = {closing: kind for kind, (_, closing) in enumerate(BRACKETS)}
_S = -1  # the nonterminal on the derivation stack; closing brackets are stored as their type
_BLOCK = 4096  # uniform doubles fetched at a time (the stream is the same whatever the block)


def check_grammar(
    bracket_probabilities: Sequence[float], concatenation_probability: float
) -> tuple[float, float, float]:
    """Validate the grammar's probabilities; returns ``(p_0, p_1, q)`` as floats.

    Raises:
        ValueError: ``bracket_probabilities`` is not two numbers ``>= 0`` with a positive sum,
            ``concatenation_probability`` is not a number ``>= 0``, or ``p_0 + p_1 + q >= 1``
            (the empty rule needs a positive probability, else no derivation ends).
    """
    if isinstance(bracket_probabilities, (str, bytes)) or not isinstance(bracket_probabilities, Sequence):
        raise ValueError(
            f"bracket_probabilities must be two numbers >= 0 (one per bracket type), got {bracket_probabilities!r}."
        )
    values = list(bracket_probabilities)
    if len(values) != 2 or not all(is_number(p) and math.isfinite(p) and p >= 0 for p in values) or sum(values) <= 0:
        raise ValueError(
            f"bracket_probabilities must be two finite numbers >= 0 with a positive sum (one per bracket type), "
            f"got {bracket_probabilities!r}."
        )
    q = concatenation_probability
    if not (is_number(q) and math.isfinite(q) and q >= 0):
        raise ValueError(f"concatenation_probability must be a finite number >= 0, got {q!r}.")
    if sum(values) + q >= 1.0:
        raise ValueError(
            f"bracket_probabilities and concatenation_probability must sum to less than 1 (the rest is the "
            f"probability of S -> empty), got {sum(values)} + {q} = {sum(values) + q}."
        )
    return float(values[0]), float(values[1]), float(q)


def _check_int(name: str, value: object, minimum: int) -> int:
    return check_int_at_least(value, name, minimum)


class _Uniforms:
    """The uniform doubles of ``Generator(PCG64(seed))``, one at a time."""

    def __init__(self, seed: int) -> None:
        self.generator = np.random.Generator(np.random.PCG64(seed))
        self.block: list[float] = []
        self.position = 0

    def next(self) -> float:
        if self.position == len(self.block):
            self.block = self.generator.random(_BLOCK).tolist()
            self.position = 0
        value = self.block[self.position]
        self.position += 1
        return value


def _draw_word(uniforms: _Uniforms, p0: float, p_brackets: float, p_grow: float, max_length: int) -> str | None:
    """One leftmost derivation; ``None`` when its brackets exceed ``max_length`` symbols."""
    stack = [_S]  # what is still to be produced, next item last
    out: list[str] = []
    placed = 0  # symbols of the brackets placed so far, emitted or pending
    while stack:
        item = stack.pop()
        if item != _S:
            out.append(BRACKETS[item][1])
            continue
        u = uniforms.next()
        if u < p_brackets:
            kind = 0 if u < p0 else 1
            placed += 2
            if placed > max_length:
                return None
            out.append(BRACKETS[kind][0])
            stack.append(kind)  # the closing bracket, after the inner S
            stack.append(_S)
        elif u < p_grow:
            stack.append(_S)
            stack.append(_S)
    return "".join(out)


def sample_dyck_words(
    num_draws: int,
    seed: int = 0,
    *,
    max_length: int = PAPER_MAX_LENGTH,
    bracket_probabilities: Sequence[float] = PAPER_BRACKET_PROBABILITIES,
    concatenation_probability: float = PAPER_CONCATENATION_PROBABILITY,
) -> list[str | None]:
    """Raw draws from the grammar: ``num_draws`` items, each a word (``""`` for the empty word,
    duplicates kept) or ``None`` for a derivation abandoned for exceeding ``max_length``.

    :func:`generate_dyck2` builds its splits from exactly this stream (same ``seed``). Meant
    for checking the distribution against the grammar.

    Raises:
        ValueError: a bad probability (:func:`check_grammar`), ``num_draws < 0`` or ``max_length < 2``.
    """
    p0, p1, q = check_grammar(bracket_probabilities, concatenation_probability)
    num_draws = _check_int("num_draws", num_draws, 0)
    max_length = _check_int("max_length", max_length, 2)
    seed = _check_int("seed", seed, 0)
    uniforms = _Uniforms(seed)
    return [_draw_word(uniforms, p0, p0 + p1, p0 + p1 + q, max_length) for _ in range(num_draws)]


def count_dyck2_words(max_length: int) -> int:
    """Number of distinct non-empty Dyck-2 words of at most ``max_length`` symbols:
    ``sum_{n=1}^{max_length // 2} Catalan(n) * 2**n`` (exact integer).

    Raises:
        ValueError: ``max_length < 0``.
    """
    max_length = _check_int("max_length", max_length, 0)
    return sum(math.comb(2 * n, n) // (n + 1) * 2**n for n in range(1, max_length // 2 + 1))


@dataclass
class Dyck2Data:
    """The three splits of :func:`generate_dyck2` and how they were made.

    Attributes:
        splits: ``{"train": [...], "validation": [...], "test": [...]}``, words as strings.
        seed, max_length, bracket_probabilities, concatenation_probability: the arguments.
        sizes: the requested split sizes, ``{"train": n, "validation": n, "test": n}``.
        num_draws: raw derivations drawn (accepted, empty, duplicate or abandoned).
    """

    splits: dict[str, list[str]]
    seed: int
    max_length: int
    bracket_probabilities: tuple[float, float]
    concatenation_probability: float
    sizes: dict[str, int]
    num_draws: int

    def __getitem__(self, split: str) -> list[str]:
        return self.splits[split]


def generate_dyck2(
    seed: int = 0,
    *,
    num_train: int = PAPER_SPLIT_SIZES["train"],
    num_validation: int = PAPER_SPLIT_SIZES["validation"],
    num_test: int = PAPER_SPLIT_SIZES["test"],
    max_length: int = PAPER_MAX_LENGTH,
    bracket_probabilities: Sequence[float] = PAPER_BRACKET_PROBABILITIES,
    concatenation_probability: float = PAPER_CONCATENATION_PROBABILITY,
    max_draws: int | None = None,
) -> Dyck2Data:
    """Distinct Dyck-2 words from the paper's grammar, split into train / validation / test.

    Words are the non-empty draws of :func:`sample_dyck_words` (same ``seed``), kept the first
    time each appears until ``num_train + num_validation + num_test`` distinct words exist;
    these are shuffled (Fisher-Yates on the same uniform stream) and cut in that order. No word
    is in two splits. The paper's sizes take under a second on this project's CPU (68,028 draws).

    Args:
        seed: integer >= 0; the same arguments give the same splits on any machine.
        num_train, num_validation, num_test: split sizes, integers >= 0 (at least one > 0).
        max_length: longest word in symbols (>= 2; words have even lengths).
        bracket_probabilities: ``(p_0, p_1)``, probabilities of ``S -> ( S )`` and ``S -> [ S ]``.
        concatenation_probability: ``q``, probability of ``S -> S S``.
        max_draws: give up after this many raw derivations (default ``100 * total + 100_000``).

    Returns:
        :class:`Dyck2Data`.

    Raises:
        ValueError: a bad probability or size; more words requested than there are distinct
            non-empty Dyck-2 words of at most ``max_length`` symbols (:func:`count_dyck2_words`);
            or ``max_draws`` derivations did not yield enough distinct words (naming both).
    """
    p0, p1, q = check_grammar(bracket_probabilities, concatenation_probability)
    seed = _check_int("seed", seed, 0)
    sizes = {
        "train": _check_int("num_train", num_train, 0),
        "validation": _check_int("num_validation", num_validation, 0),
        "test": _check_int("num_test", num_test, 0),
    }
    max_length = _check_int("max_length", max_length, 2)
    total = sum(sizes.values())
    if total == 0:
        raise ValueError("num_train, num_validation and num_test are all 0: ask for at least one word.")
    available = count_dyck2_words(max_length)
    if total > available:
        raise ValueError(
            f"num_train + num_validation + num_test = {total} distinct words requested, but only {available} "
            f"non-empty Dyck-2 words have at most max_length={max_length} symbols; allowed: at most {available} "
            f"(or a larger max_length)."
        )
    if max_draws is None:
        max_draws = 100 * total + 100_000
    max_draws = _check_int("max_draws", max_draws, 1)

    uniforms = _Uniforms(seed)
    seen: dict[str, None] = {}  # insertion-ordered set
    draws = 0
    while len(seen) < total:
        if draws == max_draws:
            raise ValueError(
                f"max_draws={max_draws} derivations gave only {len(seen)} distinct words of the {total} requested "
                f"(max_length={max_length}); allowed: fewer words, a larger max_length or a larger max_draws."
            )
        word = _draw_word(uniforms, p0, p0 + p1, p0 + p1 + q, max_length)
        draws += 1
        if word:  # None (abandoned) and "" (empty) are not kept
            seen.setdefault(word, None)
    words = list(seen)
    for index in range(len(words) - 1, 0, -1):  # Fisher-Yates on the same stream
        other = min(int(uniforms.next() * (index + 1)), index)
        words[index], words[other] = words[other], words[index]
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = words[start : start + size]
        start += size
    return Dyck2Data(
        splits=splits,
        seed=seed,
        max_length=max_length,
        bracket_probabilities=(p0, p1),
        concatenation_probability=q,
        sizes=dict(sizes),
        num_draws=draws,
    )


def _check_word(word: object) -> str:
    if not isinstance(word, str) or not word:
        raise ValueError(f"word must be a non-empty string of the symbols ( ) [ ], got {word!r}.")
    return word


def word_list(words: Iterable[str], name: str = "words") -> list[str]:
    """``words`` as a list, refusing one string (or bytes) given where a list of words is expected:
    iterated, ``'(())'`` would be four one-symbol words (each reported unbalanced).

    Raises:
        ValueError: naming ``name``, when ``words`` is a string or bytes, or not iterable.
    """
    if isinstance(words, (str, bytes)):
        raise ValueError(f"{name} must be a list of words, got the single string {words!r}; write [{words!r}].")
    try:
        return list(words)
    except TypeError:
        raise ValueError(f"{name} must be a list of words (strings of ( ) [ ]), got {type(words).__name__}.") from None


def stack_top_targets(word: str) -> np.ndarray:
    """Per symbol, the bracket type on top of the stack after it, as a 2-bit one-hot.

    Args:
        word: a balanced word over ``( ) [ ]``.

    Returns:
        ``(len(word), 2)`` float32; row ``t`` has a 1 in column ``k`` when an opening bracket of
        type ``k`` is on top of the stack after symbol ``t``, all zeros when the stack is empty.

    Raises:
        ValueError: ``word`` is empty, has another symbol, or is not balanced (naming the position).
    """
    word = _check_word(word)
    targets = np.zeros((len(word), NUM_LABELS), dtype=np.float32)
    stack: list[int] = []
    for position, symbol in enumerate(word):
        if symbol in _OPENING:
            stack.append(_OPENING[symbol])
        elif symbol in _CLOSING:
            if not stack or stack[-1] != _CLOSING[symbol]:
                raise ValueError(
                    f"word is not a balanced Dyck-2 word: {symbol!r} at position {position} matches nothing."
                )
            stack.pop()
        else:
            raise ValueError(f"word must contain only ( ) [ ], got {symbol!r} at position {position}.")
        if stack:
            targets[position, stack[-1]] = 1.0
    if stack:
        raise ValueError(f"word is not a balanced Dyck-2 word: {len(stack)} bracket(s) left open.")
    return targets


def longest_span(word: str) -> int:
    """The largest ``close - open + 1`` over the matching pairs of ``word``, in symbols
    (both brackets counted: ``"()"`` gives 2, ``"(())"`` 4, ``"()[]"`` 2).

    Raises:
        ValueError: as :func:`stack_top_targets`.
    """
    word = _check_word(word)
    stack_top_targets(word)  # validates
    longest, opened = 0, []
    for position, symbol in enumerate(word):
        if symbol in _OPENING:
            opened.append(position)
        else:
            longest = max(longest, position - opened.pop() + 1)
    return longest


def encode_word(word: str) -> list[int]:
    """Input ids of ``word`` (:data:`SYMBOL_IDS`). Raises ``ValueError`` for another symbol."""
    word = _check_word(word)
    try:
        return [SYMBOL_IDS[symbol] for symbol in word]
    except KeyError as error:
        raise ValueError(f"word must contain only ( ) [ ], got {error.args[0]!r}.") from None


def collate_dyck(words: Iterable[str]) -> dict[str, torch.Tensor]:
    """A right-padded batch of words for a token classification model.

    Returns:
        ``input_ids (B, T)`` int64 (padding :data:`PAD_ID`), ``attention_mask (B, T)`` int64
        (1 for symbols), ``labels (B, T, 2)`` float32 (:func:`stack_top_targets`; padding
        :data:`IGNORE_INDEX`), where ``T`` is the longest word's length.

    Raises:
        ValueError: a single string instead of a list of words (:func:`word_list`), no words, or a
            word that is not a balanced Dyck-2 word.
    """
    words = word_list(words)
    if not words:
        raise ValueError("words must hold at least one word.")
    steps = max(len(_check_word(word)) for word in words)
    input_ids = torch.full((len(words), steps), PAD_ID, dtype=torch.int64)
    attention_mask = torch.zeros((len(words), steps), dtype=torch.int64)
    labels = torch.full((len(words), steps, NUM_LABELS), float(IGNORE_INDEX), dtype=torch.float32)
    for row, word in enumerate(words):
        input_ids[row, : len(word)] = torch.tensor(encode_word(word))
        attention_mask[row, : len(word)] = 1
        labels[row, : len(word)] = torch.from_numpy(stack_top_targets(word))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


__all__ = [
    "BRACKETS",
    "Dyck2Data",
    "IGNORE_INDEX",
    "NUM_LABELS",
    "PAD_ID",
    "PAPER_BRACKET_PROBABILITIES",
    "PAPER_CONCATENATION_PROBABILITY",
    "PAPER_MAX_LENGTH",
    "PAPER_SPLIT_SIZES",
    "SYMBOL_IDS",
    "VOCAB_SIZE",
    "check_grammar",
    "collate_dyck",
    "count_dyck2_words",
    "encode_word",
    "generate_dyck2",
    "longest_span",
    "sample_dyck_words",
    "stack_top_targets",
    "word_list",
]
