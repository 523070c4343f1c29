"""The original model's word list, and a word-level tokenizer with the exact id of every word.

Where the word list comes from (:func:`read_vocabulary`):

* **A corpus folder** (salesforce/awd-lstm-lm, HuthLab/multi-timescale-LSTM-LMs and
  pytorch/examples ``word_language_model`` build their ``Dictionary`` while reading the corpus):
  the files of train, valid and test, in this order (``train.txt``/``valid.txt``/``test.txt``,
  or the other names :func:`mtlstm_hf.data.find_split_files` knows), each read line by line
  (Python's text mode: ``\\n``, ``\\r\\n`` and ``\\r`` end a line), each line's words
  ``line.split()`` followed by ``<eos>``; a word gets the next id the first time it is met.
  So ``<eos>`` gets its id after the first line's words (WikiText-2 starts with an empty
  line: ``<eos>`` is id 0).
* **A word-list file** (fastai's ``itos``, or any list in id order): a JSON list of words (or a
  JSON object ``word -> id``), a pickle of a list of words (``itos_wt103.pkl``, any protocol,
  recognised by its content; read with an unpickler that refuses every Python object other than
  lists and strings), or a text file with one word per line.

A word listed twice keeps its first id; each later copy gets the placeholder name
``<duplicate:ID>``, which text never produces (fastai pads its vocabulary to a multiple of 8
with copies of ``xxfake``, which its numericaliser never emits either).

The tokenizer (:func:`tokenizer_for_vocabulary`) maps each word to its original id. Special
tokens: unknown words become ``<unk>`` (or fastai's ``xxunk``), and ``<eos>`` (or ``xxeos``, or
for a fastai vocabulary without it ``xxbos``, which fastai puts between texts) ends every line
in ``mtlstm-eval``'s streams. The pad token is a token of its own, as in tokenizers that
``mtlstm_hf`` builds: the vocabulary's own (``<pad>``, fastai's ``xxpad``) where it has one (a word
of the original's table: text gives its id, as the original did), else ``<pad>`` added after the
last word (id ``V``; the converter gives the model a row for it, whose probability is 0). The
added ``<pad>`` is never read from text: ``<pad>`` in text is the unknown word, since its row
would score the target with probability 0. Padding with a word would lose that word:
``DataCollatorForLanguageModeling`` turns every label equal to the pad id into ``-100``.

Every entry must be a word the tokenizer can produce: a non-empty string without whitespace
(the tokenizer splits text on whitespace). An entry that is empty or holds whitespace (a line
of a corpus file given as a word list, spaCy's whitespace tokens in a fastai vocabulary) is
refused, naming it; renaming such an entry to a word of its own keeps every id. A UTF-8 byte
order mark at the start of a word-list file is not part of its first word. Corpus files are read
as the originals read them (Python's ``open``, UTF-8): a byte order mark there stays part of the
first word, as in the original ``Dictionary``, so that every id is the original's.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mtlstm_hf.files import PathOrStr

from ..data import EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, find_split_files, split_words, word_tokenizer_from_vocab

__all__ = [
    "EOS_CANDIDATES",
    "PAD_CANDIDATES",
    "UNK_CANDIDATES",
    "Vocabulary",
    "corpus_vocabulary",
    "read_vocabulary",
    "read_word_list",
    "tokenizer_for_vocabulary",
]


UNK_CANDIDATES: tuple[str, ...] = (UNK_TOKEN, "xxunk")
"""Words taken as the unknown-word token, the first present (override: ``unk_token``)."""
EOS_CANDIDATES: tuple[str, ...] = (EOS_TOKEN, "xxeos", "xxbos")
"""Words taken as the end-of-line token, the first present (override: ``eos_token``)."""
PAD_CANDIDATES: tuple[str, ...] = (PAD_TOKEN, "xxpad")
"""Words taken as the pad token, the first present; without one, ``<pad>`` is added as id ``V``."""

CORPUS_SPLITS = ("train", "validation", "test")


@dataclass
class Vocabulary:
    """A word list in id order.

    Attributes:
        words: ``words[i]`` is the word with id ``i`` (unique; duplicates renamed).
        source: where it came from, for messages and ``conversion.json``.
        notes: what reading it decided (renamed duplicates).
    """

    words: list[str]
    source: str
    notes: list[str]

    def __len__(self) -> int:
        return len(self.words)


def _check_word(word: object, index: int, source: str, entry: str = "entry") -> str:
    """``word`` when it is a word the tokenizer can produce: a non-empty string holding no
    whitespace (text is split on whitespace, so no text gives an entry holding some).

    Raises:
        ValueError: naming the source, the entry and its value.
    """
    if not isinstance(word, str):
        raise ValueError(f"{source}: {entry} {index} is {type(word).__name__} {word!r}, not a word (str)")
    if split_words(word) != [word]:
        what = "is empty" if word == "" else "holds whitespace"
        hint = (
            "; is this a corpus file? give the corpus as its folder"
            if len(word.split()) > 1
            else "; rename it to a word of its own (one no other entry has) to keep every id"
        )
        raise ValueError(
            f"{source}: {entry} {index} is {word!r}, which {what}: a word is a non-empty string without whitespace "
            f"(the tokenizer splits text on whitespace, so no text can produce it){hint}"
        )
    return word


def _unique(words: Sequence[object], source: str, entry: str = "entry", first: int = 0) -> Vocabulary:
    """The words in id order, each checked (:func:`_check_word`; ``entry`` and ``first`` say how to
    number them in messages: ``"line"`` from 1 for a text file); repeated words renamed."""
    seen: set[str] = set()
    unique, renamed = [], []
    for index, word in enumerate(words):
        word = _check_word(word, index + first, source, entry)
        if word in seen:
            renamed.append(word)
            word = f"<duplicate:{index}>"
        seen.add(word)
        unique.append(word)
    notes = []
    if renamed:
        kinds = sorted(set(renamed))
        notes.append(
            f"{len(renamed)} repeated entr{'y' if len(renamed) == 1 else 'ies'} ({', '.join(map(repr, kinds[:5]))}) "
            "keep the first id; the copies are named <duplicate:ID>"
        )
    if not unique:
        raise ValueError(f"{source}: the word list is empty")
    return Vocabulary(unique, source, notes)


def corpus_vocabulary(folder: PathOrStr) -> Vocabulary:
    """The ``Dictionary`` of AWD-LSTM / HuthLab / ``word_language_model`` for a corpus folder.

    Args:
        folder: holding the train, valid and test files (see the module docstring).

    Returns:
        Words in order of first occurrence over train, valid, test, with ``<eos>`` after each line.

    Raises:
        FileNotFoundError: the folder or one of the three splits is missing.
        ValueError: two candidate files for one split; a file is not UTF-8 text.
    """
    files = find_split_files(folder, CORPUS_SPLITS)
    ids: dict[str, int] = {}
    for split in CORPUS_SPLITS:
        try:
            with open(files[split], encoding="utf-8") as handle:
                for line in handle:
                    for word in line.split() + [EOS_TOKEN]:
                        if word not in ids:
                            ids[word] = len(ids)
        except UnicodeDecodeError as error:
            raise ValueError(f"{str(files[split])!r} is not UTF-8 text: {error}") from None
    names = ", ".join(files[split].name for split in CORPUS_SPLITS)
    return Vocabulary(list(ids), f"corpus {str(folder)!r} ({names})", [])


class _ListsAndStringsOnly(pickle.Unpickler):
    """An unpickler that builds only the pickle protocol's own types (lists, strings, ...):
    any class or function a pickle names is refused, so no code runs."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(
            f"the pickle names the Python object {module}.{name}; only a list of words is read"
        )


def _is_pickle(data: bytes, source: str) -> bool:
    """Whether ``data`` is a pickle: its opcodes (any protocol, the text protocol 0 included)
    parse up to a ``STOP`` that is the last byte. Nothing is built or run.

    Raises:
        ValueError: a protocol 0/1 list or tuple pickle that ends before its ``STOP`` (truncated).
    """
    if data[:1] == b"\x80":  # protocol 2+: the PROTO opcode (a damaged one is named when read)
        return True
    end = None
    try:
        for opcode, _, position in pickletools.genops(data):
            end = position if opcode.name == "STOP" else None
    except ValueError as error:
        if data[:1] in (b"(", b"]") and "unknown" not in str(error):  # valid opcodes, then the data ran out
            raise ValueError(f"{source} is a pickle that ends before its STOP opcode: it is truncated") from None
        return False
    return end == len(data) - 1


def _words_of_json(text: str, source: str) -> list[object]:
    """The word list a JSON text holds: a list in id order, or an object ``word -> id``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source} starts like JSON but is not valid JSON: {error}") from None
    if isinstance(value, dict):
        ids = list(value.values())
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or sorted(ids) != list(range(len(ids))):
            raise ValueError(
                f"{source}: a JSON object must map each word to its id, the ids being the integers 0..{len(ids) - 1}"
            )
        value = sorted(value, key=value.__getitem__)
    if not isinstance(value, list):
        raise ValueError(f"{source} holds JSON {type(value).__name__}, expected a list of words")
    return value


def read_word_list(path: PathOrStr) -> Vocabulary:
    """A word list in id order from a JSON, pickle or text file (see the module docstring).

    A UTF-8 byte order mark at the start of a JSON or text file is not part of the first word.
    A pickle is recognised by its content (any protocol), whatever the file's name.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it holds something else than a list of words (or a ``word -> id`` object
            with ids ``0..V-1``), a pickle that names Python objects, or an entry that is no
            word (not a string, empty, or holding whitespace, which no text can produce; the
            message names the entry, or the line of a text file).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--vocab {str(path)!r} does not exist")
    data = path.read_bytes()
    source = f"word list {str(path)!r}"
    if _is_pickle(data, source):
        try:
            words = _ListsAndStringsOnly(io.BytesIO(data)).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
            raise ValueError(f"{source} is a pickle that is not a plain list of words: {error}") from None
        if not isinstance(words, (list, tuple)):
            raise ValueError(f"{source} holds a pickled {type(words).__name__}, expected a list of words")
        return _unique(list(words), source)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte order mark is no part of a word
    except UnicodeDecodeError as error:
        found = (
            "UTF-16 text (its byte order mark); save it as UTF-8"
            if data[:2] in (b"\xff\xfe", b"\xfe\xff")
            else str(error)
        )
        raise ValueError(f"{source} is neither UTF-8 text nor a pickle: {found}") from None
    if text.lstrip()[:1] in ("[", "{"):
        return _unique(_words_of_json(text, source), source)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return _unique([line.removesuffix("\r") for line in lines], source, entry="line", first=1)


def read_vocabulary(path: PathOrStr) -> Vocabulary:
    """:func:`corpus_vocabulary` for a folder, :func:`read_word_list` for a file."""
    path = Path(path).expanduser()
    if path.is_dir():
        return corpus_vocabulary(path)
    return read_word_list(path)


def _special(words: Sequence[str], given: str | None, candidates: tuple[str, ...], role: str, option: str) -> str:
    present = set(words)
    if given is not None:
        if given not in present:
            raise ValueError(f"{option} {given!r} is not a word of the vocabulary")
        return given
    for candidate in candidates:
        if candidate in present:
            return candidate
    raise ValueError(
        f"the vocabulary has no {role} token (looked for {', '.join(map(repr, candidates))}); "
        f"name the word that plays that part with {option}"
    )


def tokenizer_for_vocabulary(
    vocabulary: Vocabulary,
    unk_token: str | None = None,
    eos_token: str | None = None,
    convention: str = "whitespace",
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose id of ``vocabulary.words[i]`` is ``i``.

    Args:
        vocabulary: the word list.
        unk_token, eos_token: the words for unknown words and line ends (default: the first
            of :data:`UNK_CANDIDATES` / :data:`EOS_CANDIDATES` in the vocabulary).
        convention: how text becomes words (:data:`mtlstm_hf.data.CONVENTIONS`); only when the
            special tokens are ``<unk>`` and ``<eos>``, otherwise ``"whitespace"`` (the
            corpora's files are already split into words, which every convention keeps).

    Returns:
        A ``PreTrainedTokenizerFast`` whose first ``len(vocabulary)`` ids are the words', with a pad
        token of its own: the vocabulary's (:data:`PAD_CANDIDATES`; text gives its id, as the
        original read it), else ``<pad>`` added as id ``len(vocabulary)`` (then ``len(tokenizer) ==
        len(vocabulary) + 1``; text never gives it: ``<pad>`` in text is the unknown word);
        ``word_convention`` recorded in ``tokenizer_config.json``.

    Raises:
        ValueError: a special token is missing or not in the vocabulary; another convention
            than ``"whitespace"`` with other special tokens; a word that is not a non-empty
            string without whitespace.
    """
    words = vocabulary.words
    for index, word in enumerate(words):
        _check_word(word, index, vocabulary.source)
    unk = _special(words, unk_token, UNK_CANDIDATES, "unknown-word", "--unk-token")
    eos = _special(words, eos_token, EOS_CANDIDATES, "end-of-line", "--eos-token")
    if unk == eos:
        raise ValueError(f"the unknown-word and end-of-line tokens must differ, both are {unk!r}")
    present = set(words)
    own_pad = next(
        (candidate for candidate in PAD_CANDIDATES if candidate in present and candidate not in (unk, eos)), None
    )
    table = list(words) if own_pad is not None else [*words, PAD_TOKEN]
    pad = PAD_TOKEN if own_pad is None else own_pad
    if (unk, eos, pad) == (UNK_TOKEN, EOS_TOKEN, PAD_TOKEN):
        return word_tokenizer_from_vocab(table, convention, pad_is_word=own_pad is not None)
    if convention != "whitespace":
        raise ValueError(
            f"--tokenizer-convention {convention!r} needs the special tokens {UNK_TOKEN!r} and {EOS_TOKEN!r}; "
            f"this vocabulary uses {unk!r} and {eos!r}: use 'whitespace'"
        )
    # The whitespace tokenizer of mtlstm_hf.data, with this vocabulary's own special words. An added
    # <pad> is no word of the table (text gives the unknown word for it); add_special_tokens gives it id V.
    backend = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.Replace(Regex("^"), " ")  # a space before every word (GPT-2's convention)
    # The unknown-word token is a word, not a named special token (see word_tokenizer_from_vocab).
    eos_added, pad_added = (AddedToken(token, single_word=True, normalized=False, special=True) for token in (eos, pad))
    backend.add_special_tokens([eos_added, pad_added])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos_added,
        pad_token=pad_added,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
        word_convention="whitespace",
        **({"split_special_tokens": True} if own_pad is None else {}),  # text never gives the added <pad>
    )
