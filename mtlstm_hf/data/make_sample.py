"""Cut the embedded WikiText-2 sample from a full WikiText-2 (v1, tokenized) copy.

Usage::

    python -m mtlstm_hf.data.make_sample /path/to/wikitext-2 [--out DIR]

``/path/to/wikitext-2`` holds ``train.txt``/``valid.txt``/``test.txt`` (or
``wiki.train.tokens``/...). The output (default: the package's
``wikitext2_sample/``) gets ``train.txt``, ``valid.txt`` and ``test.txt``.

Rule (deterministic): each output file is the longest prefix of the source
split made of *whole articles* whose UTF-8 size, line breaks included, stays
within the split's byte budget (at least one article). An article starts at
a title line ``" = Title = "`` (one ``=`` on each side) that has an empty line
(``" "``) before and after it; the empty line before the title belongs to the
article. This rule finds exactly 600 / 60 / 60 articles in WikiText-2, the
published numbers; lines such as ``" = Goals ; A = "`` inside tables do not
count. Nothing is changed inside the kept lines, so each sample file is a
byte-for-byte prefix of the source file.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

from .corpus import find_split_files, read_lines, sample_corpus_dir

# Byte budget per split (UTF-8, line breaks included): about 335 KB in all.
SAMPLE_BYTE_BUDGETS = {"train": 256 * 1024, "validation": 64 * 1024, "test": 64 * 1024}
SAMPLE_FILE_NAMES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
EMPTY_LINE = " "  # WikiText writes an empty line as a single space


def is_article_title(lines: Sequence[str], index: int) -> bool:
    """Whether ``lines[index]`` is an article title (see the module docstring)."""
    line = lines[index]
    return (
        line.startswith(" = ")
        and not line.startswith(" = = ")  # section headings have 2+ "="
        and line.endswith(" = ")
        and index >= 1
        and lines[index - 1] == EMPTY_LINE
        and index + 1 < len(lines)
        and lines[index + 1] == EMPTY_LINE
    )


def article_starts(lines: Sequence[str]) -> list[int]:
    """Index of the first line of each article (the empty line before its title)."""
    return [index - 1 for index in range(len(lines)) if is_article_title(lines, index)]


def cut_whole_articles(lines: Sequence[str], max_bytes: int) -> list[str]:
    """Longest prefix of whole articles within ``max_bytes`` (at least one article)."""
    starts = article_starts(lines)
    if not starts or starts[0] != 0:
        raise ValueError("the text does not start with an article title; is it WikiText?")
    ends = starts[1:] + [len(lines)]
    cut = ends[0]  # always keep the first article
    size = sum(len(line.encode("utf-8")) + 1 for line in lines[:cut])
    for start, end in zip(starts[1:], ends[1:]):
        article_bytes = sum(len(line.encode("utf-8")) + 1 for line in lines[start:end])
        if size + article_bytes > max_bytes:
            break
        size += article_bytes
        cut = end
    return list(lines[:cut])


def make_sample(source_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the sample files; returns ``{split: written path}``."""
    out = Path(out_dir) if out_dir is not None else sample_corpus_dir()
    out.mkdir(parents=True, exist_ok=True)
    sources = find_split_files(source_dir, list(SAMPLE_BYTE_BUDGETS))
    written = {}
    for split, budget in SAMPLE_BYTE_BUDGETS.items():
        lines = cut_whole_articles(read_lines(sources[split]), budget)
        path = out / SAMPLE_FILE_NAMES[split]
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("".join(line + "\n" for line in lines))
        written[split] = path
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", help="folder with the full WikiText-2 (v1) splits")
    parser.add_argument("--out", default=None, help="output folder (default: the packaged sample)")
    args = parser.parse_args(argv)
    for split, path in make_sample(args.source_dir, args.out).items():
        data = path.read_bytes()
        lines = data.decode("utf-8").split("\n")[:-1]
        tokens = sum(len(line.split()) + 1 for line in lines)
        print(
            f"{split}: {path}  articles={len(article_starts(lines))} lines={len(lines)} "
            f"bytes={len(data)} tokens={tokens} sha256={hashlib.sha256(data).hexdigest()}"
        )


if __name__ == "__main__":
    main()
