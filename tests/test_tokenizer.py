"""Word conventions of the tokenizer: WikiText and PTB rules for raw text.

Oracles: the corpus files themselves (whitespace-split words looked up in a
Python dict, the path every earlier version used), the corpora's own
tokenization of sentences whose raw text is known, and tokenizer files saved
by the version before conventions existed. The full PTB / WikiText-2 checks
read ``$MTLSTM_DATA_DIR`` (default ``../shared/data``) and are skipped where it
is absent; the embedded WikiText-2 sample is always there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import PTB_DIR, WIKITEXT2_DIR  # noqa: E402
from transformers import AutoTokenizer, DataCollatorForLanguageModeling

from mtlstm_hf.data import (
    CONVENTIONS,
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    build_vocab,
    build_word_tokenizer,
    count_words,
    dataset_lines,
    detect_word_convention,
    encode_lines,
    get_word_convention,
    load_corpus,
    sample_corpus_dir,
    split_to_stream,
    split_words,
    word_tokenizer_from_vocab,
)

# Encoding the train splits as streams too takes seconds more: opt in, as in test_data.py.
# The train splits are always checked by counting with each convention.
STREAM_SPLITS = (
    ("train", "validation", "test") if os.environ.get("MTLSTM_SLOW_TESTS") == "1" else ("validation", "test")
)


def whitespace_ids(line: str, vocab: dict[str, int]) -> list[int]:
    """The oracle: words by str.split(), ids by dict lookup (unknown -> <unk> = 0)."""
    return [vocab.get(word, 0) for word in line.split()]


def oracle_stream(lines: list[str], vocab: dict[str, int]) -> list[int]:
    stream: list[int] = []
    for line in lines:
        stream += whitespace_ids(line, vocab) + [vocab[EOS_TOKEN]]
    return stream


@pytest.fixture(scope="module")
def sample_corpus():
    return load_corpus(sample_corpus_dir())


@pytest.fixture(scope="module")
def sample_wikitext(sample_corpus):
    return build_word_tokenizer(sample_corpus["train"], convention="wikitext")


# --------------------------------------------------------------------------- corpus-form text is unchanged


def check_corpus_form_unchanged(corpus, convention: str, stream_splits) -> None:
    """Counting with ``convention`` = counting words; streams = whitespace ids."""
    train_lines = dataset_lines(corpus["train"])
    assert detect_word_convention(train_lines) == convention  # what "auto" picks
    by_words = count_words(train_lines)
    counts = count_words(train_lines, convention)
    assert counts == by_words  # every train word, every count
    assert list(counts) == list(by_words)  # same first-occurrence order
    vocab = build_vocab(by_words)
    tokenizer = word_tokenizer_from_vocab(build_vocab(counts), convention)
    assert tokenizer.get_vocab() == vocab
    for split in stream_splits:
        stream = split_to_stream(corpus, split, tokenizer).tolist()
        assert stream == oracle_stream(dataset_lines(corpus[split]), vocab), split


def test_sample_in_corpus_form_gives_whitespace_ids(sample_corpus):
    check_corpus_form_unchanged(sample_corpus, "wikitext", ("train", "validation", "test"))
    built = build_word_tokenizer(sample_corpus["train"])  # "auto", the default
    assert get_word_convention(built) == "wikitext"
    words = build_vocab(count_words(dataset_lines(sample_corpus["train"])))
    assert built.get_vocab() == {**words, PAD_TOKEN: len(words)}  # <pad> last: every word keeps its id


@pytest.mark.skipif(not (WIKITEXT2_DIR / "train.txt").is_file(), reason="WikiText-2 not available")
def test_wikitext2_in_corpus_form_gives_whitespace_ids():
    check_corpus_form_unchanged(load_corpus(WIKITEXT2_DIR), "wikitext", STREAM_SPLITS)


@pytest.mark.skipif(not (PTB_DIR / "train.txt").is_file(), reason="PTB not available")
def test_ptb_in_corpus_form_gives_whitespace_ids():
    check_corpus_form_unchanged(load_corpus(PTB_DIR), "ptb", STREAM_SPLITS)


# --------------------------------------------------------------------------- raw text -> the corpus's own words

# (raw Wikipedia text, the same text as the embedded sample writes it)
WIKITEXT_RAW_AND_CORPUS = [
    (
        "Senjō no Valkyria 3: Unrecorded Chronicles (Japanese: 戦場のヴァルキュリア3,",
        "Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 ,",
    ),
    (
        "Valkyria of the Battlefield 3), commonly referred to as Valkyria Chronicles III outside Japan, is a "
        "tactical role-playing video game developed by Sega and Media.Vision for the PlayStation Portable.",
        "Valkyria of the Battlefield 3 ) , commonly referred to as Valkyria Chronicles III outside Japan , is a "
        "tactical role @-@ playing video game developed by Sega and Media.Vision for the PlayStation Portable .",
    ),
    ("The game's opening theme was sung by May'n.", "The game 's opening theme was sung by May 'n ."),
    (
        "It is closely related to the American lobster, H. americanus. It may grow to a length of 60 cm "
        "(24 in) and a mass of 6 kilograms (13 lb), and bears a conspicuous pair of claws.",
        "It is closely related to the American lobster , H. americanus . It may grow to a length of 60 cm "
        "( 24 in ) and a mass of 6 kilograms ( 13 lb ) , and bears a conspicuous pair of claws .",
    ),
    ("weigh 0.7–2.2 kg (1.5–4.9 lb).", "weigh 0 @.@ 7 – 2 @.@ 2 kg ( 1 @.@ 5 – 4 @.@ 9 lb ) ."),
    (
        'In life, the lobsters are blue, only becoming "lobster red" on cooking.',
        'In life , the lobsters are blue , only becoming " lobster red " on cooking .',
    ),
    ("Stories are told through comic book-like panels", "Stories are told through comic book @-@ like panels"),
]


def test_raw_wikipedia_text_gets_the_sample_ids(sample_wikitext):
    sample_text = "\n".join(path.read_text(encoding="utf-8") for path in sample_corpus_dir().glob("*.txt"))
    vocab = sample_wikitext.get_vocab()
    for raw, corpus_form in WIKITEXT_RAW_AND_CORPUS:
        assert f" {corpus_form} " in sample_text  # the corpus's own words
        assert sample_wikitext(raw)["input_ids"] == whitespace_ids(corpus_form, vocab), raw
    # the worked example of the PTB convention
    corpus_form = whitespace_ids("The city , which is large .", vocab)
    assert sample_wikitext("The city, which is large.")["input_ids"] == corpus_form
    assert 0 not in corpus_form


# (raw Wall Street Journal text of Treebank sentences, line of Mikolov's ptb.train.txt)
PTB_RAW_AND_LINE = [
    ("Pierre Vinken, 61 years old, will join the board as a nonexecutive director Nov. 29.", 2),
    ("Mr. Vinken is chairman of Elsevier N.V., the Dutch publishing group.", 3),
    (
        "Lorillard Inc., the unit of New York-based Loews Corp. that makes Kent cigarettes, stopped using "
        "crocidolite in its Micronite cigarette filters in 1956.",
        7,
    ),
    (
        "Although preliminary findings were reported more than a year ago, the latest results appear in "
        "today's New England Journal of Medicine, a forum likely to bring new attention to the problem.",
        8,
    ),
    ("\"We're talking about years ago before anyone heard of asbestos having any questionable properties.", 10),
    (
        "The average seven-day compound yield of the 400 taxable funds tracked by IBC's Money Fund Report "
        "eased a fraction of a percentage point to 8.45% from 8.47% for the week ended Tuesday.",
        36,
    ),
    (
        "The House has voted to raise the ceiling to $3.1 trillion, but the Senate isn't expected to act "
        "until next week at the earliest.",
        65,
    ),
    ("The Treasury said the U.S. will default on Nov. 9 if Congress doesn't act by then.", 66),
]


@pytest.mark.skipif(not (PTB_DIR / "train.txt").is_file(), reason="PTB not available")
def test_raw_wsj_text_gets_the_ptb_ids():
    lines = (PTB_DIR / "train.txt").read_text(encoding="utf-8").split("\n")
    # the vocabulary by whitespace counting (equal to PTB counting, see above), the rules of "ptb"
    tokenizer = word_tokenizer_from_vocab(build_vocab(count_words(lines[:-1])), convention="ptb")
    vocab = tokenizer.get_vocab()
    for raw, line_number in PTB_RAW_AND_LINE:
        assert tokenizer(raw)["input_ids"] == whitespace_ids(lines[line_number - 1], vocab), raw


def test_the_worked_ptb_example():
    tokenizer = build_word_tokenizer([" the N cats do n't sleep "], convention="ptb")
    ids = tokenizer("The 1,000 cats don't sleep.")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["the", "N", "cats", "do", "n't", "sleep"]


# Each row: raw text, the words the convention must give (the corpus's own way of writing it).
WIKITEXT_RULES = [
    ("well-known 1,000 cats 3.5 kg", "well @-@ known 1 @,@ 000 cats 3 @.@ 5 kg"),
    ("the 1,000th game, 12,345,678 fans", "the 1,000th game , 12 @,@ 345 @,@ 678 fans"),
    ("the city's mayor don't O'Brien's rock'n'roll", "the city 's mayor don 't O 'Brien 's rock 'n'roll"),
    (
        "U.S. forces, e.g. tanks, met Mr. Smith and J. Doe.",
        "U.S. forces , e.g. tanks , met Mr. Smith and J. Doe .",
    ),
    (
        "No. 2 Squadron. It is large. The end... Inc. said so.",
        "No. 2 Squadron . It is large . The end ... Inc. said so .",
    ),
    (
        "Media.Vision, 1.e4 and .69 (second- and third-rate) -- ok!",
        "Media.Vision , 1.e4 and .69 ( second- and third @-@ rate ) -- ok !",
    ),
    ("$5 5% #1 C++ a/b [x] <unk> <formula>", "$ 5 5 % # 1 C + + a / b [ x ] <unk> <formula>"),
]

PTB_RULES = [
    ("The 1,000 cats don't sleep.", "the N cats do n't sleep"),
    ("Mr. Smith's U.S. unit rose 5% to $1.5 billion.", "mr. smith 's u.s. unit rose N N to $ N billion"),
    (
        "In the 1980s, 30-year bonds (and Cray-3 units) fell -- can't you see?",
        "in the 1980s 30-year bonds and cray-3 units fell ca n't you see",
    ),
    (
        "Acme Inc. of Irvine, Calif.-based, and No. 1 N.Y. firm; investors' 'fun'",
        "acme inc. of irvine calif.-based and no. N n.y. firm investors ' ' fun '",
    ),
    (
        "property/casualty ** £5 and 24 1/2 -5 .5 10:30 US$5 O'Brien S&P the N cats",
        "property\\/casualty \\*\\* # N and N N N N N N us$ N o'brien s&p the N cats",
    ),
    ("We’re “fine” — it’s the '80s; <unk> won't", "we 're fine it 's the '80s <unk> wo n't"),
]


@pytest.mark.parametrize(
    ("convention", "raw", "words"),
    [("wikitext", *row) for row in WIKITEXT_RULES] + [("ptb", *row) for row in PTB_RULES],
)
def test_raw_text_rules(convention, raw, words):
    assert split_words(raw, convention) == words.split(" ")
    # the tokenizer gives the same words (all counted, so none is <unk> unless written so)
    tokenizer = build_word_tokenizer([raw], convention=convention)
    assert tokenizer.convert_ids_to_tokens(tokenizer(raw)["input_ids"]) == words.split(" ")


def test_counting_and_tokenizer_agree_around_special_tokens():
    """Counting runs the convention on whole lines; the tokenizer first cuts the
    line at <unk>/<eos>, so a rule that looked past them would count words the
    tokenizer never produces."""
    lines = [
        " Warner Bros. <unk> in Burbank , var. <unk> , Baby. <unk> , lit. <eos> and x. <unk> ",
        " the N cats no. <unk> foo. <unk> inc. <eos> ",
    ]
    # Not for "whitespace", kept as it always was: there "<unk>." is counted as one word,
    # but the tokenizer cuts "<unk>" out of it (an added token matched before splitting).
    glued = " foo<unk> bar <unk>. (<unk>) "
    for convention in CONVENTIONS:
        tokenizer = build_word_tokenizer(lines + [glued], convention=convention)
        for line in lines + ([glued] if convention != "whitespace" else []):
            ids = tokenizer(line)["input_ids"]
            assert tokenizer.convert_ids_to_tokens(ids) == split_words(line, convention), (convention, line)


def test_whitespace_convention_splits_on_spaces_only():
    tokenizer = build_word_tokenizer([" The city , which is large . "], convention="whitespace")
    assert tokenizer("The city, which is large.")["input_ids"] == [2, 0, 5, 6, 0]  # "city," "large." unknown
    assert split_words("The city, which is large.", "whitespace") == ["The", "city,", "which", "is", "large."]


# --------------------------------------------------------------------------- decoding


def test_decode(sample_wikitext, sample_corpus):
    ids = sample_wikitext("The well-known game series: 1,000 kg, 3.5 kg.")["input_ids"]
    assert UNK_TOKEN not in sample_wikitext.convert_ids_to_tokens(ids)
    assert (
        sample_wikitext.decode(ids) == " The well-known game series : 1,000 kg , 3.5 kg ."
    )  # a space before every word
    assert sample_wikitext.decode([]) == ""
    # decode then encode gives the ids back on corpus lines whose words are all known
    # (<unk> hides a word: "red @-@ <unk>" decodes to "red-<unk>", which is not a hyphenated word)
    lines = [line for line in dataset_lines(sample_corpus["train"]) if line.strip() and UNK_TOKEN not in line]
    assert len(lines) > 200 and sum("@-@" in line for line in lines) > 20
    for line in lines:
        ids = sample_wikitext(line)["input_ids"]
        assert sample_wikitext(sample_wikitext.decode(ids))["input_ids"] == ids, line
    for convention in ("ptb", "whitespace"):  # words joined with spaces
        tokenizer = build_word_tokenizer([" u.s. troops do n't say N $ "], convention=convention)
        ids = tokenizer(" u.s. troops do n't say N $ ")["input_ids"]
        assert tokenizer.decode(ids) == " u.s. troops do n't say N $"
        old = build_word_tokenizer([" u.s. troops do n't say N $ "], convention=convention, space_prefix=False)
        assert old.decode(ids) == "u.s. troops do n't say N $"  # the decoding of earlier versions


# --------------------------------------------------------------------------- saving, reloading, old files

RELOAD_LINES = ["The 1,000 cats don't sleep.", "The city, which is large.", "well-known U.S. forces <unk> <eos>"]


def test_saved_convention_reloads_without_this_package(tmp_path):
    expected = {}
    for convention in CONVENTIONS:
        tokenizer = build_word_tokenizer(
            [" the city , which is large . ", " the N cats do n't sleep ", " well @-@ known U.S. forces "],
            convention=convention,
        )
        tokenizer.save_pretrained(tmp_path / convention)
        config = json.loads((tmp_path / convention / "tokenizer_config.json").read_text())
        assert config["word_convention"] == convention
        expected[convention] = [tokenizer(line)["input_ids"] for line in RELOAD_LINES]
        reloaded = AutoTokenizer.from_pretrained(tmp_path / convention)
        assert get_word_convention(reloaded) == convention
        assert [reloaded(line)["input_ids"] for line in RELOAD_LINES] == expected[convention]
    # the rules live in tokenizer.json: a fresh interpreter with transformers only gives the same ids
    script = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        f"lines = {RELOAD_LINES!r}\n"
        "out = {c: [AutoTokenizer.from_pretrained(sys.argv[1] + '/' + c)(l)['input_ids'] for l in lines]"
        f" for c in {list(CONVENTIONS)!r}}}\n"
        "assert not any(name.startswith('mtlstm_hf') for name in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
    assert len({json.dumps(ids) for ids in expected.values()}) == 3  # the conventions differ on raw text


# Saved by the version before conventions existed (transformers 5.24, tokenizers 0.23) from
# build_word_tokenizer([" the cat sat , on the mat . ", " a dog"]).
LEGACY_TOKENIZER_JSON = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [
        {"id": 0, "content": "<unk>", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 1, "content": "<eos>", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
    ],
    "normalizer": None,
    "pre_tokenizer": {"type": "WhitespaceSplit"},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {},
    },
    "decoder": None,
    "model": {
        "type": "WordLevel",
        "vocab": {"<unk>": 0, "<eos>": 1, "the": 2, "cat": 3, "sat": 4, ",": 5, "on": 6, "mat": 7, ".": 8, "a": 9, "dog": 10},
        "unk_token": "<unk>",
    },
}  # fmt: skip
LEGACY_TOKENIZER_CONFIG = {
    "backend": "tokenizers", "clean_up_tokenization_spaces": False, "eos_token": "<eos>",
    "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 1000000000000000019884624838656,
    "pad_token": "<eos>", "padding_side": "left", "tokenizer_class": "TokenizersBackend", "unk_token": "<unk>",
}  # fmt: skip


def test_tokenizer_saved_before_conventions_loads_and_behaves_as_before(tmp_path):
    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    (legacy_dir / "tokenizer.json").write_text(json.dumps(LEGACY_TOKENIZER_JSON))
    (legacy_dir / "tokenizer_config.json").write_text(json.dumps(LEGACY_TOKENIZER_CONFIG))
    legacy = AutoTokenizer.from_pretrained(legacy_dir)
    assert get_word_convention(legacy) == "whitespace"
    vocab = LEGACY_TOKENIZER_JSON["model"]["vocab"]
    lines = ["the cat sat, on the mat.", " a dog , the <unk> cat . ", "The 1,000 cats don't sleep."]
    for line in lines:
        assert legacy(line)["input_ids"] == whitespace_ids(line, vocab), line
    # the whitespace convention builds the same backend as before
    rebuilt = build_word_tokenizer(
        [" the cat sat , on the mat . ", " a dog"], convention="whitespace", add_pad_token=False, space_prefix=False
    )
    rebuilt.save_pretrained(tmp_path / "rebuilt")
    saved = json.loads((tmp_path / "rebuilt" / "tokenizer.json").read_text())
    for key in ("normalizer", "pre_tokenizer", "decoder", "model"):
        assert saved[key] == LEGACY_TOKENIZER_JSON[key], key
    # <unk> is no longer an added (special) token, only the vocabulary's word: decoding keeps it.
    assert saved["added_tokens"] == LEGACY_TOKENIZER_JSON["added_tokens"][1:]
    assert [rebuilt(line)["input_ids"] for line in lines] == [legacy(line)["input_ids"] for line in lines]


def test_get_word_convention_refuses_what_it_cannot_tell():
    tokenizer = word_tokenizer_from_vocab([UNK_TOKEN, EOS_TOKEN, "a"], convention="ptb")
    tokenizer.init_kwargs.pop("word_convention")
    with pytest.raises(ValueError, match="records no word_convention"):
        get_word_convention(tokenizer)  # a PTB backend is not a legacy whitespace tokenizer
    tokenizer.init_kwargs["word_convention"] = "bert"
    with pytest.raises(ValueError, match="word_convention='bert'"):
        get_word_convention(tokenizer)


# --------------------------------------------------------------------------- choosing the convention


def test_auto_detection_rule():
    assert detect_word_convention([" a well @-@ known b ", " c "]) == "wikitext"
    assert detect_word_convention([" 1 @,@ 000 "]) == "wikitext"
    assert detect_word_convention([" the N cats do n't sleep ", " a b "]) == "ptb"
    # not PTB's shape: upper case, a plain number, punctuation PTB removes
    assert detect_word_convention([" the N cats ", " The dog "]) == "whitespace"
    assert detect_word_convention([" the N cats ", " 1990 "]) == "whitespace"
    assert detect_word_convention([" the N cats , said he "]) == "whitespace"
    assert detect_word_convention([" w0 w1 w2 ", "x@-@y"]) == "whitespace"  # markers are whole words
    assert detect_word_convention([]) == "whitespace"
    with pytest.raises(ValueError, match=r"cannot choose.*line 2.*line 1"):
        detect_word_convention([" the N cats ", " well @-@ known "])
    with pytest.raises(ValueError, match="cannot choose"):
        build_word_tokenizer([" the N cats ", " well @-@ known "])


def test_build_records_the_detected_convention(tmp_path):
    lines = [" the N cats do n't sleep "]
    assert get_word_convention(build_word_tokenizer(lines)) == "ptb"
    assert get_word_convention(build_word_tokenizer(line for line in lines)) == "ptb"  # a generator, read twice
    assert get_word_convention(build_word_tokenizer([" a b c "])) == "whitespace"
    path = tmp_path / "train.txt"
    path.write_text(" well @-@ known \n", encoding="utf-8")
    assert get_word_convention(build_word_tokenizer(path)) == "wikitext"
    assert get_word_convention(word_tokenizer_from_vocab([UNK_TOKEN, EOS_TOKEN])) == "whitespace"


@pytest.mark.parametrize("bad", ["WikiText", "bert", "", None, 3])
def test_unknown_convention_is_refused(bad):
    allowed = r"allowed: 'whitespace', 'wikitext', 'ptb'"
    with pytest.raises(ValueError, match=rf"convention={bad!r}.*allowed: 'auto', 'whitespace', 'wikitext', 'ptb'"):
        build_word_tokenizer([" a "], convention=bad)
    with pytest.raises(ValueError, match=rf"convention={bad!r}.*{allowed}"):
        word_tokenizer_from_vocab([UNK_TOKEN, EOS_TOKEN], convention=bad)
    with pytest.raises(ValueError, match=allowed):
        split_words("a", bad)
    with pytest.raises(ValueError, match=allowed):
        count_words(["a"], bad)


def test_auto_is_only_for_building():
    with pytest.raises(ValueError, match="convention='auto'.*allowed: 'whitespace', 'wikitext', 'ptb'"):
        word_tokenizer_from_vocab([UNK_TOKEN, EOS_TOKEN], convention="auto")
    with pytest.raises(ValueError, match="convention='auto'"):
        count_words(["a"], "auto")


# --------------------------------------------------------------------------- <pad> and add_eos


def test_pad_token_is_its_own_last_entry_and_old_tables_keep_eos_padding(sample_corpus):
    lines = dataset_lines(sample_corpus["train"])
    words = build_vocab(count_words(lines))
    new = build_word_tokenizer(sample_corpus["train"])
    assert new.pad_token == PAD_TOKEN and new.pad_token_id == len(words) == len(new) - 1
    assert new.pad_token_id != new.eos_token_id
    # every word keeps its id: the streams equal the whitespace oracle's, id for id
    assert encode_lines(lines[:300], new).tolist() == oracle_stream(lines[:300], words)
    # padding is skipped when decoding; the text <pad> is no padding but an unknown word
    the, game = new.convert_tokens_to_ids(["the", "game"])
    assert new.decode([the, new.pad_token_id, game], skip_special_tokens=True) == " the game"
    assert new("the <pad> game")["input_ids"] == [the, 0, game]
    old = build_word_tokenizer(sample_corpus["train"], add_pad_token=False)
    assert old.get_vocab() == words and old.pad_token_id == old.eos_token_id == 1
    assert word_tokenizer_from_vocab(words).pad_token == EOS_TOKEN  # a table without <pad>: as before
    with pytest.raises(ValueError, match="<pad>"):
        build_word_tokenizer(["a <pad> b"])


def collated_labels(tokenizer, texts):
    """Labels of transformers' own causal-LM collator on ``tokenizer(texts)``."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    return collator([tokenizer(text) for text in texts])


def test_language_modeling_collator_keeps_eos_labels_and_masks_only_padding():
    tokenizer = build_word_tokenizer(["b a c", "a b"], add_eos=True)
    vocab = tokenizer.get_vocab()
    batch = collated_labels(tokenizer, ["a b c", "c"])
    eos, pad = vocab[EOS_TOKEN], vocab[PAD_TOKEN]
    # oracle: each text's ids by dict lookup + <eos>, left padded; labels = ids with padding -100
    rows = [[vocab["a"], vocab["b"], vocab["c"], eos], [pad, pad, vocab["c"], eos]]
    assert batch["input_ids"].tolist() == rows
    assert batch["labels"].tolist() == [[-100 if i == pad else i for i in row] for row in rows]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    # the tokenizer of earlier versions (pad = <eos>) loses every <eos> label there
    legacy = build_word_tokenizer(["b a c", "a b"], add_pad_token=False, add_eos=True)
    assert (collated_labels(legacy, ["a b c", "c"])["labels"] == -100).sum() == 4


def test_add_eos_appends_eos_per_text_and_survives_saving(tmp_path):
    lines = ["b a c", "a b"]
    tokenizer = build_word_tokenizer(lines, add_eos=True)
    vocab = tokenizer.get_vocab()
    expected = [whitespace_ids(text, vocab) + [vocab[EOS_TOKEN]] for text in ["a b", "c"]]
    assert tokenizer(["a b", "c"])["input_ids"] == expected
    assert tokenizer("a b", add_special_tokens=False)["input_ids"] == whitespace_ids("a b", vocab)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)  # plain transformers, the post-processor is in tokenizer.json
    assert reloaded(["a b", "c"])["input_ids"] == expected
    # default off: a prompt does not end with a line break
    assert build_word_tokenizer(lines)(["a b", "c"])["input_ids"] == [whitespace_ids(t, vocab) for t in ["a b", "c"]]
    # the corpus stream has one <eos> per line with either tokenizer (encode_lines adds it, the tokenizer does not)
    plain = build_word_tokenizer(lines)
    assert torch.equal(encode_lines(lines + [""], tokenizer), encode_lines(lines + [""], plain))
    assert encode_lines(lines + [""], tokenizer).tolist() == oracle_stream(lines + [""], vocab)
