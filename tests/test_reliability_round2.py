"""Conversion inputs, tokenizers and the frequency-binned metrics.

Each kind of fault has one test against a real oracle, and each test fails on the code before
the fix: the source layouts rebuilt from the originals' code (salesforce's WeightDrop keeps the
raw matrix under ``module.``, fastai's WeightDropout on itself) and their forward from the
equations; ``pickle.loads`` and ``json.loads`` for what a word-list file holds; a dictionary
lookup for what a word-level tokenizer gives; transformers' own collator; counts written out by
hand; the token streams compared position by position.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from test_convert import AWDLike, assert_same_as_reference, reference_run, two_windows, write_corpus
from torch import nn
from transformers import AutoTokenizer, DataCollatorForLanguageModeling

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.convert import Vocabulary, convert_model, read_word_list, tokenizer_for_vocabulary
from mtlstm_hf.convert.cli import main as convert_main
from mtlstm_hf.data import (
    CONVENTIONS,
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    build_word_tokenizer,
    split_words,
    unknown_word_id,
    word_tokenizer_from_vocab,
)
from mtlstm_hf.evaluation import (
    bin_labels,
    binned_perplexity,
    binned_perplexity_by_frequency,
    frequency_bin_of_token,
    frequency_binned_perplexity_metric_path,
    token_counts,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def convert_command(tmp_path, capsys, weights, vocab, family: str) -> tuple[int, str, Path]:
    """``mtlstm-convert`` through its ``main``: ``(exit code, stderr, OUTPUT_DIR)``."""
    out = tmp_path / "new" / "converted"
    code = convert_main(["--from", family, str(weights), "--vocab", str(vocab), str(out)])
    return code, capsys.readouterr().err, out


def assert_refused(code: int, error: str, out: Path, pattern: str) -> None:
    """Exit 2, one line on stderr matching ``pattern``, nothing written."""
    assert code == 2, error
    assert error.startswith("mtlstm-convert: error: ") and len(error.strip().splitlines()) == 1, error
    assert re.search(pattern, error), error
    assert not out.exists() and not out.parent.exists()


# --------------------------------------------------------------------------- item 7: source layouts


class FastaiWeightDropout(nn.Module):
    """fastai's ``WeightDropout`` (``text/models/awdlstm.py``) as it lays out its tensors: the raw
    recurrent matrix registered on the wrapper itself, the LSTM under ``module``, the working copy
    a plain attribute (``w.clone()`` of a parameter is no parameter, so not in the state dict)."""

    def __init__(self, module: nn.LSTM):
        super().__init__()
        self.module = module
        weight = module.weight_hh_l0
        delattr(module, "weight_hh_l0")
        self.register_parameter("weight_hh_l0_raw", nn.Parameter(weight.data))
        module.weight_hh_l0 = weight.data.clone()


class FastaiEncoder(nn.Module):
    """fastai's ``AWD_LSTM`` module tree: ``encoder``, ``encoder_dp.emb`` (the same embedding), ``rnns``."""

    def __init__(self, source: AWDLike):
        super().__init__()
        self.encoder = source.encoder
        self.encoder_dp = nn.Module()
        self.encoder_dp.emb = source.encoder
        self.rnns = nn.ModuleList(FastaiWeightDropout(rnn) for rnn in source.rnns)


def fastai_state_dict(source: AWDLike, prefixed: bool = True, duplicate: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of ``get_language_model``'s ``SequentialRNN(AWD_LSTM, LinearDecoder)`` holding
    ``source``'s weights (``prefixed=False``: the same modules without the ``0.``/``1.`` of the
    sequence; ``duplicate=False``: without ``encoder_dp.emb.weight``, as safetensors stores a
    shared matrix once)."""
    source = copy.deepcopy(source)  # the wrappers take the recurrent matrices off its LSTMs
    decoder = nn.Module()
    decoder.decoder = source.decoder
    state = nn.Sequential(FastaiEncoder(source), decoder).state_dict()
    state = {key: value.clone() for key, value in state.items()}
    if not prefixed:
        state = {key.split(".", 1)[1]: value for key, value in state.items()}
    if not duplicate:
        state = {key: value for key, value in state.items() if "encoder_dp" not in key}
    return state


def test_each_family_refuses_another_familys_layout_and_names_the_one_that_fits(tmp_path, capsys):
    """The shapes of awd-lstm and fastai fit each other; where the raw recurrent matrix sits tells
    them apart. Before the fix, awd-lstm files converted as fastai (with fastai's dropouts) and
    fastai files without the sequence's prefix converted as awd-lstm."""
    folder, words = write_corpus(tmp_path / "corpus")
    itos = tmp_path / "itos.txt"
    itos.write_text("\n".join(words) + "\n")
    source = AWDLike(len(words), 6, 10, 3).eval()
    torch.save(source.awd_state_dict(), tmp_path / "awd.pt")  # WeightDrop: rnns.k.module.weight_hh_l0_raw
    torch.save(source.state_dict(), tmp_path / "plain.pt")  # no weight drop: rnns.k.weight_hh_l0
    for name in ("awd.pt", "plain.pt"):
        code, error, out = convert_command(tmp_path, capsys, tmp_path / name, itos, "fastai-awd-lstm")
        assert_refused(
            code, error, out, r"layer 1 is not laid out as fastai-awd-lstm .*use --from awd-lstm or --from huthlab-mts"
        )
    fastai_keys = sorted(fastai_state_dict(source))
    assert "0.rnns.0.weight_hh_l0_raw" in fastai_keys and "0.rnns.0.module.weight_ih_l0" in fastai_keys
    assert "0.encoder_dp.emb.weight" in fastai_keys and "0.rnns.0.module.weight_hh_l0" not in fastai_keys
    torch.save(fastai_state_dict(source, prefixed=False, duplicate=False), tmp_path / "fastai.pt")
    code, error, out = convert_command(tmp_path, capsys, tmp_path / "fastai.pt", itos, "awd-lstm")
    assert_refused(code, error, out, r"layer 1 is not laid out as awd-lstm .*use --from fastai-awd-lstm\)")
    torch.save(fastai_state_dict(source), tmp_path / "fastai_prefixed.pt")
    code, error, out = convert_command(tmp_path, capsys, tmp_path / "fastai_prefixed.pt", itos, "awd-lstm")
    assert_refused(code, error, out, r"no embedding matrix.*use --from fastai-awd-lstm\)")
    # Each file converts with its own family, to the source's own forward.
    windows = two_windows(len(words))
    families = {
        "awd.pt": "awd-lstm",
        "plain.pt": "awd-lstm",
        "fastai.pt": "fastai-awd-lstm",
        "fastai_prefixed.pt": "fastai-awd-lstm",
    }
    for name, family in families.items():
        model = convert_model(tmp_path / name, itos, family).model
        assert_same_as_reference(model, *reference_run(source, windows), windows)
        assert model.config.input_dropout == (0.25 if family == "fastai-awd-lstm" else 0.4)


def test_a_truncated_weights_file_is_bad_input_naming_it(tmp_path, capsys):
    """torch's zip reader seeks past the end of a truncated file: OSError(EINVAL), which was
    reported as an I/O failure (exit 4, "Invalid argument"). Every truncation is exit 2 naming the
    file; the whole file still converts."""
    folder, words = write_corpus(tmp_path / "corpus")
    state = AWDLike(len(words), 6, 10, 2).awd_state_dict()
    torch.save(state, tmp_path / "whole.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("whole.pt", "legacy.pt"):
        data = (tmp_path / name).read_bytes()
        for cut in (len(data) // 2, len(data) - 100, 20):
            (tmp_path / "cut.pt").write_bytes(data[:cut])
            code, error, out = convert_command(tmp_path, capsys, tmp_path / "cut.pt", folder, "awd-lstm")
            assert_refused(code, error, out, r"'[^']*cut\.pt' is not a readable torch or safetensors file")
    code, error, out = convert_command(tmp_path, capsys, tmp_path / "whole.pt", folder, "awd-lstm")
    assert code == 0, error


# --------------------------------------------------------------------------- item 7: word-list files


def test_word_list_files_are_read_as_what_they_hold(tmp_path, capsys):
    """A byte order mark is no part of the first word (it was: that word became <unk>); a pickle of
    any protocol is read as the pickle it is (protocols 0 and 1 were read as lines of text, then
    refused as a size mismatch); oracle: ``json.loads`` / ``pickle.loads`` of the same bytes."""
    itos = ["xxunk", "xxpad", "xxbos", "xxeos", "the", "cat"]
    files = {
        "bom.txt": b"\xef\xbb\xbf" + "\n".join(itos).encode() + b"\n",
        "bom.json": b"\xef\xbb\xbf" + json.dumps(itos).encode(),
        "p0.pkl": pickle.dumps(itos, protocol=0),
        "p1.pkl": pickle.dumps(itos, protocol=1),
        "p4.pkl": pickle.dumps(itos, protocol=4),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        if name.endswith(".pkl"):
            oracle = pickle.loads(data)
        else:
            text = data.decode("utf-8-sig")
            oracle = json.loads(text) if name.endswith(".json") else text.split()
        assert oracle == itos
        vocabulary = read_word_list(tmp_path / name)
        assert vocabulary.words == itos, name
        tokenizer = tokenizer_for_vocabulary(vocabulary)
        assert tokenizer("xxunk the cat zebra")["input_ids"] == [0, 4, 5, 0]
        assert unknown_word_id(tokenizer) == 0 and tokenizer.convert_ids_to_tokens(0) == "xxunk"
    (tmp_path / "utf16.txt").write_bytes("\n".join(itos).encode("utf-16"))
    with pytest.raises(ValueError, match=r"utf16\.txt' is neither UTF-8 text nor a pickle: UTF-16 text"):
        read_word_list(tmp_path / "utf16.txt")
    for protocol in (0, 1):
        (tmp_path / "cut.pkl").write_bytes(pickle.dumps(itos, protocol=protocol)[:-4])
        with pytest.raises(ValueError, match=r"word list '.*cut\.pkl' is a pickle that ends before its STOP opcode"):
            read_word_list(tmp_path / "cut.pkl")


@pytest.mark.parametrize(
    "name, data, message",
    [
        (
            "corpus.txt",
            b"the cat sat\non the mat\n",
            r"line 1 is 'the cat sat', which holds whitespace.*give the corpus as its folder",
        ),
        ("blank.txt", b"xxunk\nxxeos\n\nthe\n", r"line 3 is '', which is empty"),
        ("trailing.txt", b"xxunk\nxxeos \nthe\n", r"line 2 is 'xxeos ', which holds whitespace"),
        (
            "spacy.json",
            json.dumps(["xxunk", "xxeos", "\n \n ", "the"]).encode(),
            r"entry 2 is '\\n \\n ', which holds whitespace.*rename it",
        ),
        ("bool_ids.json", json.dumps({"xxunk": 0, "xxeos": True, "the": 2}).encode(), r"ids being the integers 0\.\.2"),
    ],
)
def test_a_word_list_entry_no_text_can_produce_is_refused(tmp_path, capsys, name, data, message):
    """Text is split on whitespace, so an entry that is empty or holds whitespace never matches:
    it was accepted (a corpus file given as a word list became a vocabulary of lines)."""
    folder, words = write_corpus(tmp_path / "corpus")
    (tmp_path / name).write_bytes(data)
    torch.save(AWDLike(4, 6, 10, 2).awd_state_dict(), tmp_path / "w.pt")
    code, error, out = convert_command(tmp_path, capsys, tmp_path / "w.pt", tmp_path / name, "awd-lstm")
    assert_refused(code, error, out, rf"word list '[^']*{re.escape(name)}'.*{message}")
    with pytest.raises(ValueError, match="holds whitespace"):
        tokenizer_for_vocabulary(Vocabulary(["<unk>", "<eos>", "a b"], "a list", []))


def test_word_class_files_are_read_without_the_byte_order_mark_and_refuse_keys_no_text_gives(tmp_path):
    """mtlstm-analyze --word-classes: the first word carried the mark and was then ignored as a word
    outside the vocabulary, silently. Oracle: the same lines split by hand."""
    from mtlstm_hf.analysis.report import load_word_classes

    lines = ["the DET", "cat NOUN", "sat VERB"]
    (tmp_path / "classes.txt").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    (tmp_path / "classes.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(dict(line.split() for line in lines)).encode())
    for name in ("classes.txt", "classes.json"):
        assert load_word_classes(tmp_path / name) == dict(line.split() for line in lines)
    (tmp_path / "bad.json").write_text(json.dumps({"the": "DET", "new york": "PROPN"}))
    with pytest.raises(ValueError, match=r"bad\.json': the key 'new york' is no word"):
        load_word_classes(tmp_path / "bad.json")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 NOUN\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt' is not UTF-8 text"):
        load_word_classes(tmp_path / "latin1.txt")


# --------------------------------------------------------------------------- item 9: <pad> in text


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_the_word_pad_in_text_is_an_unknown_word_not_padding(tmp_path, convention):
    """``<pad>`` in text became the pad id: a row the model never learnt, whose label the collator
    drops. Oracle: a dictionary lookup of each word (unknown words -> <unk>); the collator keeps
    the label of that position and masks only real padding."""
    tokenizer = build_word_tokenizer(["the cat sat on the mat", "a dog"], convention=convention)
    vocab = tokenizer.get_vocab()
    pad = tokenizer.pad_token_id
    assert (tokenizer.pad_token, pad) == (PAD_TOKEN, len(tokenizer) - 1)
    text = "the <pad> cat"
    expected = [
        vocab.get(word, vocab[UNK_TOKEN]) if word != PAD_TOKEN else vocab[UNK_TOKEN]
        for word in split_words(text, convention)
    ]
    tokenizer.save_pretrained(tmp_path / "saved")
    for loaded in (tokenizer, AutoTokenizer.from_pretrained(tmp_path / "saved")):
        assert loaded(text)["input_ids"] == expected == [vocab["the"], vocab[UNK_TOKEN], vocab["cat"]]
        assert loaded(f"a {EOS_TOKEN} dog")["input_ids"] == [
            vocab["a"],
            vocab[EOS_TOKEN],
            vocab["dog"],
        ]  # <eos> is still read
        assert loaded.pad_token_id == pad and loaded.convert_tokens_to_ids(PAD_TOKEN) == pad
        batch = DataCollatorForLanguageModeling(loaded, mlm=False)([loaded(text), loaded("a")])
        assert batch["input_ids"].tolist() == [expected, [pad, pad, vocab["a"]]]
        assert batch["labels"].tolist() == [expected, [-100, -100, vocab["a"]]]
    # a table without a padding-only <pad> (pad = <eos>) and a vocabulary that has <pad> as a word
    assert word_tokenizer_from_vocab({UNK_TOKEN: 0, EOS_TOKEN: 1, "a": 2})("a <pad>")["input_ids"] == [2, 0]
    as_word = word_tokenizer_from_vocab([UNK_TOKEN, EOS_TOKEN, PAD_TOKEN, "a"], pad_is_word=True)
    assert as_word("a <pad>")["input_ids"] == [3, 2] and as_word.pad_token_id == 2
    with pytest.raises(ValueError, match="must have the last id"):
        word_tokenizer_from_vocab([UNK_TOKEN, EOS_TOKEN, PAD_TOKEN, "a"])


def test_a_converted_model_reads_pad_in_text_as_its_source_did(tmp_path):
    """Converted: an added <pad> (id V, probability 0) read from text gave the target probability
    0 (an infinite loss); it is the unknown word, scored as the source scores <unk>. A vocabulary's
    own pad word (fastai's xxpad) keeps its id, as the source read it."""
    folder, words = write_corpus(tmp_path / "corpus")
    source = AWDLike(len(words), 6, 10, 2).eval()
    torch.save(source.awd_state_dict(), tmp_path / "w.pt")
    conversion = convert_model(tmp_path / "w.pt", folder, "awd-lstm")
    tokenizer, model = conversion.tokenizer, conversion.model
    assert tokenizer.pad_token_id == len(words)
    ids = tokenizer("w1 <pad> w2 w3")["input_ids"]
    assert ids == [words.index("w1"), words.index("<unk>"), words.index("w2"), words.index("w3")]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])).logits, -1)[0, :-1].gather(
            -1, torch.tensor(ids[1:])[:, None]
        )
    expected, _ = source.log_probs(torch.tensor([ids]))
    assert torch.allclose(log_probs[:, 0], expected[0, :-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0], atol=1e-6)
    fastai = tokenizer_for_vocabulary(Vocabulary(["xxunk", "xxpad", "xxbos", "xxeos", "the"], "itos", []))
    assert fastai("the xxpad <pad>")["input_ids"] == [4, 1, 0] and fastai.pad_token_id == 1
    added = tokenizer_for_vocabulary(Vocabulary(["xxunk", "xxbos", "xxeos", "the"], "itos", []))
    assert added("the <pad>")["input_ids"] == [3, 0] and added.pad_token_id == 4


# --------------------------------------------------------------------------- item 9: blank training text


def test_blank_training_text_is_refused_like_the_corpus_loader_refuses_it(tmp_path):
    """Lines without words gave a tokenizer of <unk>, <eos> and <pad> only."""
    for blank in (["", "   ", "\t"], [" "]):
        with pytest.raises(ValueError, match=r"the training text has no words \(\d line\(s\), all blank\)"):
            build_word_tokenizer(blank)
    (tmp_path / "train.txt").write_text("\n  \n\n")
    with pytest.raises(ValueError, match=r"the training text '.*train\.txt' has no words \(3 line\(s\), all blank\)"):
        build_word_tokenizer(tmp_path / "train.txt")
    assert len(build_word_tokenizer(["", " a "])) == 4  # one word is enough: <unk>, <eos>, a, <pad>


# --------------------------------------------------------------------------- item 9: counts


def test_counts_that_are_not_integers_are_refused_wherever_they_enter():
    """``torch.as_tensor([True, 20000])`` is ``[1, 20000]`` and ``operator.index(True)`` is 1: a
    boolean among counts passed as 0/1. Oracle for the counts that stay accepted: the bins written
    out by hand."""
    assert frequency_bin_of_token([20000, 500, 5]).tolist() == [0, 2, 3]
    assert frequency_bin_of_token(torch.tensor([[20000], [5]])).tolist() == [[0], [3]]
    bad = [
        (lambda: frequency_bin_of_token([20000, True]), r"counts must hold integer counts .*got bool True"),
        (lambda: frequency_bin_of_token([20000.0, 5]), r"counts must hold integer counts .*got float 20000\.0"),
        (lambda: frequency_bin_of_token([[5], [7.5]]), r"got float 7\.5"),
        (
            lambda: binned_perplexity_by_frequency([-1.0, -2.0], [20000, True]),
            r"token_frequencies must hold integer counts",
        ),
        (lambda: binned_perplexity_by_frequency([-1.0, -2.0], [20000.7, 5]), r"token_frequencies .*got float 20000\.7"),
        (
            lambda: binned_perplexity_by_frequency([-1.0, False], [20000, 5]),
            r"log_probs must hold real log-probabilities",
        ),
        (
            lambda: binned_perplexity([-1.0], [0], torch.tensor([True, False])),
            r"bin_of_token must hold integer bin indices",
        ),
        (lambda: binned_perplexity([-1.0], [True], [0, 1]), r"token_ids must hold integer token ids"),
        (lambda: bin_labels([True, 100]), r"edges must be a sequence of positive integers"),
        (lambda: bin_labels([torch.tensor(True), 100]), r"edges must be a sequence of positive integers"),
        (lambda: token_counts([torch.tensor([0, 1])], True), r"vocab_size must be a positive integer"),
        (lambda: token_counts([[0, True]], 3), r"streams\[0\] must hold integer token ids"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message):
            call()


def test_state_gradient_classes_must_be_integers():
    from mtlstm_hf.analysis.state_gradients import _class_table

    assert _class_table({0: 1, 3: 2}, 5).tolist() == [1, -1, -1, 2, -1]
    for classes in ({0: 1.7}, {True: 1}, [0, 1, 2.5], torch.tensor([True, False, True])):
        with pytest.raises(ValueError, match="token_classes must hold integer"):
            _class_table(classes, 3)


_METRIC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import evaluate
    metric = evaluate.load(sys.argv[1])
    results = {}
    for name, freqs in json.loads(sys.argv[2]).items():
        try:
            results[name] = metric.compute(log_probs=[-1.0, -3.0], token_frequencies=freqs)["bins"]["<100"]["n_tokens"]
        except ValueError as error:
            results[name] = "ValueError: " + str(error)
    print(json.dumps(results))
    """
)


def test_the_evaluate_metric_refuses_float_and_boolean_counts(tmp_path):
    """datasets casts the inputs to the declared int64 before the metric computes: 20000.7 became
    20000, True became 1, silently. Oracle for the accepted case: the hand-computed bins."""
    (tmp_path / "script.py").write_text(_METRIC_SCRIPT)
    cases = {"ints": [20000, 5], "floats": [20000.7, 5.2], "booleans": [True, False], "mixed": [20000, True]}
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), frequency_binned_perplexity_metric_path(), json.dumps(cases)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["ints"] == 1  # 5 < 100: one target in the rarest bin
    assert (
        results["floats"].startswith("ValueError: token_frequencies must hold integer counts")
        and "20000.7" in results["floats"]
    )
    assert results["booleans"].startswith("ValueError: token_frequencies") and "bool True" in results["booleans"]
    assert results["mixed"].startswith("ValueError: token_frequencies") and "bool True" in results["mixed"]


# --------------------------------------------------------------------------- item 9: --compare


def test_compare_refuses_two_models_whose_tokenizers_split_the_text_differently(tmp_path, capsys):
    """Same word -> id table, other conventions: the streams differ (``W1`` is an unknown word for
    "whitespace", ``w1`` for "ptb", which lowers the case), so target t of one model is not target
    t of the other; --compare paired them silently (streams of one length). Oracle: the two streams
    written out by dictionary lookups."""
    from mtlstm_hf.evaluation import compare_checkpoints
    from mtlstm_hf.evaluation.cli import main as eval_main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text(" w1 w2 , w3 \n w2 w3 w1 \n")
    (corpus / "valid.txt").write_text(" w1 w2 \n")
    (corpus / "test.txt").write_text(" w1 w2 w3 \n w3 W1 w2 \n")
    whitespace = build_word_tokenizer(corpus / "train.txt", convention="whitespace")
    vocab = whitespace.get_vocab()
    ptb = word_tokenizer_from_vocab(vocab, "ptb")
    assert ptb.get_vocab() == vocab
    folders = []
    for name, tokenizer in (("a", whitespace), ("b", ptb)):
        torch.manual_seed(0)
        config = tiny_config(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
        )
        MTLSTMForCausalLM(config).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        folders.append(str(tmp_path / name))

    def oracle(words_of_line) -> list[int]:
        lines = (corpus / "test.txt").read_text().splitlines()
        return [vocab.get(word, vocab[UNK_TOKEN]) for line in lines for word in [*words_of_line(line), EOS_TOKEN]]

    stream_a, stream_b = oracle(str.split), oracle(lambda line: line.lower().split())
    assert len(stream_a) == len(stream_b)
    position = next(index for index, (x, y) in enumerate(zip(stream_a, stream_b)) if x != y)
    assert position == 5 and (stream_a[position], stream_b[position]) == (vocab[UNK_TOKEN], vocab["w1"])
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(folders[0])} and {re.escape(folders[1])} give different token streams for the test split",
    ):
        compare_checkpoints(folders[0], folders[1], corpus, block_size=2, n_resamples=10)
    code = eval_main(
        [folders[0], "--data", str(corpus), "--compare", folders[1], "--n-resamples", "10", "--block-size", "2"]
    )
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1, error
    assert (
        f"at position {position}, line 2, where {folders[0]} has '<unk>' (id {vocab[UNK_TOKEN]}) and {folders[1]} has 'w1'"
        in error
    )
    assert "word conventions 'whitespace' and 'ptb'" in error
    # the same tokenizer on both sides still compares
    assert (
        eval_main(
            [folders[0], "--data", str(corpus), "--compare", folders[0], "--n-resamples", "10", "--block-size", "2"]
        )
        == 0
    )
