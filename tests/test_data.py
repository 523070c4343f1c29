"""Tests of the data layer: tokenizer, corpus loading, batching, embedded sample.

The full PTB / WikiText-2 checks read the corpora from ``$MTLSTM_DATA_DIR``
(default ``../shared/data`` beside the repository) and are skipped where they are absent.
No test touches the network: the Hub branch of ``load_corpus`` is tested with
``datasets.load_dataset`` monkeypatched.
"""

from __future__ import annotations

import ast
import os
import random
from pathlib import Path

import datasets
import pytest
import torch
from conftest import PTB_DIR, WIKITEXT2_DIR  # noqa: E402
from transformers import AutoTokenizer

from mtlstm_hf.data import (
    EOS_TOKEN,
    UNK_TOKEN,
    BPTTIterator,
    batchify,
    build_vocab,
    build_word_tokenizer,
    count_words,
    encode_lines,
    get_split,
    load_corpus,
    num_dropped_tokens,
    sample_corpus_dir,
    split_to_stream,
    split_words,
    unknown_word_id,
    word_tokenizer_from_vocab,
)
from mtlstm_hf.data import make_sample as make_sample_module

needs_ptb = pytest.mark.skipif(not (PTB_DIR / "train.txt").is_file(), reason="PTB not available")
needs_wikitext2 = pytest.mark.skipif(not (WIKITEXT2_DIR / "train.txt").is_file(), reason="WikiText-2 not available")

# Published numbers (see the data README): tokens with <eos>, <unk> count, vocabulary.
PTB_COUNTS = {"train": (929_589, 45_020), "validation": (73_760, 3_485), "test": (82_430, 4_794)}
WIKITEXT2_COUNTS = {
    "train": (2_088_628, 54_625),
    "validation": (217_646, 11_718),
    "test": (245_569, 15_218),
}
SAMPLE_TOKENS = {"train": 49_411, "validation": 7_076, "test": 8_448}


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def sample_corpus() -> datasets.DatasetDict:
    return load_corpus(sample_corpus_dir())


@pytest.fixture(scope="module")
def sample_tokenizer(sample_corpus):
    return build_word_tokenizer(sample_corpus["train"])


# --------------------------------------------------------------------------- tokenizer


def test_vocab_order_specials_then_count_then_first_occurrence():
    tokenizer = build_word_tokenizer([" b a c c ", "a b d", ""])
    vocab = tokenizer.get_vocab()
    # counts: c 2, b 2, a 2, d 1 -> ties (b, a, c) in first-occurrence order
    assert sorted(vocab, key=vocab.get) == [UNK_TOKEN, EOS_TOKEN, "b", "a", "c", "d", "<pad>"]
    assert (unknown_word_id(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 6)
    # <unk> is a word, not a named special token: decoding keeps it, also skipping special tokens.
    assert tokenizer.unk_token is None and tokenizer("b zebra <eos>")["input_ids"] == [2, 0, 1]
    assert tokenizer.decode([2, 0, 1], skip_special_tokens=True).split() == ["b", "<unk>"]
    assert tokenizer.bos_token is None
    assert tokenizer.padding_side == "left"


def test_count_words_follows_corpus_convention():
    counts = count_words([" a b ", " ", "a"])
    assert counts == {"a": 2, "b": 1, EOS_TOKEN: 3}


def test_max_vocab_size_and_min_count():
    lines = ["b a c c", "a b d"]
    small = build_word_tokenizer(lines, max_vocab_size=4)
    assert sorted(small.get_vocab(), key=small.get_vocab().get) == [UNK_TOKEN, EOS_TOKEN, "b", "a", "<pad>"]
    assert small(" c d a ")["input_ids"] == [0, 0, 3]
    frequent = build_word_tokenizer(lines, min_count=2)
    assert "d" not in frequent.get_vocab() and len(frequent) == 6
    with pytest.raises(ValueError, match="max_vocab_size"):
        build_word_tokenizer(lines, max_vocab_size=1)
    with pytest.raises(ValueError, match="min_count"):
        build_word_tokenizer(lines, min_count=0)


def test_tokenizer_gives_words_only_and_loader_appends_eos():
    tokenizer = build_word_tokenizer(["the cat sat", "the dog"])
    ids = tokenizer(" the zebra sat ")
    assert ids["input_ids"] == [2, 0, 4]  # no <eos> from the tokenizer
    assert set(ids.keys()) == {"input_ids", "attention_mask"}  # no token_type_ids
    stream = encode_lines([" the zebra sat ", "", " dog "], tokenizer)
    assert stream.dtype == torch.long and stream.dim() == 1
    assert stream.tolist() == [2, 0, 4, 1, 1, 5, 1]
    assert tokenizer.decode([2, 0, 4, 1]) == " the <unk> sat <eos>"  # a space before every word


def test_special_token_inside_a_word_stays_one_word():
    tokenizer = build_word_tokenizer(["x foo<unk> <unk> y"])
    assert "foo<unk>" in tokenizer.get_vocab()  # counted as one word, like str.split()
    assert tokenizer.convert_ids_to_tokens(tokenizer("foo<unk> <unk>")["input_ids"]) == ["foo<unk>", UNK_TOKEN]


def test_split_words_matches_the_pre_tokenizer():
    tokenizer = build_word_tokenizer(["a"])
    line = " a\x1cb c\u00a0d\te\u3000f\u2028g  \x1f h "
    pre_tokenized = [word for word, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(line)]
    assert split_words(line) == pre_tokenized == ["a\x1cb", "c", "d", "e", "f", "g", "\x1f", "h"]


def test_save_pretrained_autotokenizer_roundtrip(tmp_path, sample_corpus, sample_tokenizer):
    sample_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == sample_tokenizer.get_vocab()
    for attr in ("unk_token_id", "eos_token_id", "pad_token_id", "bos_token_id", "padding_side"):
        assert getattr(reloaded, attr) == getattr(sample_tokenizer, attr), attr
    lines = list(sample_corpus["validation"]["text"])[:200] + ["foo<unk> unseen-word <eos>"]
    assert reloaded(lines)["input_ids"] == sample_tokenizer(lines)["input_ids"]
    assert torch.equal(
        split_to_stream(sample_corpus, "valid", reloaded),
        split_to_stream(sample_corpus, "valid", sample_tokenizer),
    )
    batch = reloaded(["a b", "the"], padding=True)
    assert (
        batch["input_ids"][1][0] == reloaded.pad_token_id != reloaded.eos_token_id
        and batch["attention_mask"][1][0] == 0
    )


def test_build_word_tokenizer_inputs(tmp_path):
    first = write(tmp_path / "a.txt", " x y \n")
    second = write(tmp_path / "b.txt", " y z \n")
    from_paths = build_word_tokenizer([first, second])
    assert from_paths.get_vocab() == build_word_tokenizer([" x y ", " y z "]).get_vocab()
    assert build_word_tokenizer(str(first)).get_vocab() == build_word_tokenizer([" x y "]).get_vocab()
    assert len(build_word_tokenizer(line for line in ["p q"])) == 5
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_word_tokenizer(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="empty"):
        build_word_tokenizer(write(tmp_path / "empty.txt", ""))
    with pytest.raises(ValueError, match="no lines"):
        build_word_tokenizer([])
    with pytest.raises(TypeError):
        build_word_tokenizer([first, 3])
    with pytest.raises(ValueError, match="special token"):
        word_tokenizer_from_vocab(["a", EOS_TOKEN])


# --------------------------------------------------------------------------- corpus, real data


def check_real_corpus(directory: Path, expected_counts: dict, expected_vocab: int, stream_splits: tuple) -> None:
    """Vocabulary and train counts by counting; token streams of ``stream_splits``."""
    corpus = load_corpus(directory)
    assert list(corpus) == ["train", "validation", "test"]
    assert corpus["train"].column_names == ["text"]
    train_counts = count_words(corpus["train"]["text"][:])
    assert sum(train_counts.values()) == expected_counts["train"][0]
    assert train_counts[UNK_TOKEN] == expected_counts["train"][1]
    tokenizer = word_tokenizer_from_vocab(build_vocab(train_counts))
    assert len(tokenizer) == expected_vocab
    for split in stream_splits:
        num_tokens, num_unk = expected_counts[split]
        stream = split_to_stream(corpus, split, tokenizer)
        assert stream.numel() == num_tokens, split
        assert int((stream == unknown_word_id(tokenizer)).sum()) == num_unk, split
        assert int((stream == tokenizer.eos_token_id).sum()) == corpus[split].num_rows, split


# Train splits are checked by counting (vocabulary, tokens, <unk>); encoding
# them as streams too (0.9M + 2.1M tokens) takes a few seconds on an idle
# 2-core machine, much more on a busy one: opt in with MTLSTM_SLOW_TESTS=1.
# The encoding path itself is the same for every split and is checked id by id
# in test_stream_equals_python_reference.
STREAM_SPLITS = (
    ("train", "validation", "test") if os.environ.get("MTLSTM_SLOW_TESTS") == "1" else ("validation", "test")
)


@needs_ptb
def test_ptb_counts_and_vocabulary():
    check_real_corpus(PTB_DIR, PTB_COUNTS, 10_000, STREAM_SPLITS)


@needs_wikitext2
def test_wikitext2_counts_and_vocabulary():
    check_real_corpus(WIKITEXT2_DIR, WIKITEXT2_COUNTS, 33_278, STREAM_SPLITS)


@needs_wikitext2
def test_build_word_tokenizer_from_file_equals_from_split():
    from_file = build_word_tokenizer(WIKITEXT2_DIR / "valid.txt")
    from_split = build_word_tokenizer(load_corpus(WIKITEXT2_DIR, splits=["valid"])["validation"])
    assert from_file.get_vocab() == from_split.get_vocab()


@needs_wikitext2
def test_stream_equals_python_reference(sample_tokenizer):
    """Ids from the batched Rust path == the classic per-word dict lookup."""
    lines = (WIKITEXT2_DIR / "valid.txt").read_text(encoding="utf-8").split("\n")[:-1]
    vocab = sample_tokenizer.get_vocab()
    reference = [vocab.get(word, 0) for line in lines for word in line.split() + [EOS_TOKEN]]
    assert encode_lines(lines, sample_tokenizer).tolist() == reference


# --------------------------------------------------------------------------- corpus, local files


def test_local_wiki_token_names_and_aliases(tmp_path):
    for split, text in (("train", " a b \n \n c \n"), ("valid", " a \n"), ("test", " b c d \n")):
        write(tmp_path / f"wiki.{split}.tokens", text)
    corpus = load_corpus(tmp_path)
    assert list(corpus) == ["train", "validation", "test"]
    assert corpus["train"]["text"][:] == [" a b ", " ", " c "]
    tokenizer = build_word_tokenizer(corpus["train"])
    assert split_to_stream(corpus, "train", tokenizer).tolist() == [2, 3, 1, 1, 4, 1]
    assert split_to_stream(corpus, "dev", tokenizer).tolist() == [2, 1]
    assert list(load_corpus(str(tmp_path), splits=["valid"])) == ["validation"]
    as_dict = load_corpus({"train": tmp_path / "wiki.train.tokens", "valid": str(tmp_path / "wiki.valid.tokens")})
    assert list(as_dict) == ["train", "validation"]


def test_line_endings_and_empty_lines(tmp_path):
    corpus = load_corpus({"train": write(tmp_path / "crlf.txt", "a b\r\n\r\nc")})  # no final newline
    assert corpus["train"]["text"][:] == ["a b", "", "c"]
    tokenizer = build_word_tokenizer(corpus["train"])
    assert split_to_stream(corpus, "train", tokenizer).tolist() == [2, 3, 1, 1, 4, 1]
    only_newline = load_corpus({"test": write(tmp_path / "nl.txt", "\n")})
    assert split_to_stream(only_newline, "test", tokenizer).tolist() == [1]


def test_local_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no corpus files"):
        load_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_corpus({"train": tmp_path / "missing.txt"})
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_corpus({"train": tmp_path})
    with pytest.raises(ValueError, match="empty"):
        load_corpus({"train": write(tmp_path / "empty.txt", "")})
    write(tmp_path / "train.txt", " a \n")
    with pytest.raises(ValueError, match="unknown split name 'tain'"):
        load_corpus({"tain": tmp_path / "train.txt"})
    with pytest.raises(ValueError, match="unknown split name"):
        load_corpus(tmp_path, splits=["train", "holdout"])
    with pytest.raises(FileNotFoundError, match="split 'test'.*test.txt"):
        load_corpus(tmp_path, splits=["train", "test"])
    with pytest.raises(ValueError, match="single file"):
        load_corpus(tmp_path / "train.txt")
    with pytest.raises(ValueError, match="text_column"):
        load_corpus(tmp_path, text_column="sentence")
    write(tmp_path / "wiki.train.tokens", " a \n")
    with pytest.raises(ValueError, match="several files for split 'train'"):
        load_corpus(tmp_path)
    corpus = load_corpus({"train": tmp_path / "train.txt"})
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train'\]"):
        get_split(corpus, "test")
    with pytest.raises(ValueError, match="eos_token"):
        encode_lines(["a"], AutoTokenizerStub())


class AutoTokenizerStub:
    eos_token_id = None


# --------------------------------------------------------------------------- corpus, Hub branch


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace datasets.load_dataset; records the calls, serves in-memory splits."""
    calls: list[tuple] = []
    tables: dict[str, dict] = {}

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.DatasetDict({split: datasets.Dataset.from_dict(t) for split, t in tables[path].items()})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls, tables


def test_hub_ptb_text_only_sentence_column(fake_hub):
    calls, tables = fake_hub
    tables["ptb-text-only/ptb_text_only"] = {
        "train": {"sentence": ["a b", "c"], "idx": [0, 1]},
        "validation": {"sentence": ["a"], "idx": [0]},
        "test": {"sentence": ["b"], "idx": [0]},
    }
    corpus = load_corpus("ptb-text-only/ptb_text_only")
    assert calls == [("ptb-text-only/ptb_text_only", None, {})]
    assert list(corpus) == ["train", "validation", "test"]
    assert corpus["train"].column_names == ["text"]
    tokenizer = build_word_tokenizer(corpus["train"])
    assert split_to_stream(corpus, "valid", tokenizer).tolist() == [2, 1]


def test_hub_wikitext_config_and_kwargs(fake_hub):
    calls, tables = fake_hub
    tables["wikitext"] = {
        "train": {"text": ["", " = T = \n", " a b \n"]},
        "validation": {"text": [" a \n"]},
        "test": {"text": [" b \n"]},
    }
    corpus = load_corpus("wikitext", "wikitext-2-v1", splits=["train", "test"], revision="main")
    assert calls == [("wikitext", "wikitext-2-v1", {"revision": "main"})]
    assert list(corpus) == ["train", "test"]
    tokenizer = build_word_tokenizer(corpus["train"])
    assert split_to_stream(corpus, "train", tokenizer).numel() == 1 + 4 + 3  # "" -> just <eos>


def test_hub_text_column_errors(fake_hub):
    _, tables = fake_hub
    tables["org/two-columns"] = {"train": {"title": ["t"], "body": ["a b"]}}
    with pytest.raises(ValueError, match=r"\['title', 'body'\]"):
        load_corpus("org/two-columns")
    with pytest.raises(ValueError, match=r"no column 'content'.*\['title', 'body'\]"):
        load_corpus("org/two-columns", text_column="content")
    assert load_corpus("org/two-columns", text_column="body")["train"]["text"][:] == ["a b"]
    with pytest.raises(ValueError, match="split="):
        load_corpus("org/two-columns", split="train")


def test_already_loaded_dataset_dict_is_normalized():
    loaded = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": ["a b"], "idx": [0]}),
            "valid": datasets.Dataset.from_dict({"sentence": ["a"], "idx": [0]}),
        }
    )
    corpus = load_corpus(loaded)
    assert list(corpus) == ["train", "validation"] and corpus["validation"].column_names == ["text"]
    assert list(load_corpus(loaded, splits=["valid"])) == ["validation"]
    with pytest.raises(ValueError, match=r"no column 'body'.*\['sentence', 'idx'\]"):
        load_corpus(loaded, text_column="body")


def test_local_looking_paths_never_reach_the_hub(fake_hub, tmp_path):
    calls, _ = fake_hub
    for source in ("./no/such/dir", str(tmp_path / "absent"), "corpus/train.txt", "~/nothing-here-xyz"):
        with pytest.raises(FileNotFoundError):
            load_corpus(source)
    assert calls == []


# --------------------------------------------------------------------------- batching


def test_batchify_rows_are_contiguous_and_tail_is_dropped():
    stream = torch.arange(23)
    data = batchify(stream, 4)
    assert data.shape == (4, 5)
    assert num_dropped_tokens(23, 4) == 3
    for row in range(4):
        assert data[row].tolist() == list(range(row * 5, row * 5 + 5))
    assert batchify(torch.arange(8), 4).shape == (4, 2) and num_dropped_tokens(8, 4) == 0


def test_batchify_errors():
    with pytest.raises(ValueError, match="empty"):
        batchify(torch.empty(0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="larger than the stream"):
        batchify(torch.arange(3), 4)
    with pytest.raises(ValueError, match="batch_size"):
        batchify(torch.arange(3), 0)
    with pytest.raises(ValueError, match="1-D"):
        batchify(torch.zeros(2, 3, dtype=torch.long), 1)


def test_fixed_bptt_windows_cover_the_data_once():
    data = batchify(torch.arange(1000), 7)  # (7, 142)
    batch_size, row_length = data.shape
    iterator = BPTTIterator(data, bptt=20)
    windows = list(iterator)
    assert len(windows) == iterator.nominal_num_windows == 8
    assert [inputs.shape[1] for inputs, _ in windows] == [20] * 7 + [1]
    assert sum(targets.numel() for _, targets in windows) == row_length * batch_size - batch_size
    assert iterator.num_target_tokens == row_length * batch_size - batch_size
    inputs_all = torch.cat([inputs for inputs, _ in windows], dim=1)
    targets_all = torch.cat([targets for _, targets in windows], dim=1)
    assert torch.equal(inputs_all, data[:, :-1]) and torch.equal(targets_all, data[:, 1:])
    assert all(inputs.is_contiguous() and targets.is_contiguous() for inputs, targets in windows)
    # next loop = next epoch, same windows
    assert all(torch.equal(a[0], b[0]) for a, b in zip(windows, iterator))


@pytest.mark.parametrize(
    "make_generator", [lambda: random.Random(3), lambda: torch.Generator().manual_seed(3), lambda: 3]
)
def test_variable_bptt_is_reproducible_and_bounded(make_generator):
    data = batchify(torch.arange(40_000), 4)  # (4, 10000)
    lengths = []
    seen_targets = 0
    iterator = BPTTIterator(data, bptt=70, variable_length=True, generator=make_generator(), max_seq_len=80)
    for inputs, targets in iterator:
        lengths.append(inputs.shape[1])
        seen_targets += targets.numel()
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert seen_targets == data.numel() - data.shape[0]
    assert min(lengths[:-1]) >= 5 and max(lengths) <= 80
    assert 60 < sum(lengths) / len(lengths) < 72  # ~0.95 * 70 + 0.05 * 35, capped
    assert any(length < 50 for length in lengths)  # some bptt/2 draws happened
    again = BPTTIterator(data, bptt=70, variable_length=True, generator=make_generator(), max_seq_len=80)
    assert [inputs.shape[1] for inputs, _ in again] == lengths
    other = BPTTIterator(data, bptt=70, variable_length=True, generator=4, max_seq_len=80)
    assert [inputs.shape[1] for inputs, _ in other] != lengths


@pytest.mark.parametrize(
    "make_generator", [lambda seed: random.Random(seed), lambda seed: torch.Generator().manual_seed(seed)]
)
def test_resume_mid_epoch_is_exact(tmp_path, make_generator):
    data = batchify(torch.arange(5_000), 5)  # (5, 1000)

    def make(seed: int) -> BPTTIterator:
        return BPTTIterator(data, bptt=30, variable_length=True, generator=make_generator(seed))

    def two_epochs(iterator: BPTTIterator, stop_after: int | None = None) -> list[torch.Tensor]:
        seen = []
        for _ in range(2):
            for inputs, _ in iterator:
                seen.append(inputs)
                if stop_after is not None and len(seen) == stop_after:
                    return seen
        return seen

    uninterrupted = two_epochs(make(0))
    interrupted = make(0)
    first_part = two_epochs(interrupted, stop_after=7)
    torch.save(interrupted.state_dict(), tmp_path / "state.pt")
    resumed = make(12345)  # a different seed: the loaded state must win
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    rest = []
    for _epoch in range(2):  # finish epoch 1, then all of epoch 2
        rest.extend(inputs for inputs, _ in resumed)
    assert len(first_part) + len(rest) == len(uninterrupted)
    assert all(torch.equal(a, b) for a, b in zip(first_part + rest, uninterrupted))


def test_bptt_iterator_errors():
    data = batchify(torch.arange(100), 4)  # (4, 25)
    with pytest.raises(ValueError, match="bptt must be >= 1"):
        BPTTIterator(data, bptt=0)
    with pytest.raises(ValueError, match="longer than the data"):
        BPTTIterator(data, bptt=25)
    BPTTIterator(data, bptt=24)  # exactly the data: fine
    with pytest.raises(ValueError, match="at least 2 tokens"):
        BPTTIterator(batchify(torch.arange(4), 4), bptt=1)
    with pytest.raises(ValueError, match="batchify"):
        BPTTIterator(torch.arange(10), bptt=2)
    with pytest.raises(ValueError, match="min_seq_len"):
        BPTTIterator(data, bptt=10, variable_length=True, min_seq_len=30, max_seq_len=20)
    with pytest.raises(TypeError, match="generator"):
        BPTTIterator(data, bptt=10, generator="seed")
    saved = BPTTIterator(data, bptt=10, generator=random.Random(0)).state_dict()
    with pytest.raises(ValueError, match="bptt=10"):
        BPTTIterator(data, bptt=5, generator=random.Random(0)).load_state_dict(saved)
    with pytest.raises(ValueError, match="torch.Generator"):
        BPTTIterator(data, bptt=10, generator=torch.Generator()).load_state_dict(saved)
    with pytest.raises(ValueError, match="outside the data"):
        BPTTIterator(data, bptt=10, generator=random.Random(0)).load_state_dict({**saved, "position": 99})


# --------------------------------------------------------------------------- embedded sample


def test_sample_corpus_loads_with_documented_counts(sample_corpus, sample_tokenizer):
    assert list(sample_corpus) == ["train", "validation", "test"]
    for split, num_tokens in SAMPLE_TOKENS.items():
        assert split_to_stream(sample_corpus, split, sample_tokenizer).numel() == num_tokens
    total_bytes = sum(path.stat().st_size for path in sample_corpus_dir().glob("*.txt"))
    assert 300_000 < total_bytes < 400_000
    readme = (sample_corpus_dir() / "README.md").read_text(encoding="utf-8")
    for needed in ("CC BY-SA 3.0", "Merity", "Wikipedia", "wikitext-2-v1", "make_sample"):
        assert needed in readme
    # end to end: sample -> stream -> (B, n) -> windows
    train = batchify(split_to_stream(sample_corpus, "train", sample_tokenizer), 10)
    assert sum(t.numel() for _, t in BPTTIterator(train, bptt=35)) == train.numel() - 10


@needs_wikitext2
def test_sample_is_whole_article_prefix_and_regenerates_identically(tmp_path):
    for split, name in make_sample_module.SAMPLE_FILE_NAMES.items():
        sample = (sample_corpus_dir() / name).read_bytes()
        source = (WIKITEXT2_DIR / name).read_bytes()
        assert source.startswith(sample), split
        following = source[len(sample) :].decode("utf-8").split("\n")
        assert following[0] == " " and make_sample_module.is_article_title(following, 1), split
    written = make_sample_module.make_sample(WIKITEXT2_DIR, tmp_path)
    for split, path in written.items():
        assert path.read_bytes() == (sample_corpus_dir() / path.name).read_bytes(), split
    lines = (WIKITEXT2_DIR / "valid.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(make_sample_module.article_starts(lines)) == 60


@needs_ptb
def test_no_ptb_text_in_the_package():
    ptb_lines = set((PTB_DIR / "valid.txt").read_text().split("\n")) - {""}
    package_dir = Path(make_sample_module.__file__).parent
    for path in package_dir.rglob("*"):
        if path.is_file() and path.suffix in {".txt", ".md", ".py", ""}:
            lines = set(path.read_text(encoding="utf-8", errors="replace").split("\n"))
            assert not ptb_lines & lines, path


def test_data_package_does_not_import_the_model():
    """The data package imports nothing else of the library but the field checks, a standard-library
    module kept in the model's folder because the configuration (which travels alone) uses them."""
    package_dir = Path(make_sample_module.__file__).parent
    for path in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if module == "..models.mtlstm.checks":
                    continue
                assert "models" not in module and not module.startswith(".."), (path, module)
            elif isinstance(node, ast.Import):
                assert all("mtlstm_hf" not in alias.name for alias in node.names), path


def test_causal_lm_blocks_cut_the_eos_joined_stream_into_equal_blocks():
    """Oracle: the split's ids written out by hand (one <eos> per line, empty lines included)."""
    from mtlstm_hf.data import causal_lm_blocks

    lines = ["a b", "", "c a b b", "c"]
    tokenizer = build_word_tokenizer(lines, convention="whitespace")
    corpus = datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": lines}))
    word = tokenizer.convert_tokens_to_ids
    eos = tokenizer.eos_token_id
    stream = [word("a"), word("b"), eos, eos, word("c"), word("a"), word("b"), word("b"), eos, word("c"), eos]
    blocks = causal_lm_blocks(corpus, tokenizer, block_size=3)["train"]
    assert blocks["input_ids"] == [stream[0:3], stream[3:6], stream[6:9]]  # the 2-token tail is dropped
    assert blocks["labels"] == blocks["input_ids"]
    assert blocks["attention_mask"] == [[1, 1, 1]] * 3
    with pytest.raises(ValueError, match="block_size=12 is longer than the 'train' split"):
        causal_lm_blocks(corpus, tokenizer, block_size=12)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="block_size must be a positive int"):
            causal_lm_blocks(corpus, tokenizer, block_size=bad)
