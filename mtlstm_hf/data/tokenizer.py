"""Word-level tokenizer for PTB / WikiText style corpora.

The tokenizer is a word -> id table (``tokenizers`` ``WordLevel``; rare words
were replaced by ``<unk>`` upstream) behind a *convention* that says how a
line of text becomes words, wrapped as a
:class:`transformers.PreTrainedTokenizerFast` so that ``save_pretrained`` /
``AutoTokenizer.from_pretrained`` work with no custom code.

Conventions
-----------
A convention is a normalizer, a pre-tokenizer and a decoder of the
``tokenizers`` backend, built only from that library's own components
(``Replace``, ``Lowercase``, a regular-expression ``Split``, ``Fuse``, ...).
It is therefore saved inside ``tokenizer.json`` and ``AutoTokenizer`` reproduces
it anywhere; its name is saved as ``word_convention`` in
``tokenizer_config.json`` (read it back with :func:`get_word_convention`).

``"whitespace"``
    A word is a whitespace-separated run of characters; no normalizer, no
    decoder. This is the tokenizer every version before conventions built,
    down to the same ``tokenizer.json``: ``"city,"`` is one word (``<unk>``).

``"wikitext"`` (WikiText-2/-103, Merity et al. 2016, as its ``.tokens`` files are written)
    Normalizer: a hyphen between two letters or digits becomes `` @-@ ``
    (``well-known`` -> ``well @-@ known``); a comma or a period between digits
    becomes `` @,@ `` / `` @.@ `` (``1,000`` -> ``1 @,@ 000``, ``3.5`` ->
    ``3 @.@ 5``); the comma only when the digits after it do not run into
    letters (``1,000th`` stays whole, as in the corpus). Pre-tokenizer, one regular expression read left to
    right; no character other than whitespace is ever dropped:

    * a word is a run of letters, digits and combining marks, which may hold
      periods (``Media.Vision``, ``1.e4``) and digit commas (``1,000th``) and
      may end in one hyphen (``second-``, as in "second- and third-rate");
    * a final period stays on the word when the word holds another period
      (``U.S.``, ``e.g.``), is one Latin letter (``J.``), is one of
      :data:`WIKITEXT_ABBREVIATIONS` (``Mr.``, ``St.``, ``No.``, ...), or when
      the next word starts with a lower-case letter (the corpus rule:
      ``Inc. said``); otherwise it is a word of its own (``large .``);
    * an apostrophe or backtick followed by a letter or digit starts a word:
      ``city's`` -> ``city 's``, ``don't`` -> ``don 't``, ``O'Brien`` ->
      ``O 'Brien``, and a single letter between apostrophes stays whole
      (``'n'roll``);
    * ``<unk>`` / ``<formula>``, the markers ``@-@ @,@ @.@``, runs of periods
      (``...``) and of hyphens (``--``) are words; every other character
      (punctuation, symbols) is a word of its own: ``city,`` -> ``city ,``.

    Decoder: `` @-@ ``, `` @,@ ``, `` @.@ `` are joined back (``well-known``,
    ``1,000``, ``3.5``); all other words are joined with spaces (see
    *Decoding* below for the space before the first word).

``"ptb"`` (Mikolov's Penn Treebank: lower case, numbers as ``N``, punctuation removed)
    Normalizer, in this order: a standalone ``N`` is kept as the number
    placeholder; lower case; typographic quotes become ASCII ones; ``%``
    becomes ``N`` (the corpus writes "5%" as ``N N``) and ``£`` becomes ``#``
    (the Treebank's pound sign); ``/`` and ``*`` get the Treebank's escapes
    ``\\/`` and ``\\*``; a number (digits with ``.``/``,`` separators, a leading
    ``.5``, or a fraction ``1/2``) that is not part of a word such as
    ``30-year`` or ``1980s`` becomes ``N``. Pre-tokenizer:

    * a word is a run of letters and digits, which may hold ``-``, ``.``,
      ``&``, ``\\/`` and ``'`` between them (``snack-food``, ``s&p``,
      ``o'brien``, ``calif.-based``) and may end in ``$`` (``us$``);
    * clitics are split as in the Treebank: ``don't`` -> ``do n't``,
      ``can't`` -> ``ca n't``, ``'s 're 've 'm 'll 'd``; ``'80s`` stays whole;
    * a final period stays on a word that is one letter, holds another period
      (``u.s.``) or is one of :data:`PTB_ABBREVIATIONS` (``mr.``, ``inc.``,
      ``calif.``, ``no.``, ...); any other period is removed;
    * ``$ & # '`` and ``\\*`` are words; the punctuation the corpus removed,
      ``. , ; : ? ! " ( ) [ ] { } - -- ` … – —``, is dropped; every other
      character is a word of its own.

    Decoder: words joined with spaces (see *Decoding* below).
    Example: ``The 1,000 cats don't sleep.`` -> ``the N cats do n't sleep``.

**The invariant.** On text already in a corpus's form, its convention gives
exactly the words of whitespace splitting, so the vocabulary and the id
streams the models train on do not depend on the convention. The tests check
this on every line of WikiText-2 and PTB (train, valid, test) and of the
embedded sample. The abbreviation lists are what that requires: ``<unk>`` is
a word the rules cannot see past (an added token splits the text before the
pre-tokenizer runs), so abbreviations that the corpora keep before ``<unk>``
(``No.``, ``Inc.``, ``var.``, ``lit.``, ...) are listed instead of left to
the next-word rule. Where raw text therefore differs from what the corpus
would have: a listed word keeps its period at the end of a sentence
(WikiText ``No.``, ``lit. Valkyria`` where the corpus has ``lit .``; PTB
``no.``, ``ill.``, ``mass.``: lower case hides that ``Ill.`` was Illinois);
an opening single quote stays on its word (WikiText ``'Hello'`` ->
``'Hello`` ``'``), because the corpus has words like ``'Brien`` after a
space; typographic apostrophes are punctuation in WikiText, as in the corpus
(``don’t`` -> ``don ’ t``), but apostrophes in PTB.

**Choosing the convention** (:func:`build_word_tokenizer`, ``convention="auto"``,
see :func:`detect_word_convention`): ``"wikitext"`` if a word ``@-@``, ``@,@``
or ``@.@`` occurs in the training text; ``"ptb"`` if the word ``N`` occurs and
no word has an upper-case letter, is a plain number or is punctuation that PTB
removes; ``ValueError`` if both hold; ``"whitespace"`` if neither does (the
text is taken as already split into words, the rule of a tokenizer that records no convention).
Counting for the vocabulary uses the chosen convention's own normalizer and
pre-tokenizer, so the vocabulary holds only words the tokenizer can produce.

Design decisions
----------------
* **Where ``<eos>`` is appended.** By default not here: ``tokenizer(line)``
  gives the line's words only, and the corpus loader
  (:func:`mtlstm_hf.data.corpus.encode_lines`) appends one ``<eos>`` per line.
  Why: a prompt passed to ``generate()`` must not silently end with a line
  break, and the one-``<eos>``-per-line rule is a property of the corpus
  format. ``build_word_tokenizer(..., add_eos=True)`` builds a tokenizer whose
  ``tokenizer(text)`` appends ``<eos>`` to each text (transformers'
  ``add_eos_token``, a post-processor saved in ``tokenizer.json``), for the
  ``datasets.map`` + ``DataCollatorForLanguageModeling`` recipe;
  ``encode_lines`` calls the tokenizer with ``add_special_tokens=False``, so
  its streams get one ``<eos>`` per line with either tokenizer.
* **Vocabulary order.** ``<unk>`` = 0 and ``<eos>`` = 1, then every other word
  by descending count in the training text, ties broken by first occurrence.
  Frequency order keeps the ids usable for a frequency-split (adaptive)
  softmax, and the first-occurrence tie-break is the order in which the
  classic AWD-LSTM ``Dictionary`` meets the words, so the result does not
  depend on hashing or on the platform.
* **Padding.** New tokenizers have their own pad token ``<pad>`` with the
  *last* id (the size of the word table), so every word keeps the id it had
  and ``<eos>`` is never padding (``DataCollatorForLanguageModeling`` turns
  the pad token's labels into -100: with pad = ``<eos>`` it silently dropped
  every line end). The consequence: ``len(tokenizer)`` is one more than the
  published sizes (10,001 for PTB, 33,279 for WikiText-2, whose word tables
  still hold 10,000 / 33,278 entries with ``<unk>`` and ``<eos>``), and so is
  the model's ``vocab_size``, which training takes from ``len(tokenizer)``.
  Tokenizers of the earlier format, without ``<pad>`` (and ``build_word_tokenizer(...,
  add_pad_token=False)``, ``word_tokenizer_from_vocab`` on a table without
  ``<pad>``) keep ``pad_token`` = ``<eos>``; padded positions are masked by
  ``attention_mask`` either way. ``padding_side`` is ``"left"``, what batched
  generation with a recurrent (decoder-only) model needs.
  **``<pad>`` is never read from text**: ``tokenizer("the <pad> game")`` gives
  ``<unk>`` for it, as for any word outside the table (it is no word of the
  corpus: :func:`build_word_tokenizer` refuses training text that has it). A
  pad id in the middle of an input would be a row the model never learnt, and
  the collator would drop its label. transformers matches special tokens in
  text by default (BERT's ``[PAD]``); these tokenizers are saved with
  ``split_special_tokens=True`` instead, so text is split by the convention
  alone: ``<eos>`` in text still gives its id (it is a word of the table, the
  corpora's line end), ``"(<eos>)"`` is one word as ``str.split`` counts it.
  Tokenizers of the earlier format read ``<pad>`` in text as padding.
* **Decoding.** New tokenizers decode every word with a space before it, the
  first one too (``decode(ids) == " the game was"``), GPT-2's convention: a
  decoded continuation can then be appended to its prompt, which is what
  ``pipeline("text-generation")`` does (prompt + decoded new tokens; without
  the space the first new word was glued on: ``"the game wasand"``). Decode
  then encode still gives the ids back (leading spaces are ignored).
  Tokenizers of the earlier format, and ``space_prefix=False``, decode without it.
* **Stop strings.** transformers' ``StopStringCriteria`` finds each token's
  text by encoding the probe word ``"abcdef"`` and reading it back, which a
  closed word table cannot do (``<unk>``; ``substring not found``). The
  model's ``generate(stop_strings=..., tokenizer=...)`` therefore matches stop
  strings on decoded text for such tokenizers
  (``mtlstm_hf.models.mtlstm.stop_strings``); with another model, pass
  ``stopping_criteria=[mtlstm_hf.WordStopStringCriteria(tokenizer, [...])]``.
* No ``bos_token``: the corpora have none.

Sources: S. Merity et al., "Pointer Sentinel Mixture Models" (2016) and the
WikiText files; T. Mikolov's ``simple-examples`` PTB files (RNNLM toolkit) and
M. Marcus et al., "Building a Large Annotated Corpus of English: The Penn
Treebank" (1993); the rules above were derived from the corpus files in
``../shared/data`` (see its README) and are checked against them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from itertools import chain
from typing import TypeAlias

import datasets
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from mtlstm_hf.files import PathOrStr

from .corpus import dataset_lines, read_lines

logger = logging.getLogger(__name__)

UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"
PAD_TOKEN = "<pad>"  # new tokenizers only: the LAST id (= the size of the word table), see build_word_tokenizer
SPECIAL_TOKENS = (UNK_TOKEN, EOS_TOKEN)  # ids 0 and 1, in this order

CONVENTIONS = ("whitespace", "wikitext", "ptb")  # what a tokenizer can have
AUTO_CONVENTION = "auto"  # build_word_tokenizer only: detect from the training text
CONVENTION_CONFIG_KEY = "word_convention"  # the name's key in tokenizer_config.json

TrainingText: TypeAlias = PathOrStr | Iterable[PathOrStr] | Iterable[str] | datasets.Dataset

# Python's str.split() also splits on the ASCII separators \x1c-\x1f; the
# tokenizers WhitespaceSplit pre-tokenizer (Rust char::is_whitespace) does not.
# Counting must split exactly like the tokenizer, or the vocabulary would hold
# words the tokenizer can never produce.
_PYTHON_ONLY_SEPARATORS = re.compile("[\x1c-\x1f]")
_WORD = re.compile("(?:[^\\s]|[\x1c-\x1f])+")

# --------------------------------------------------------------------------- conventions
# Regular expressions for the tokenizers library (Oniguruma syntax). Each
# pre-tokenizer is one Split(..., behavior="removed", invert=True): the
# alternatives are tried in order at each position and every match is a word;
# what no alternative matches (whitespace; for PTB also removed punctuation)
# is dropped.

_ALNUM = r"[\p{L}\p{N}\p{M}]"  # letters, digits, combining marks
_NOT_ALNUM_NEXT = r"(?![\p{L}\p{N}\p{M}])"

#: Words whose final period WikiText keeps whatever follows (case-sensitive):
#: titles, and the abbreviations the corpus keeps before ``<unk>``.
WIKITEXT_ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Rev", "Gen", "Col", "Lt", "Sgt", "Bros",
    "Inc", "vs", "var", "ssp", "lit", "No", "Nos", "Op", "pp", "Nr",
)  # fmt: skip

#: Words whose final period PTB keeps (lower case): every such word of the corpus.
PTB_ABBREVIATIONS = (
    "adm", "ala", "ariz", "aug", "bros", "calif", "cie", "co", "col", "colo", "conn", "corp",
    "cos", "dec", "del", "dr", "etc", "feb", "fla", "ga", "gen", "gov", "ill", "inc", "ind",
    "jan", "jr", "kan", "ky", "ltd", "mass", "md", "messrs", "mich", "minn", "mo", "mr", "mrs",
    "ms", "neb", "nev", "no", "nov", "oct", "okla", "ore", "pa", "prof", "rep", "rev", "sen",
    "sens", "sept", "sr", "st", "tenn", "va", "vs", "wash", "wis",
)  # fmt: skip

_WT_WORD = _ALNUM + "+"
_WIKITEXT_WORD_PATTERN = "|".join(
    [
        r"<[a-z]+>",  # <unk>, <formula>
        r"@[-,.]@",  # the corpus's in-word markers
        r"\.{2,}|-{2,}",  # ... ..  --
        r"\.[0-9]+" + _NOT_ALNUM_NEXT,  # .69
        rf"{_WT_WORD}(?:\.{_WT_WORD})+\.{_NOT_ALNUM_NEXT}",  # U.S.  e.g.  Ph.D.
        rf"(?:{'|'.join(WIKITEXT_ABBREVIATIONS)}|[A-Za-z])\.{_NOT_ALNUM_NEXT}",  # Mr.  J.
        rf"{_WT_WORD}\.(?=\s+\p{{Ll}})",  # Inc. said
        rf"{_WT_WORD}(?:\.{_WT_WORD}|(?<=[0-9]),(?=[0-9]){_WT_WORD})*(?:-(?![-\p{{L}}\p{{N}}\p{{M}}]))?",
        rf"['`](?:\p{{L}}'{_WT_WORD}|{_WT_WORD})",  # 's  't  'Brien  'n'roll
        r"\S",  # any other character is a word of its own
    ]
)

# PTB word: letters/digits, but never the "n" of a final "n't" (don't -> do n't).
_PTB_RUN = r"(?:(?!n't(?![\p{L}\p{N}\p{M}]))[\p{L}\p{N}\p{M}])+"
_PTB_CLITIC = r"(?:s|re|ve|m|ll|d)(?![\p{L}\p{N}\p{M}])"
_PTB_JOINER = rf"(?:\.-|[-.&]|\\/|'(?!{_PTB_CLITIC}))(?=[\p{{L}}\p{{N}}\p{{M}}])"
_PTB_REMOVED = r".,;:?!\"()\[\]{}\-`…–—"  # inside a character class
_PTB_WORD_PATTERN = "|".join(
    [
        r"<[a-z]+>",  # <unk>
        rf"(?:{_PTB_RUN}{_PTB_JOINER})*(?:{'|'.join(PTB_ABBREVIATIONS)}|[a-z])\.(?![\p{{L}}\p{{N}}\p{{M}}-])",
        rf"{_PTB_RUN}(?:{_PTB_JOINER}{_PTB_RUN})*\$?",  # snack-food  s&p  o'brien  us$
        rf"n't{_NOT_ALNUM_NEXT}|'{_PTB_CLITIC}|'[0-9]+s{_NOT_ALNUM_NEXT}",  # n't 's '80s
        r"(?:\\\*)+|\\/|[$&#']",
        rf"[^\s{_PTB_REMOVED}]",  # any other character that PTB keeps
    ]
)
_PTB_NUMBER = (
    r"(?<![\p{L}\p{N}\p{M}]-)(?<![\p{L}\p{N}\p{M}\\/.,])"  # not inside a word (cray-3, 1\/2-year)
    r"(?:\.[0-9]+|[0-9]+(?:[.,][0-9]+)*(?:\\/[0-9]+)?)"
    r"(?![\p{L}\p{N}\p{M}\-\\/]|[.,][0-9])"
)


def _check_convention(convention: object, allowed: Sequence[str] = CONVENTIONS) -> str:
    if not isinstance(convention, str) or convention not in allowed:
        raise ValueError(
            f"convention={convention!r} is not a word convention; allowed: {', '.join(map(repr, allowed))}"
        )
    return convention


def _normalizer(convention: str) -> normalizers.Normalizer | None:
    if convention == "wikitext":
        return normalizers.Sequence(
            [
                normalizers.Replace(Regex(r"(?<=[\p{L}\p{N}\p{M}])-(?=[\p{L}\p{N}\p{M}])"), " @-@ "),
                normalizers.Replace(Regex(r"(?<=[0-9]),(?=[0-9]+(?![\p{L}\p{N}\p{M}]))"), " @,@ "),
                normalizers.Replace(Regex(r"(?<=[0-9])\.(?=[0-9])"), " @.@ "),
            ]
        )
    if convention == "ptb":
        return normalizers.Sequence(
            [
                normalizers.Replace(Regex(r"(?<!\S)N(?!\S)"), "0"),  # the placeholder survives Lowercase
                normalizers.Lowercase(),
                normalizers.Replace(Regex("[‘’‛′]"), "'"),
                normalizers.Replace(Regex("[“”„‟″]"), '"'),
                normalizers.Replace("%", " N "),
                normalizers.Replace("£", " # "),
                normalizers.Replace(Regex(r"(?<!\\)/"), "\\/"),
                normalizers.Replace(Regex(r"(?<!\\)\*"), "\\*"),
                normalizers.Replace(Regex(_PTB_NUMBER), "N"),
            ]
        )
    return None  # whitespace


def _pre_tokenizer(convention: str) -> pre_tokenizers.PreTokenizer:
    if convention == "whitespace":
        return pre_tokenizers.WhitespaceSplit()
    pattern = _WIKITEXT_WORD_PATTERN if convention == "wikitext" else _PTB_WORD_PATTERN
    return pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)


def _decoder(convention: str, space_prefix: bool = False) -> decoders.Decoder | None:
    """The decoder; ``space_prefix``: every word is decoded with a space before it, the
    first one too (GPT-2's convention), so that decoded continuations can be appended."""
    if convention != "wikitext":
        if not space_prefix:
            return None  # the backend joins the words with spaces
        return decoders.Replace(Regex("^"), " ")  # " word" for every word
    return decoders.Sequence(
        [
            decoders.Replace(Regex("^"), " "),  # a space before every word ...
            decoders.Fuse(),  # ... then one string, in which the markers are joined
            decoders.Replace(" @-@ ", "-"),
            decoders.Replace(" @,@ ", ","),
            decoders.Replace(" @.@ ", "."),
            *([] if space_prefix else [decoders.Strip(" ", 1, 0)]),
        ]
    )


@cache
def _splitter(convention: str) -> tuple[normalizers.Normalizer | None, pre_tokenizers.PreTokenizer]:
    return _normalizer(convention), _pre_tokenizer(convention)


def split_words(line: str, convention: str = "whitespace") -> list[str]:
    """Split ``line`` into words exactly as the tokenizer of ``convention`` does.

    Args:
        line: one line of text.
        convention: one of :data:`CONVENTIONS` (see the module docstring).

    Returns:
        The words, normalized (for ``"ptb"``: lower case, numbers as ``N``).

    Raises:
        ValueError: unknown convention.
    """
    if _check_convention(convention) == "whitespace":
        if _PYTHON_ONLY_SEPARATORS.search(line) is None:
            return line.split()  # fast path, identical on all other text
        return _WORD.findall(line)
    normalizer, pre_tokenizer = _splitter(convention)
    assert normalizer is not None  # only "whitespace" (returned above) has none
    return [word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))]


def count_words(lines: Iterable[str], convention: str = "whitespace") -> Counter[str]:
    """Count words with the corpus convention: words of each line + one ``<eos>``.

    Args:
        lines: lines of text.
        convention: how a line becomes words, one of :data:`CONVENTIONS`.

    Returns:
        A ``Counter`` whose insertion order is the order of first occurrence.

    Raises:
        ValueError: unknown convention.
    """
    _check_convention(convention)
    counts: Counter[str] = Counter()
    num_lines = 0
    for line in lines:
        counts.update(split_words(line, convention))
        num_lines += 1
    counts[EOS_TOKEN] += num_lines
    return counts


# --------------------------------------------------------------------------- detection

_WIKITEXT_MARKER = re.compile(r"(?<!\S)@[-,.]@(?!\S)")
_PTB_PLACEHOLDER = re.compile(r"(?<!\S)N(?!\S)")
_PLAIN_NUMBER = re.compile(r"(?<!\S)[0-9]+(?:[.,][0-9]+)*(?!\S)")
_PTB_REMOVED_WORD = re.compile(r"(?<!\S)[.,;:?!\"()\[\]{}\-`…–—]+(?!\S)")


def detect_word_convention(lines: Iterable[str]) -> str:
    """The convention of already tokenized training text (the rule of ``"auto"``).

    * ``"wikitext"`` if a word ``@-@``, ``@,@`` or ``@.@`` occurs;
    * ``"ptb"`` if the word ``N`` occurs and no word has an upper-case letter
      (other than ``N`` itself), is a plain number (``1990``, ``3.5``) or is
      punctuation that PTB removes (``,`` ``.`` ``(`` ...);
    * ``"whitespace"`` if neither holds: the text is taken as already split
      into words (a tokenizer that records no convention).

    Args:
        lines: the training text, one line per item.

    Returns:
        One of :data:`CONVENTIONS`.

    Raises:
        ValueError: the text has both WikiText's markers and PTB's shape (the
        message says where), so no single convention fits it.
    """
    wikitext_line = ptb_line = None
    ptb_possible = True
    for number, line in enumerate(lines, start=1):
        if wikitext_line is None and _WIKITEXT_MARKER.search(line):
            wikitext_line = number
        if ptb_possible:
            rest = _PTB_PLACEHOLDER.sub(" ", line)
            if rest != line and ptb_line is None:
                ptb_line = number
            if rest != rest.lower() or _PLAIN_NUMBER.search(rest) or _PTB_REMOVED_WORD.search(rest):
                ptb_possible = False
    is_ptb = ptb_possible and ptb_line is not None
    if wikitext_line is not None and is_ptb:
        raise ValueError(
            "convention='auto' cannot choose: the training text has WikiText's @-@/@,@/@.@ markers "
            f"(first on line {wikitext_line}) and PTB's shape (the number placeholder N, first on line "
            f"{ptb_line}, no upper case, no plain numbers or removed punctuation); pass "
            "convention='wikitext', 'ptb' or 'whitespace'"
        )
    if wikitext_line is not None:
        return "wikitext"
    return "ptb" if is_ptb else "whitespace"


# --------------------------------------------------------------------------- vocabulary and tokenizer


def build_vocab(counts: Counter[str], max_vocab_size: int | None = None, min_count: int = 1) -> dict[str, int]:
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


def word_tokenizer_from_vocab(
    vocab: Mapping[str, int] | Sequence[str],
    convention: str = "whitespace",
    *,
    add_eos: bool = False,
    space_prefix: bool = True,
    pad_is_word: bool = False,
) -> PreTrainedTokenizerFast:
    """Wrap a word table as a ``PreTrainedTokenizerFast``.

    The tokenizer has exactly the entries of ``vocab`` (``len(tokenizer) == len(vocab)``).

    Args:
        vocab: ``word -> id`` mapping or a sequence of words (id = position).
            Must contain ``<unk>`` and ``<eos>``; ids must be ``0..V-1``. When it
            contains ``<pad>``, that entry is the pad token; otherwise the pad
            token is ``<eos>`` (tokenizers of the earlier format, without ``<pad>``).
        pad_is_word: whether ``<pad>`` is also a word of the vocabulary (a converted
            vocabulary whose corpus had it), which text then gives as its id. ``False``
            (default): ``<pad>`` exists for padding only and must have the last id; text
            never produces it: the word ``<pad>`` in text is an unknown word (``<unk>``), as
            any word outside the table, so that no input position silently becomes padding
            (``DataCollatorForLanguageModeling`` would drop its label and the model has never
            learnt that row). Such a tokenizer is saved with ``split_special_tokens=True``
            (``tokenizer_config.json``): text is split by the convention alone and every word
            looked up in the table, where ``<eos>`` is a word (text ``<eos>`` gives its id) and
            ``<pad>`` is not.
        convention: how text becomes words, one of :data:`CONVENTIONS` (see
            the module docstring); default ``"whitespace"``, the behaviour of
            a tokenizer that records no convention. Saved in
            ``tokenizer.json`` (the rules) and ``tokenizer_config.json``
            (the name, key ``word_convention``).
        add_eos: ``tokenizer(text)`` appends ``<eos>`` to each text (transformers'
            own ``add_eos_token``: a ``TemplateProcessing`` post-processor saved in
            ``tokenizer.json``, ``add_eos_token`` in ``tokenizer_config.json``;
            ``add_special_tokens=False`` turns it off per call). Default off: a
            prompt for ``generate()`` must not end with a line break.
        space_prefix: decoding puts a space before every word, the first one
            too (``decode(ids) == " the game was"``), as GPT-2's tokenizer does:
            then a decoded continuation can be appended to the text before it
            (``pipeline("text-generation")`` returns the prompt + the decoded new
            tokens). ``False``: the decoding of earlier versions (no leading
            space), which glues the first generated word to the prompt.

    Raises:
        ValueError: unknown convention, special tokens missing, ids not ``0..V-1``, a
            padding-only ``<pad>`` (``pad_is_word=False``) without the last id.
    """
    _check_convention(convention)
    if not isinstance(vocab, Mapping):
        vocab = {word: index for index, word in enumerate(vocab)}
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise ValueError(f"vocabulary lacks the special token(s) {missing}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("vocabulary ids must be exactly 0..len(vocab)-1, each once")
    pad_only = PAD_TOKEN in vocab and not pad_is_word
    if pad_only and vocab[PAD_TOKEN] != len(vocab) - 1:
        raise ValueError(
            f"{PAD_TOKEN!r} has id {vocab[PAD_TOKEN]}; a pad token that is no word of the vocabulary must have the "
            f"last id, {len(vocab) - 1} (pass pad_is_word=True when the vocabulary has {PAD_TOKEN!r} as a word)"
        )
    # A padding-only <pad> is no word of the table: text gives <unk> for it (see pad_is_word);
    # add_special_tokens below gives it the next id, the last.
    table = {word: index for word, index in vocab.items() if not (pad_only and word == PAD_TOKEN)}
    backend = Tokenizer(models.WordLevel(table, unk_token=UNK_TOKEN))
    normalizer, decoder = _normalizer(convention), _decoder(convention, space_prefix)
    if normalizer is not None:
        backend.normalizer = normalizer
    backend.pre_tokenizer = _pre_tokenizer(convention)
    if decoder is not None:
        backend.decoder = decoder
    # single_word=True: "<eos>" glued inside a word ("foo<eos>") stays part of
    # that word, as with str.split(), instead of being cut out of it.
    # <unk> is a word of the vocabulary (PTB's and WikiText's texts have it), not a control token:
    # not named unk_token, so that decode(skip_special_tokens=True) and the text-generation
    # pipeline keep it visible (transformers skips every named special token); the WordLevel
    # model still maps every unknown word to it.
    specials = (EOS_TOKEN,) + ((PAD_TOKEN,) if PAD_TOKEN in vocab else ())
    eos, *pad = (AddedToken(token, single_word=True, normalized=False, special=True) for token in specials)
    backend.add_special_tokens([eos, *pad])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        pad_token=pad[0] if pad else eos,
        padding_side="left",
        clean_up_tokenization_spaces=False,  # decode = words joined by spaces (+ the decoder's joins)
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids
        **({"add_eos_token": True} if add_eos else {}),
        **({"split_special_tokens": True} if pad_only else {}),  # text never gives the padding-only <pad>
        **{CONVENTION_CONFIG_KEY: convention},
    )


def get_word_convention(tokenizer: PreTrainedTokenizerBase) -> str:
    """The convention a word tokenizer was built with.

    Read from ``tokenizer_config.json`` (``word_convention``). A tokenizer
    of the earlier format records none; it is ``"whitespace"`` when
    its backend has the ``WhitespaceSplit`` pre-tokenizer and no normalizer, as
    every such tokenizer of this package has.

    Raises:
        ValueError: the recorded name is not one of :data:`CONVENTIONS`, or
            nothing is recorded and the backend is not the plain whitespace one
            (not a word tokenizer of this package).
    """
    recorded = tokenizer.init_kwargs.get(CONVENTION_CONFIG_KEY)
    if recorded is not None:
        if recorded not in CONVENTIONS:
            raise ValueError(f"the tokenizer records {CONVENTION_CONFIG_KEY}={recorded!r}, not one of {CONVENTIONS}")
        return recorded
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is not None
        and backend.normalizer is None
        and isinstance(backend.pre_tokenizer, pre_tokenizers.WhitespaceSplit)
    ):
        return "whitespace"
    raise ValueError(
        f"the tokenizer records no {CONVENTION_CONFIG_KEY} and is not a plain whitespace word tokenizer "
        "(normalizer None, pre-tokenizer WhitespaceSplit)"
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


def _describe_training_text(files_or_lines: TrainingText) -> str:
    """`` 'PATH'`` for a file given by its path, else nothing (for messages)."""
    return f" {str(files_or_lines)!r}" if isinstance(files_or_lines, (str, os.PathLike)) else ""


def build_word_tokenizer(
    files_or_lines: TrainingText,
    max_vocab_size: int | None = None,
    min_count: int = 1,
    convention: str = AUTO_CONVENTION,
    *,
    add_pad_token: bool = True,
    add_eos: bool = False,
    space_prefix: bool = True,
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
        convention: ``"auto"`` (default: chosen from the training text by
            :func:`detect_word_convention`) or one of :data:`CONVENTIONS`. The
            words are counted with it, so on text in a corpus's own form every
            convention gives the same vocabulary and ids.

    Returns:
        The tokenizer; on PTB train it has 10,000 entries, on WikiText-2 train
        33,278 (``<unk>`` and ``<eos>`` included).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is empty,
            there are no lines at all, every line is blank (no words: the
            tokenizer would know only its special tokens), the convention is
            unknown, ``"auto"`` finds both WikiText's and PTB's marks, or the
            text has the word ``<pad>`` with ``add_pad_token`` (the text ``<pad>``
            is an unknown word for such a tokenizer, see
            :func:`word_tokenizer_from_vocab`).
    """
    _check_convention(convention, (AUTO_CONVENTION, *CONVENTIONS))
    lines: Iterable[str] = _iter_training_lines(files_or_lines)
    if convention == AUTO_CONVENTION:
        lines = list(lines)  # read twice: detect, then count
        convention = detect_word_convention(lines)
        logger.info("word convention detected from the training text: %s", convention)
    counts = count_words(lines, convention)
    if counts[EOS_TOKEN] == 0:
        raise ValueError("build_word_tokenizer got no lines of text to count")
    if len(counts) == 1:  # only the <eos> of each line
        raise ValueError(
            f"build_word_tokenizer: the training text{_describe_training_text(files_or_lines)} has no words "
            f"({counts[EOS_TOKEN]} line(s), all blank); a vocabulary needs at least one word"
        )
    vocab = build_vocab(counts, max_vocab_size, min_count)
    if add_pad_token:
        if PAD_TOKEN in vocab:
            raise ValueError(
                f"the training text has the word {PAD_TOKEN!r}, so it cannot also be the padding; "
                "pass add_pad_token=False (pad token <eos>)"
            )
        vocab[PAD_TOKEN] = len(vocab)  # last: every word keeps its id
    return word_tokenizer_from_vocab(vocab, convention, add_eos=add_eos, space_prefix=space_prefix)


def unknown_word_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The id that the tokenizer gives every word outside its vocabulary (``<unk>``; fastai's
    ``xxunk`` in a converted folder), or ``None`` for a tokenizer that has none.

    Read from the backend's word-level model: word tokenizers of this package do not name
    ``<unk>`` as ``tokenizer.unk_token`` (it is a word of the corpora, kept visible by
    ``decode(skip_special_tokens=True)`` and the text-generation pipeline), so
    ``tokenizer.unk_token_id`` is ``None`` for them; tokenizers of the earlier format name it.
    """
    if getattr(tokenizer, "unk_token_id", None) is not None:
        return tokenizer.unk_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    word = getattr(getattr(backend, "model", None), "unk_token", None)
    return None if word is None else backend.token_to_id(word)


def vocabulary_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """A fingerprint of the id -> word table, ``"sha256:<hex>"``.

    Two tokenizers of the same size whose words have other ids (a rotated or rebuilt
    vocabulary) give different fingerprints. Saved with a model as
    ``config.vocab_fingerprint`` so that wherever a model and a tokenizer meet
    (:func:`check_vocabulary_fingerprint`) a mismatched pair is refused instead of scoring
    every word as another.
    """
    ordered = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    payload = json.dumps([[index, word] for word, index in ordered], ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def check_vocabulary_fingerprint(expected: str | None, tokenizer: PreTrainedTokenizerFast, where: str) -> None:
    """Raise ``ValueError`` when ``tokenizer``'s vocabulary is not the one a model was trained with.

    Args:
        expected: the model's ``config.vocab_fingerprint`` (``None`` for a model folder without
            a fingerprint: nothing to check).
        tokenizer: the tokenizer paired with the model.
        where: what to name in the message (e.g. the checkpoint folder).
    """
    if expected is None:
        return
    found = vocabulary_fingerprint(tokenizer)
    if found != expected:
        raise ValueError(
            f"{where}: the tokenizer's vocabulary is not the one the model was trained with (fingerprint "
            f"{found[:19]}... differs from the model's config.vocab_fingerprint {str(expected)[:19]}...); "
            "the same words would get other ids. Use the tokenizer saved with the model."
        )
