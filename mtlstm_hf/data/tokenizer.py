"""Word-level tokenizer for PTB / WikiText style corpora.

The corpora are already tokenized: a token is exactly a whitespace-separated
word, and rare words were replaced by ``<unk>`` upstream. So the tokenizer is
a plain word -> id table (``tokenizers`` ``WordLevel`` model behind a
``WhitespaceSplit`` pre-tokenizer), wrapped as a
:class:`transformers.PreTrainedTokenizerFast` so that ``save_pretrained`` /
``AutoTokenizer.from_pretrained`` work with no custom code.

Design decisions
----------------
* **Where ``<eos>`` is appended.** Not here. The tokenizer has no
  post-processor: ``tokenizer(line)`` gives the line's words only. The corpus
  loader (:func:`mtlstm_hf.data.corpus.encode_lines`) appends one ``<eos>``
  per line. Why: a prompt passed to ``generate()`` must not silently end with
  a line break, and the one-``<eos>``-per-line rule is a property of the
  corpus format, not of the vocabulary.
* **Vocabulary order.** ``<unk>`` = 0 and ``<eos>`` = 1, then every other word
  by descending count in the training text, ties broken by first occurrence.
  Frequency order keeps the ids usable for a frequency-split (adaptive)
  softmax, and the first-occurrence tie-break is the order in which the
  classic AWD-LSTM ``Dictionary`` meets the words, so the result does not
  depend on hashing or on the platform.
* **Padding.** ``pad_token`` is ``<eos>``. Adding a ``<pad>`` entry would change
  the published vocabulary sizes (10,000 / 33,278) and the embedding shape;
  padded positions are always masked by ``attention_mask``, so reusing
  ``<eos>`` is harmless. ``padding_side`` is ``"left"``, what batched
  generation with a recurrent (decoder-only) model needs.
* No ``bos_token``: the corpora have none.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Union

import datasets
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .corpus import dataset_lines, read_lines

UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"
SPECIAL_TOKENS = (UNK_TOKEN, EOS_TOKEN)  # ids 0 and 1, in this order

PathOrStr = Union[str, os.PathLike]
TrainingText = Union[PathOrStr, Iterable[PathOrStr], Iterable[str], datasets.Dataset]

# Python's str.split() also splits on the ASCII separators \x1c-\x1f; the
# tokenizers WhitespaceSplit pre-tokenizer (Rust char::is_whitespace) does not.
# Counting must split exactly like the tokenizer, or the vocabulary would hold
# words the tokenizer can never produce.
_PYTHON_ONLY_SEPARATORS = re.compile("[\x1c-\x1f]")
_WORD = re.compile("(?:[^\\s]|[\x1c-\x1f])+")


def split_words(line: str) -> list[str]:
    """Split ``line`` into words exactly as the tokenizer's pre-tokenizer does."""
    if _PYTHON_ONLY_SEPARATORS.search(line) is None:
        return line.split()  # fast path, identical on all other text
    return _WORD.findall(line)


def count_words(lines: Iterable[str]) -> Counter[str]:
    """Count tokens with the corpus convention: words of each line + one ``<eos>``.

    Returns:
        A ``Counter`` whose insertion order is the order of first occurrence.
    """
    counts: Counter[str] = Counter()
    num_lines = 0
    for line in lines:
        counts.update(split_words(line))
        num_lines += 1
    counts[EOS_TOKEN] += num_lines
    return counts


def build_vocab(
    counts: Counter[str], max_vocab_size: int | None = None, min_count: int = 1
) -> dict[str, int]:
    """Turn word counts into a ``word -> id`` table.

    Order: ``<unk>``, ``<eos>``, then descending count, ties by the insertion
    order of ``counts`` (first occurrence for :func:`count_words`). The two
    special tokens are always kept and count towards ``max_vocab_size``.

    Args:
        counts: word counts.
        max_vocab_size: largest vocabulary size, special tokens included;
            ``None`` for no limit. Words cut off map to ``<unk>``.
        min_count: words seen fewer times are left out (map to ``<unk>``).
    """
    if max_vocab_size is not None and max_vocab_size < len(SPECIAL_TOKENS):
        raise ValueError(
            f"max_vocab_size must be at least {len(SPECIAL_TOKENS)} "
            f"(for {', '.join(SPECIAL_TOKENS)}), got {max_vocab_size}"
        )
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    # sorted() is stable, so equal counts keep their first-occurrence order.
    for word, count in sorted(counts.items(), key=lambda item: -item[1]):
        if max_vocab_size is not None and len(vocab) >= max_vocab_size:
            break
        if count < min_count:
            break  # counts are descending: nothing after this qualifies
        if word not in vocab:
            vocab[word] = len(vocab)
    return vocab


def word_tokenizer_from_vocab(vocab: Mapping[str, int] | Sequence[str]) -> PreTrainedTokenizerFast:
    """Wrap a word table as a ``PreTrainedTokenizerFast``.

    Args:
        vocab: ``word -> id`` mapping or a sequence of words (id = position).
            Must contain ``<unk>`` and ``<eos>``; ids must be ``0..V-1``.
    """
    if not isinstance(vocab, Mapping):
        vocab = {word: index for index, word in enumerate(vocab)}
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise ValueError(f"vocabulary lacks the special token(s) {missing}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("vocabulary ids must be exactly 0..len(vocab)-1, each once")

    backend = Tokenizer(models.WordLevel(dict(vocab), unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # single_word=True: "<unk>" glued inside a word ("foo<unk>") stays part of
    # that word, as with str.split(), instead of being cut out of it.
    unk, eos = (
        AddedToken(token, single_word=True, normalized=False, special=True)
        for token in SPECIAL_TOKENS
    )
    backend.add_special_tokens([unk, eos])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=unk,
        eos_token=eos,
        pad_token=eos,
        padding_side="left",
        clean_up_tokenization_spaces=False,  # decode = words joined by spaces
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids
    )


def _iter_training_lines(files_or_lines: TrainingText) -> Iterator[str]:
    """Lines from a path, several ``os.PathLike`` paths, a split, or an iterable of lines."""
    if isinstance(files_or_lines, datasets.Dataset):
        yield from ("" if line is None else line for line in dataset_lines(files_or_lines))
        return
    if isinstance(files_or_lines, (str, os.PathLike)):
        yield from read_lines(files_or_lines)
        return
    items = iter(files_or_lines)
    first = next(items, None)
    if first is None:
        return
    if isinstance(first, os.PathLike):
        for path in chain([first], items):
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"expected only paths, got {type(path).__name__}")
            yield from read_lines(path)
    else:
        for line in chain([first], items):
            if not isinstance(line, str):
                raise TypeError(f"expected lines of text (str), got {type(line).__name__}")
            yield line


def build_word_tokenizer(
    files_or_lines: TrainingText,
    max_vocab_size: int | None = None,
    min_count: int = 1,
) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer from a training split.

    Args:
        files_or_lines: what to count, one of
            * a ``str`` or ``os.PathLike``: one text file (one line per row);
            * a ``datasets.Dataset`` split from :func:`load_corpus` (its
              ``"text"`` column);
            * an iterable whose first item is an ``os.PathLike``
              (e.g. ``[Path("a.txt"), Path("b.txt")]``): several files;
            * any other iterable of ``str`` (list, generator, a
              ``datasets`` column): the lines themselves.
              (So a *list of str* means lines; wrap paths in ``Path``.)
        max_vocab_size: see :func:`build_vocab`.
        min_count: see :func:`build_vocab`.

    Returns:
        The tokenizer; on PTB train it has 10,000 entries, on WikiText-2 train
        33,278 (``<unk>`` and ``<eos>`` included).

    Raises:
        FileNotFoundError: a file is missing. ValueError: a file is empty or
        there are no lines at all.
    """
    counts = count_words(_iter_training_lines(files_or_lines))
    if counts[EOS_TOKEN] == 0:
        raise ValueError("build_word_tokenizer got no lines of text to count")
    return word_tokenizer_from_vocab(build_vocab(counts, max_vocab_size, min_count))
