"""Corpus loading (local PTB/WikiText files or a Hub dataset) and token streams.

Every corpus comes out as a :class:`datasets.DatasetDict` with one string
column, ``"text"``, one row per line of the corpus, and split names
``"train"``, ``"validation"``, ``"test"`` (the Hub convention; ``"valid"``,
``"val"`` and ``"dev"`` are accepted as aliases wherever a split is named).

A split becomes one flat token stream with :func:`split_to_stream`: the words
of each line followed by one ``<eos>``, so an empty line is just ``<eos>``.
This is the only place where ``<eos>`` is appended (the tokenizer itself adds
nothing), and it reproduces the published token counts, e.g. PTB
929,589 / 73,760 / 82,430 and WikiText-2 2,088,628 / 217,646 / 245,569.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch

from mtlstm_hf.files import PathOrStr

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


TEXT_COLUMN = "text"  # the one column of every corpus load_corpus returns
CANONICAL_SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
# Column names tried, in order, when text_column is not given:
# "text" (wikitext), "sentence" (ptb_text_only).
DEFAULT_TEXT_COLUMNS = ("text", "sentence")
# File names looked for in a corpus directory; {stem} is a split name or alias.
# Covers pytorch/examples (train.txt), WikiText zips (wiki.train.tokens / .raw)
# and Mikolov's simple-examples (ptb.train.txt).
SPLIT_FILE_PATTERNS = ("{stem}.txt", "wiki.{stem}.tokens", "wiki.{stem}.raw", "ptb.{stem}.txt")

SAMPLE_CORPUS_DIRNAME = "wikitext2_sample"


def sample_corpus_dir() -> Path:
    """Directory of the embedded WikiText-2 sample (train/valid/test.txt).

    A few whole articles of each WikiText-2 split (CC BY-SA 3.0, see the
    README.md there); small enough for examples, tests and smoke runs.
    """
    return Path(__file__).resolve().parent / SAMPLE_CORPUS_DIRNAME


def canonical_split(name: str) -> str:
    """Map a split name or alias ("valid", "dev", ...) to train/validation/test."""
    try:
        return SPLIT_ALIASES[name]
    except KeyError:
        raise ValueError(
            f"unknown split name {name!r}; use one of {', '.join(CANONICAL_SPLITS)} "
            f"(aliases: {', '.join(k for k in SPLIT_ALIASES if k not in CANONICAL_SPLITS)})"
        ) from None


def not_utf8_message(path: str | os.PathLike, what: str = "corpus file") -> str | None:
    """One line saying where ``path`` stops being UTF-8 text (byte, offset, line) and what to
    do, or ``None`` when it is UTF-8. Reads the whole file."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return (
            f"{what} {str(path)!r} is not UTF-8 text: byte 0x{raw[error.start]:02x} at offset {error.start} "
            f"(line {line}): {error.reason}; convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8) or give "
            "the text file meant"
        )
    return None


def read_lines(path: PathOrStr) -> list[str]:
    """Read a text file as a list of lines (UTF-8, line breaks removed).

    A trailing line break does not make an extra empty line; every other
    empty line is kept (it is one ``<eos>`` in the token stream).

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: the file is empty (0 bytes), or is not UTF-8 text (naming the file, the line
            and the byte offset of the first byte that is not).
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"corpus file {str(path)!r} {what}")
    # newline=None: \r\n and \r become \n, so CRLF files split the same way.
    try:
        with open(path, encoding="utf-8", newline=None) as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise ValueError(not_utf8_message(path) or f"corpus file {str(path)!r}: {error}") from None
    if not text:
        raise ValueError(f"corpus file {str(path)!r} is empty")
    lines = text.split("\n")  # not splitlines(): it also breaks on \x1c, \u2028, ...
    if lines[-1] == "":
        lines.pop()
    return lines


def find_split_files(directory: PathOrStr, splits: Sequence[str] | None = None) -> dict[str, Path]:
    """Find the file of each split in a corpus directory.

    Args:
        directory: folder holding e.g. ``train.txt``/``valid.txt``/``test.txt``
            or ``wiki.train.tokens``/... or ``ptb.train.txt``/...
        splits: the splits required (names or aliases); ``None`` = whichever of
            train/validation/test exist (at least one must).

    Returns:
        ``{canonical split name: path}``.

    Raises:
        FileNotFoundError: the directory, a required split or every split is
        missing. ValueError: unknown split name, or two candidate files for
        one split.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"corpus directory {str(directory)!r} does not exist")
    wanted = list(CANONICAL_SPLITS) if splits is None else [canonical_split(s) for s in splits]
    found: dict[str, Path] = {}
    for split in dict.fromkeys(wanted):  # de-duplicate, keep order
        stems = [alias for alias, target in SPLIT_ALIASES.items() if target == split]
        candidates = [
            directory / pattern.format(stem=stem)
            for pattern in SPLIT_FILE_PATTERNS
            for stem in stems
            if (directory / pattern.format(stem=stem)).is_file()
        ]
        if len(candidates) > 1:
            raise ValueError(
                f"several files for split {split!r} in {str(directory)!r}: "
                f"{', '.join(p.name for p in candidates)}; pass a dict split -> path instead"
            )
        if candidates:
            found[split] = candidates[0]
        elif splits is not None:
            names = [pattern.format(stem=stem) for pattern in SPLIT_FILE_PATTERNS for stem in stems]
            raise FileNotFoundError(
                f"no file for split {split!r} in {str(directory)!r} (looked for {', '.join(names)})"
            )
    if not found:
        raise FileNotFoundError(
            f"no corpus files in {str(directory)!r}: expected e.g. train.txt, valid.txt, "
            "test.txt or wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens"
        )
    return found


def _looks_like_local_path(source: str) -> bool:
    """A string that can only be meant as a file system path, not a Hub id."""
    return (
        source.startswith(("/", "./", "../", "~", "\\"))
        or os.path.splitext(source)[1] in {".txt", ".tokens", ".raw"}
        or (os.name == "nt" and ":" in source)
    )


def _load_local(files: Mapping[str, PathOrStr]) -> datasets.DatasetDict:
    """Build the corpus from ``{split: path}`` (split names or aliases)."""
    corpus = {}
    for split, path in files.items():
        split = canonical_split(split)
        if split in corpus:
            raise ValueError(f"split {split!r} given twice (aliases of one another)")
        corpus[split] = datasets.Dataset.from_dict({TEXT_COLUMN: read_lines(path)})
    if not corpus:
        raise ValueError("no corpus files given (empty mapping)")
    return datasets.DatasetDict(corpus)


def resolve_text_column(column_names: Sequence[str], text_column: str | None = None) -> str:
    """Choose the text column among ``column_names``.

    ``text_column`` if given; else the first of ``DEFAULT_TEXT_COLUMNS``
    present; else the only column if there is exactly one.

    Raises:
        ValueError: naming the columns that exist.
    """
    columns = list(column_names)
    if text_column is not None:
        if text_column not in columns:
            raise ValueError(f"no column {text_column!r} in the corpus; its columns are {columns}")
        return text_column
    for candidate in DEFAULT_TEXT_COLUMNS:
        if candidate in columns:
            return candidate
    if len(columns) == 1:
        return columns[0]
    raise ValueError(
        f"cannot tell which column holds the text: none of {list(DEFAULT_TEXT_COLUMNS)} "
        f"among the corpus columns {columns}; pass text_column=..."
    )


def _normalize_dataset_dict(loaded: datasets.DatasetDict, text_column: str | None) -> datasets.DatasetDict:
    """Keep only the text column, renamed ``"text"``; canonical split names."""
    corpus = {}
    for split, dataset in loaded.items():
        column = resolve_text_column(dataset.column_names, text_column)
        dataset = dataset.select_columns([column])
        if column != TEXT_COLUMN:
            dataset = dataset.rename_column(column, TEXT_COLUMN)
        corpus[SPLIT_ALIASES.get(split, split)] = dataset  # keep unusual split names as they are
    return datasets.DatasetDict(corpus)


def _load_hub(
    name: str, config_name: str | None, text_column: str | None, load_dataset_kwargs: dict[str, Any]
) -> datasets.DatasetDict:
    """``datasets.load_dataset`` (all splits), then :func:`_normalize_dataset_dict`."""
    for unsupported in ("split", "streaming"):
        if unsupported in load_dataset_kwargs:
            raise ValueError(f"load_corpus does not take {unsupported}=; use splits=... instead")
    loaded = datasets.load_dataset(name, config_name, **load_dataset_kwargs)
    if not isinstance(loaded, datasets.DatasetDict):
        raise TypeError(f"expected a DatasetDict from load_dataset({name!r}), got {type(loaded).__name__}")
    return _normalize_dataset_dict(loaded, text_column)


def load_corpus(
    source: PathOrStr | Mapping[str, PathOrStr] | datasets.DatasetDict,
    config_name: str | None = None,
    *,
    text_column: str | None = None,
    splits: Sequence[str] | None = None,
    **load_dataset_kwargs: Any,
) -> datasets.DatasetDict:
    """Load a line-per-row language-modelling corpus.

    Args:
        source: one of
            * a dict ``{split: path}`` of local text files;
            * a ``datasets.DatasetDict`` already loaded (only normalized);
            * a local directory with ``train.txt``/``valid.txt``/``test.txt``
              (or ``wiki.train.tokens``, ``ptb.train.txt``, ... names);
            * a Hub dataset id, loaded with ``datasets.load_dataset``, e.g.
              ``"ptb-text-only/ptb_text_only"`` (column ``"sentence"``) or
              ``"wikitext"`` with ``config_name="wikitext-2-v1"`` (``"text"``).
            A string is a local path if it exists or looks like one (starts
            with ``/``, ``.``, ``~`` or ends in ``.txt``/``.tokens``/``.raw``);
            otherwise it is a Hub id.
        config_name: Hub dataset configuration (``load_dataset``'s ``name``).
        text_column: Hub column holding the text; default: ``"text"``, else
            ``"sentence"``, else the only column. Local files have no columns
            (each line is a row), so it must be ``None`` or ``"text"`` there.
        splits: splits to keep (names or aliases); ``None`` = all there are.
        **load_dataset_kwargs: passed to ``datasets.load_dataset`` (Hub only),
            e.g. ``revision=``, ``cache_dir=``.

    Returns:
        ``DatasetDict`` keyed by ``"train"``/``"validation"``/``"test"`` with a
        single string column ``"text"``, one row per corpus line.

    Raises:
        FileNotFoundError: missing directory, file or split file.
        ValueError: empty file, unknown split, no text column (the message
            names the columns that exist).
    """
    if isinstance(source, datasets.DatasetDict):  # already loaded: only normalize
        if config_name is not None or load_dataset_kwargs:
            raise ValueError("config_name and load_dataset keyword arguments apply to Hub datasets only")
        corpus = _normalize_dataset_dict(source, text_column)
        return corpus if splits is None else _select_splits(corpus, splits)
    is_local = isinstance(source, (Mapping, os.PathLike)) or (
        isinstance(source, str) and (os.path.exists(source) or _looks_like_local_path(source))
    )
    if is_local:
        if text_column not in (None, TEXT_COLUMN):
            raise ValueError(
                f"text_column={text_column!r} applies to Hub datasets; local text files "
                f"have one row per line in the column {TEXT_COLUMN!r}"
            )
        if config_name is not None or load_dataset_kwargs:
            raise ValueError("config_name and load_dataset keyword arguments apply to Hub datasets only")
        if isinstance(source, Mapping):
            files = dict(source)
        else:
            path = Path(source).expanduser()
            if not path.exists():
                raise FileNotFoundError(
                    f"corpus path {str(source)!r} does not exist (a local path, not a Hub dataset id)"
                )
            if path.is_file():
                raise ValueError(f"{str(path)!r} is a single file; pass a directory or a dict like {{'train': path}}")
            files = find_split_files(path, splits)
        corpus = _load_local(files)
    else:
        corpus = _load_hub(str(source), config_name, text_column, load_dataset_kwargs)
    return corpus if splits is None else _select_splits(corpus, splits)


def _select_splits(corpus: datasets.DatasetDict, splits: Sequence[str]) -> datasets.DatasetDict:
    return datasets.DatasetDict({canonical_split(s): get_split(corpus, s) for s in splits})


def get_split(corpus: datasets.DatasetDict, split: str) -> datasets.Dataset:
    """``corpus[split]`` accepting aliases, with an error naming the splits there are."""
    key = split if split in corpus else SPLIT_ALIASES.get(split)
    if key not in corpus:
        raise ValueError(f"unknown split {split!r}; the corpus has splits {list(corpus.keys())}")
    return corpus[key]


def dataset_lines(dataset: datasets.Dataset) -> list[str | None]:
    """The ``"text"`` column of one split as a Python list, in row order.

    Through Arrow in one call: iterating ``dataset["text"]`` row by row is
    about 50x slower.
    """
    if TEXT_COLUMN not in dataset.column_names:
        raise ValueError(f"no column {TEXT_COLUMN!r} in the dataset; its columns are {dataset.column_names}")
    return dataset.with_format("arrow")[TEXT_COLUMN].to_pylist()


def encode_lines(
    lines: Iterable[str | None], tokenizer: PreTrainedTokenizerBase, batch_size: int = 8192
) -> torch.Tensor:
    """Tokenize lines into one flat stream, one ``<eos>`` after each line.

    Args:
        lines: lines of text (``None`` counts as an empty line).
        tokenizer: a tokenizer with an ``eos_token``; it must not add special
            tokens of its own (called with ``add_special_tokens=False``).
        batch_size: lines per batched call to the Rust tokenizer.

    Returns:
        LongTensor of shape ``(num_tokens,)``, ``num_tokens`` = words + lines.
    """
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no eos_token; it is needed to end each line")
    # Batched Rust encoding; encode_batch_fast skips offset tracking.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    encode_fast = getattr(backend, "encode_batch_fast", None)

    def encode_batch(batch: list[str]) -> list[list[int]]:
        if encode_fast is not None:
            return [encoding.ids for encoding in encode_fast(batch, add_special_tokens=False)]
        return tokenizer(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]

    eos = [eos_id]
    pieces: list[list[int]] = []
    line_iter = iter(lines)
    while batch := ["" if line is None else line for line in islice(line_iter, batch_size)]:
        pieces.extend(ids + eos for ids in encode_batch(batch))
    # C-level flatten; no per-token Python code.
    return torch.from_numpy(np.fromiter(chain.from_iterable(pieces), dtype=np.int64))


def split_to_stream(corpus: datasets.DatasetDict, split: str, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Token stream of one split: LongTensor ``(num_tokens,)``, see :func:`encode_lines`."""
    return encode_lines(dataset_lines(get_split(corpus, split)), tokenizer)
