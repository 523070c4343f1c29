"""The Dyck-2 generator (mtlstm_hf.data.dyck) against oracles written here: a stack walk for
targets and spans, brute-force enumeration for the word count, and the grammar's exact
probabilities (inside probabilities of single words, the distribution of the number of pairs)
for the raw draws."""

from __future__ import annotations

import hashlib
import itertools
import math
from functools import cache

import numpy as np
import pytest
import torch

from mtlstm_hf.data.dyck import (
    IGNORE_INDEX,
    PAD_ID,
    SYMBOL_IDS,
    collate_dyck,
    count_dyck2_words,
    encode_word,
    generate_dyck2,
    longest_span,
    sample_dyck_words,
    stack_top_targets,
)

P_BRACKET, Q = 0.25, 0.25  # the paper's grammar: p for each bracket type, q for S -> S S
EMPTY = 1 - 2 * P_BRACKET - Q  # S -> empty


# ----------------------------------------------------------------------------- oracles


def oracle_walk(word: str) -> tuple[bool, list[list[int]], int]:
    """(balanced, per-symbol one-hot of the stack top after it, longest close-open+1)."""
    pairs = {")": "(", "]": "["}
    stack: list[tuple[str, int]] = []
    tops, longest = [], 0
    for position, symbol in enumerate(word):
        if symbol in "([":
            stack.append((symbol, position))
        elif symbol in pairs:
            if not stack or stack[-1][0] != pairs[symbol]:
                return False, [], 0
            longest = max(longest, position - stack.pop()[1] + 1)
        else:
            return False, [], 0
        top = stack[-1][0] if stack else None
        tops.append([1 if top == "(" else 0, 1 if top == "[" else 0])
    return not stack, tops, longest


def balanced(word: str) -> bool:
    return bool(word) and oracle_walk(word)[0]


# The probability that S derives the empty word: E = EMPTY + Q * E**2, the smaller root.
P_EMPTY_WORD = (1 - math.sqrt(1 - 4 * Q * EMPTY)) / (2 * Q)


@cache
def inside(word: str) -> float:
    """P(S =>* word) under the grammar (any length), by the inside recursion; S -> S S with one
    empty side gives word again, so P(word) = (rest) / (1 - 2 Q E)."""
    if word == "":
        return P_EMPTY_WORD
    total = 0.0
    if (word[0], word[-1]) in (("(", ")"), ("[", "]")):
        total += P_BRACKET * inside(word[1:-1])
    total += Q * sum(inside(word[:i]) * inside(word[i:]) for i in range(1, len(word)))
    return total / (1 - 2 * Q * P_EMPTY_WORD)


def pair_count_distribution(max_pairs: int) -> list[float]:
    """a[k] = P(the derived word has k bracket pairs), k = 0..max_pairs (types summed)."""
    a = [P_EMPTY_WORD]
    for k in range(1, max_pairs + 1):
        splits = sum(a[i] * a[k - i] for i in range(1, k))
        a.append((2 * P_BRACKET * a[k - 1] + Q * splits) / (1 - 2 * Q * P_EMPTY_WORD))
    return a


def test_oracles_agree_with_each_other():
    """The inside probabilities of all words with k pairs sum to the pair-count distribution."""
    a = pair_count_distribution(3)
    assert P_EMPTY_WORD == pytest.approx(2 - math.sqrt(3))
    for k in (1, 2, 3):
        words = ["".join(w) for w in itertools.product("()[]", repeat=2 * k) if balanced("".join(w))]
        assert sum(inside(w) for w in words) == pytest.approx(a[k], rel=1e-12)


# ----------------------------------------------------------------------------- targets, spans


@pytest.mark.parametrize(
    "word, tops, span",
    [
        ("()", [[1, 0], [0, 0]], 2),
        ("[]", [[0, 1], [0, 0]], 2),
        ("([])[]", [[1, 0], [0, 1], [1, 0], [0, 0], [0, 1], [0, 0]], 4),
        ("[(())]", [[0, 1], [1, 0], [1, 0], [1, 0], [0, 1], [0, 0]], 6),
        ("()[]()", [[1, 0], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], 2),
    ],
)
def test_targets_and_span_of_given_words(word, tops, span):
    assert stack_top_targets(word).tolist() == tops
    assert stack_top_targets(word).dtype == np.float32
    assert longest_span(word) == span
    assert encode_word(word) == [SYMBOL_IDS[s] for s in word]


def test_targets_and_spans_match_the_oracle_on_every_short_word():
    words = ["".join(w) for n in (2, 4, 6) for w in itertools.product("()[]", repeat=n)]
    checked = 0
    for word in words:
        ok, tops, span = oracle_walk(word)
        if ok:
            assert stack_top_targets(word).tolist() == tops, word
            assert longest_span(word) == span, word
            checked += 1
        else:
            with pytest.raises(ValueError, match="word"):
                stack_top_targets(word)
    assert checked == count_dyck2_words(6) == 50


@pytest.mark.parametrize("bad", ["", "(", ")(", "(]", "([)]", "(a)", None, 3])
def test_bad_words_are_refused(bad):
    with pytest.raises(ValueError, match="word"):
        stack_top_targets(bad)
    with pytest.raises(ValueError, match="word"):
        longest_span(bad)


def test_count_matches_brute_force():
    for max_length in range(0, 9):
        brute = sum(balanced("".join(w)) for n in range(1, max_length + 1) for w in itertools.product("()[]", repeat=n))
        assert count_dyck2_words(max_length) == brute, max_length


# ----------------------------------------------------------------------------- the splits


def test_splits_sizes_unique_balanced_and_capped():
    data = generate_dyck2(7, num_train=300, num_validation=60, num_test=150, max_length=40)
    assert {name: len(words) for name, words in data.splits.items()} == {"train": 300, "validation": 60, "test": 150}
    assert data.sizes == {"train": 300, "validation": 60, "test": 150}
    everything = [word for words in data.splits.values() for word in words]
    assert len(set(everything)) == len(everything)  # unique, so also no word in two splits
    for word in everything:
        assert balanced(word) and 2 <= len(word) <= 40, word
    assert data.num_draws >= len(everything)


def test_same_seed_same_splits_and_other_seed_other_splits():
    first = generate_dyck2(3, num_train=200, num_validation=50, num_test=100, max_length=40)
    again = generate_dyck2(3, num_train=200, num_validation=50, num_test=100, max_length=40)
    other = generate_dyck2(4, num_train=200, num_validation=50, num_test=100, max_length=40)
    assert first.splits == again.splits and first.num_draws == again.num_draws
    assert first.splits != other.splits
    # Pinned: the stream is numpy's PCG64 doubles, the same on every machine.
    digest = hashlib.sha256("|".join(first["train"] + first["validation"] + first["test"]).encode()).hexdigest()
    assert digest == PINNED_DIGEST


PINNED_DIGEST = "74f3f12dad746874c147e4849f3db4d2e8b6e39f368b88afa6c04d9388ef40ad"


def test_splits_are_a_shuffle_of_the_first_distinct_draws():
    """The splits hold exactly the first distinct non-empty raw draws, in shuffled order."""
    data = generate_dyck2(5, num_train=100, num_validation=20, num_test=30, max_length=30)
    raw = sample_dyck_words(data.num_draws, 5, max_length=30)
    distinct = list(dict.fromkeys(word for word in raw if word))
    assert len(distinct) == 150 and raw[-1] and raw[-1] not in raw[:-1]  # the last draw completed the set
    assert sorted(data["train"] + data["validation"] + data["test"]) == sorted(distinct)
    assert data["train"] + data["validation"] + data["test"] != distinct  # shuffled


def test_every_word_under_a_short_cap():
    """With max_length=4 there are 10 words; asking for all of them returns exactly them."""
    data = generate_dyck2(0, num_train=6, num_validation=2, num_test=2, max_length=4)
    words = {"".join(w) for n in (2, 4) for w in itertools.product("()[]", repeat=n) if balanced("".join(w))}
    assert set(data["train"] + data["validation"] + data["test"]) == words


def test_raw_draws_follow_the_grammar():
    """Frequencies of the raw draws vs the grammar's exact probabilities (at most 4.5 standard
    errors apart at this fixed seed): empty word, abandoned derivations, pair counts, single words
    and the two bracket types."""
    n, max_length = 20_000, 40
    draws = sample_dyck_words(n, 11, max_length=max_length)
    a = pair_count_distribution(max_length // 2)

    def close(count: int, probability: float) -> None:
        standard_error = math.sqrt(probability * (1 - probability) / n)
        assert abs(count / n - probability) < 4.5 * standard_error + 1e-12, (count / n, probability)

    close(sum(word is None for word in draws), 1 - sum(a))
    words = [word for word in draws if word is not None]
    for k in range(0, 6):
        close(sum(len(word) == 2 * k for word in words), a[k])
    for word in ("()", "[]", "()()", "(())", "([])", "[]()", "(()[])"):
        close(words.count(word), inside(word))
    assert all(balanced(word) and len(word) <= max_length for word in words if word)
    opening = "".join(words)
    assert abs(opening.count("(") - opening.count("[")) < 4.5 * math.sqrt(opening.count("(") + opening.count("["))


def test_paper_sizes_lengths_and_spans():
    """The default splits (the paper's): sizes, the 200-symbol cap reached, spans inside it."""
    data = generate_dyck2(0)
    assert [len(data[name]) for name in ("train", "validation", "test")] == [10_000, 2_000, 5_000]
    lengths = [len(word) for word in data["test"]]
    assert max(lengths) <= 200 and max(lengths) >= 190
    spans = [longest_span(word) for word in data["test"][:500]]
    assert all(2 <= span <= length for span, length in zip(spans, lengths))


# ----------------------------------------------------------------------------- batches


def test_collate_pads_and_marks_padding():
    words = ["([])", "()"]
    batch = collate_dyck(words)
    assert batch["input_ids"].tolist() == [[0, 2, 3, 1], [0, 1, PAD_ID, PAD_ID]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].shape == (2, 4, 2) and batch["labels"].dtype == torch.float32
    assert batch["labels"][0].tolist() == oracle_walk("([])")[1]
    assert batch["labels"][1, :2].tolist() == oracle_walk("()")[1]
    assert (batch["labels"][1, 2:] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="words"):
        collate_dyck([])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bracket_probabilities=(0.5, 0.3)), "sum to less than 1"),
        (dict(bracket_probabilities=(0.25,)), "bracket_probabilities"),
        (dict(bracket_probabilities=(-0.1, 0.25)), "bracket_probabilities"),
        (dict(bracket_probabilities=(0.0, 0.0)), "bracket_probabilities"),
        (dict(bracket_probabilities="ab"), "bracket_probabilities"),
        (dict(concatenation_probability=-0.5), "concatenation_probability"),
        (dict(concatenation_probability=float("nan")), "concatenation_probability"),
        (dict(concatenation_probability=0.6), "sum to less than 1"),
        (dict(max_length=1), "max_length"),
        (dict(num_train=-1), "num_train"),
        (dict(num_test=2.5), "num_test"),
        (dict(num_train=0, num_validation=0, num_test=0), "at least one"),
        (dict(num_train=8, num_validation=2, num_test=1, max_length=4), r"11 distinct words requested, but only 10"),
        (dict(num_train=40, num_validation=5, num_test=5, max_length=8, max_draws=100), "max_draws=100"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, message):
    sizes = dict(num_train=10, num_validation=2, num_test=2, max_length=20)
    with pytest.raises(ValueError, match=message):
        generate_dyck2(**{**sizes, **kwargs})
