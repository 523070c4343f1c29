"""mtlstm-convert: AWD-LSTM-family checkpoints as mtlstm models.

Oracles: each source layout is rebuilt here from torch.nn.LSTM modules (one per layer as
salesforce/awd-lstm-lm and HuthLab do, one multi-layer module as pytorch/examples'
word_language_model does; fastai's own AWD_LSTM when fastai is installed), its forward written
from the originals' equations (eval mode: embedding lookup, the LSTM stack, the linear decoder,
log-softmax), and compared with the converted model on the same tokens over two windows with
the state carried: log-probabilities and final states within 1e-6 in float32.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import load_in_fresh_process_without_package
from torch import nn

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.convert import (
    EXPORT_HINTS,
    FAMILIES,
    SOURCES,
    FullPickleError,
    Vocabulary,
    convert_checkpoint,
    convert_model,
    corpus_vocabulary,
    read_word_list,
    tokenizer_for_vocabulary,
)
from mtlstm_hf.convert.cli import main as convert_main
from mtlstm_hf.data import unknown_word_id
from mtlstm_hf.models.mtlstm.timescales import realize_timescales

TOLERANCE = 1e-6
WORDS = [f"w{i}" for i in range(15)]


# --------------------------------------------------------------------------- sources rebuilt here


def write_corpus(folder, seed: int = 0):
    """train/valid/test files whose first-occurrence order is known: returns ``(folder, words)``,
    the words in the id order the originals' Dictionary gives them."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    order: dict[str, int] = {}
    for split, count in (("train", 30), ("valid", 8), ("test", 8)):
        lines = []
        for index in range(count):
            words = (
                []
                if (split, index) == ("train", 0)
                else [rng.choice(WORDS + ["<unk>"]) for _ in range(rng.randint(1, 7))]
            )
            lines.append(" " + " ".join(words) + " \n")
            for word in words + ["<eos>"]:
                order.setdefault(word, len(order))
        (folder / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    return folder, list(order)


def reference_grid_timescales(hidden: int) -> np.ndarray:
    """The reference code's layer 2: scipy.stats.invgamma.isf(linspace(0, 1, H + 1), a=0.56, scale=1)[1:]."""
    return scipy.stats.invgamma.isf(np.linspace(0, 1, hidden + 1), a=0.56, scale=1)[1:]


def reference_forget_bias(timescales: np.ndarray) -> np.ndarray:
    """The reference code's b_f = -log(exp(1/T) - 1), in numpy float64 (T = 0 gives -inf)."""
    with np.errstate(divide="ignore"):
        return -1 * np.log(np.exp(1 / timescales) - 1)


class AWDLike(nn.Module):
    """salesforce/awd-lstm-lm's RNNModel layout in eval mode: one nn.LSTM per layer (last layer
    of the embedding's width when tied), a linear decoder."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, tie: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.Embedding(vocab, emb)
        sizes = [hidden if index != layers - 1 else (emb if tie else hidden) for index in range(layers)]
        self.rnns = nn.ModuleList(
            nn.LSTM(emb if index == 0 else sizes[index - 1], size, 1) for index, size in enumerate(sizes)
        )
        self.decoder = nn.Linear(sizes[-1], vocab)
        nn.init.normal_(self.decoder.bias, std=0.5)
        if tie:
            self.decoder.weight = self.encoder.weight

    def assign_reference_timescales(self) -> None:
        """What HuthLab's model_mts.py does: layer 1 half T=3 / half T=4, layer 2 inverse gamma on the
        reference grid; bias_ih i,f blocks zero, bias_hh i,f blocks [-b_f, b_f] (float64 -> float32)."""
        hidden = [rnn.hidden_size for rnn in self.rnns]
        chrono = [np.zeros(size) for size in hidden]
        half = int(0.5 * hidden[0])
        chrono[0][:half] = -1 * np.log(np.exp(1 / 3) - 1)
        chrono[0][half:] = -1 * np.log(np.exp(1 / 4) - 1)
        chrono[1] = reference_forget_bias(reference_grid_timescales(hidden[1]))
        with torch.no_grad():
            for index in range(len(self.rnns) - 1):
                size = hidden[index]
                self.rnns[index].bias_ih_l0[: 2 * size] = 0.0
                self.rnns[index].bias_hh_l0[: 2 * size] = torch.from_numpy(
                    np.hstack((-chrono[index], chrono[index])).astype(np.float32)
                )

    def awd_state_dict(self, dropped_copy: bool = False) -> dict[str, torch.Tensor]:
        """Keys as the original's WeightDrop wrapper leaves them: rnns.k.module.weight_hh_l0_raw;
        with ``dropped_copy`` also HuthLab's last dropped matrix as rnns.k.module.weight_hh_l0."""
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("rnns."):
                index, name = key.split(".", 2)[1:]
                if name == "weight_hh_l0":
                    state[f"rnns.{index}.module.weight_hh_l0_raw"] = value
                    if dropped_copy:
                        state[f"rnns.{index}.module.weight_hh_l0"] = torch.nn.functional.dropout(value, 0.5)
                    continue
                key = f"rnns.{index}.module.{name}"
            state[key] = value
        return state

    @torch.no_grad()
    def log_probs(self, ids: torch.Tensor, hidden=None):
        """AWD's forward from its equations: ids (B, T) -> log p (B, T, V), new [(h, c)] per layer."""
        output = self.encoder(ids).transpose(0, 1)  # (T, B, E): AWD feeds time first
        new_hidden = []
        for index, rnn in enumerate(self.rnns):
            output, state = rnn(output, None if hidden is None else hidden[index])
            new_hidden.append(state)
        logits = self.decoder(output.transpose(0, 1))
        return torch.log_softmax(logits, -1), new_hidden


class WordLanguageModelLike(nn.Module):
    """pytorch/examples word_language_model RNNModel('LSTM') in eval mode: one multi-layer nn.LSTM."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, tie: bool = False, rnn: type = nn.LSTM):
        super().__init__()
        torch.manual_seed(1)
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = rnn(emb, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab)
        nn.init.normal_(self.decoder.bias, std=0.5)
        if tie:
            self.decoder.weight = self.encoder.weight

    @torch.no_grad()
    def log_probs(self, ids: torch.Tensor, hidden=None):
        output, hidden = self.rnn(self.encoder(ids).transpose(0, 1), hidden)
        return torch.log_softmax(self.decoder(output.transpose(0, 1)), -1), hidden


def converted_log_probs(model: MTLSTMForCausalLM, windows):
    """Log-probs of each window with the state carried, and the final state."""
    cache, outputs = None, []
    with torch.no_grad():
        for ids in windows:
            out = model(ids, cache=cache)
            cache = out.cache
            outputs.append(torch.log_softmax(out.logits, -1))
    return outputs, cache


def assert_same_as_reference(model, reference_outputs, reference_states, windows):
    outputs, cache = converted_log_probs(model, windows)
    for ours, theirs in zip(outputs, reference_outputs):
        assert bool(torch.isfinite(ours).all())
        words = theirs.shape[-1]
        assert (ours[..., :words] - theirs).abs().max().item() <= TOLERANCE
        # A pad row the converter added (the source has no pad token) has probability exactly 0.
        assert ours.shape[-1] in (words, words + 1) and bool((ours[..., words:].exp() == 0).all())
    for index, (hidden, cell) in enumerate(reference_states):
        assert (cache.hidden[index] - hidden.reshape(cache.hidden[index].shape)).abs().max().item() <= TOLERANCE
        assert (cache.cell[index] - cell.reshape(cache.cell[index].shape)).abs().max().item() <= TOLERANCE


def two_windows(vocab: int, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (3, 9), generator=generator), torch.randint(0, vocab, (3, 7), generator=generator)]


def reference_run(source, windows):
    hidden, outputs = None, []
    for ids in windows:
        log_probs, hidden = source.log_probs(ids, hidden)
        outputs.append(log_probs)
    return outputs, hidden


@pytest.fixture()
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")


# --------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("tie", [True, False])
def test_awd_lstm_matches_the_original_forward_over_two_windows(tmp_path, corpus, tie):
    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, tie=tie).eval()
    torch.save(source.awd_state_dict(), tmp_path / "awd.pt")
    conversion = convert_model(tmp_path / "awd.pt", folder, "awd-lstm")
    model = conversion.model
    assert model.config.hidden_sizes == ([10, 10, 6] if tie else [10, 10, 10])
    assert model.config.tie_word_embeddings is tie
    assert [s["type"] for s in model.config.timescale_schedules] == ["none"] * 3
    windows = two_windows(len(words))
    assert_same_as_reference(model, *reference_run(source, windows), windows)
    # The tokenizer gives every word the original Dictionary's id (first occurrence, <eos> per line).
    assert [conversion.tokenizer.convert_tokens_to_ids(word) for word in words] == list(range(len(words)))
    assert words[0] == "<eos>" and conversion.tokenizer.eos_token_id == 0  # the corpus starts with an empty line
    # The two bias vectors map one to one (gates that train: <gate> = bias_ih, <gate>_hh = bias_hh), so
    # that training goes on as in the source; none of these layers freezes a gate.
    saved = source.awd_state_dict()
    for index, layer in enumerate(model.model.layers):
        size = layer.hidden_size
        for block, gate in enumerate(("input_gate", "forget_gate", "cell_candidate", "output_gate")):
            rows = slice(block * size, (block + 1) * size)
            assert torch.equal(getattr(layer.gate_biases, gate), saved[f"rnns.{index}.module.bias_ih_l0"][rows])
            assert torch.equal(getattr(layer.gate_biases, gate + "_hh"), saved[f"rnns.{index}.module.bias_hh_l0"][rows])


def test_huthlab_mts_matches_the_original_forward_and_keeps_its_timescales(tmp_path, corpus):
    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, seed=2).eval()
    source.assign_reference_timescales()
    torch.save(source.awd_state_dict(dropped_copy=True), tmp_path / "mts.pt")
    conversion = convert_model(tmp_path / "mts.pt", folder, "huthlab-mts")
    model = conversion.model
    config = model.config
    assert config.frozen_biases == "all"
    assert [s["type"] for s in config.timescale_schedules] == ["explicit", "explicit", "none"]
    assert config.timescale_schedules[1]["timescales"][-1] == 0.0  # the reference grid's T=0 unit, exactly
    layer = model.model.layers[1]
    assert layer.gate_biases.forget_gate[-1].item() == -math.inf and layer.gate_biases.input_gate[-1].item() == math.inf
    # Every bias of layers 1-2 is a frozen buffer equal to the source's summed biases.
    for index in (0, 1):
        biases = model.model.layers[index].gate_biases
        assert not any(True for _ in biases.parameters())
        summed = source.rnns[index].bias_ih_l0 + source.rnns[index].bias_hh_l0
        assert torch.equal(
            torch.cat([biases.input_gate, biases.forget_gate, biases.cell_candidate, biases.output_gate]), summed
        )
    windows = two_windows(len(words))
    assert_same_as_reference(model, *reference_run(source, windows), windows)
    # The T=0 unit forgets at once: f = 0 exactly, no NaN anywhere.
    from mtlstm_hf.analysis.gates import layer_gates_and_cells

    with torch.no_grad():
        hidden = model(windows[0], output_hidden_states=True).hidden_states
        trace = layer_gates_and_cells(layer, hidden[1], torch.zeros(3, 10), torch.zeros(3, 10))
    assert bool((trace["forget_gate"][..., -1] == 0).all())
    assert all(bool(torch.isfinite(value).all()) for value in trace.values() if value is not None)
    assert [entry["description"] for entry in conversion.record["layers"]] == [
        "fixed T=3|4",
        "inverse gamma(alpha=0.56, beta=1), reference grid (with its T=0 unit)",
        "free",
    ]


def test_huthlab_mts_paper_sized_reports_the_reference_timescales(tmp_path, corpus):
    """1150/1150/400: layer 1 T=3|4, layer 2 the reference grid with its T=0 unit, as this package's
    own reference-grid model assigns them, bit for bit."""
    folder, words = corpus
    source = AWDLike(len(words), 400, 1150, 3, seed=4)
    source.assign_reference_timescales()
    torch.save(source.awd_state_dict(), tmp_path / "paper.pt")
    converted = convert_model(tmp_path / "paper.pt", folder, "huthlab-mts").model
    reference = {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "reference"}
    native = MTLSTMForCausalLM(
        MTLSTMConfig.from_preset(
            "paper",
            vocab_size=len(words),
            timescale_schedules=[{"type": "fixed", "values": [3.0, 4.0]}, reference, None],
            frozen_biases="all",
        )
    )
    ours, theirs = converted.assigned_timescales(), native.assigned_timescales()
    assert ours[2] is None and theirs[2] is None
    for index in (0, 1):
        assert torch.equal(ours[index], theirs[index])
    layer2 = ours[1]
    assert layer2[-1].item() == 0.0 and float(layer2[0]) > 1e5  # from ~360,000 tokens down to 0
    grid = realize_timescales(reference, 1150)
    explicit = torch.tensor(converted.config.timescale_schedules[1]["timescales"], dtype=torch.float64)
    assert explicit[-1].item() == 0.0 == grid[-1].item()
    torch.testing.assert_close(explicit[:-1], grid[:-1], rtol=1e-6, atol=0)
    torch.testing.assert_close(ours[0], torch.tensor([3.0] * 575 + [4.0] * 575, dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("tie", [False, True])
def test_word_language_model_matches_the_original_forward(tmp_path, corpus, tie):
    folder, words = corpus
    source = WordLanguageModelLike(len(words), 8, 8, 2, tie=tie).eval()
    torch.save(source.state_dict(), tmp_path / "wlm.pt")
    model = convert_model(tmp_path / "wlm.pt", folder, "word-language-model").model
    assert model.config.hidden_sizes == [8, 8] and model.config.tie_word_embeddings is tie
    windows = two_windows(len(words))
    outputs, (hidden, cell) = reference_run(source, windows)
    assert_same_as_reference(model, outputs, list(zip(hidden, cell)), windows)


@pytest.mark.parametrize("tie, out_bias", [(True, True), (False, False)])
def test_fastai_awd_lstm_matches_fastai_itself(tmp_path, tie, out_bias):
    awdlstm = pytest.importorskip("fastai.text.models.awdlstm")
    core = pytest.importorskip("fastai.text.models.core")
    specials = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]
    itos = specials + WORDS + ["xxfake"] * (8 - (len(specials) + len(WORDS)) % 8)
    (tmp_path / "itos.json").write_text(json.dumps(itos))
    torch.manual_seed(5)
    config = dict(awdlstm.awd_lstm_lm_config, emb_sz=8, n_hid=12, n_layers=3, tie_weights=tie, out_bias=out_bias)
    source = core.get_language_model(awdlstm.AWD_LSTM, len(itos), config=config)
    if out_bias:
        with torch.no_grad():
            source[1].decoder.bias.normal_(std=0.5)
    source.eval()
    source.reset()
    torch.save(
        {"model": source.state_dict(), "opt": {"hypers": [{"lr": 0.01}]}}, tmp_path / "lm.pth"
    )  # learn.save's layout
    conversion = convert_model(tmp_path / "lm.pth", tmp_path / "itos.json", "fastai-awd-lstm")
    windows = two_windows(len(itos))
    outputs = []
    with torch.no_grad():
        for ids in windows:  # fastai keeps the state itself between calls
            outputs.append(torch.log_softmax(source(ids)[0], -1))
    assert_same_as_reference(conversion.model, outputs, source[0].hidden, windows)
    tokenizer = conversion.tokenizer
    assert (
        conversion.record["vocabulary"]["unk_token"],
        unknown_word_id(tokenizer),
        tokenizer.eos_token,
        tokenizer.eos_token_id,
    ) == ("xxunk", 0, "xxeos", 3)
    assert tokenizer("w3 w0 never-seen")["input_ids"] == [itos.index("w3"), itos.index("w0"), 0]
    assert len(tokenizer) == len(itos) and any("xxfake" in note for note in conversion.record["notes"])
    assert conversion.model.config.tie_word_embeddings is tie
    assert out_bias or not bool(conversion.model.lm_head.bias.any())


# --------------------------------------------------------------------------- folders, round trip, eval


def test_round_trip_through_remote_code_in_a_fresh_process_gives_identical_logits(tmp_path, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, seed=2).eval()
    source.assign_reference_timescales()  # with the T=0 unit's infinite biases
    torch.save(source.awd_state_dict(), tmp_path / "mts.pt")
    out = tmp_path / "converted"
    assert convert_main(["--from", "huthlab-mts", str(tmp_path / "mts.pt"), "--vocab", str(folder), str(out)]) == 0
    record = json.loads((out / "conversion.json").read_text())
    assert record["source"] == "huthlab-mts" and record["weights_sha256"].startswith("sha256:")
    ids = two_windows(len(words))[0]
    in_memory = convert_model(tmp_path / "mts.pt", folder, "huthlab-mts").model
    with torch.no_grad():
        expected = in_memory(ids).logits
        loaded = AutoModelForCausalLM.from_pretrained(out).eval()
        assert torch.equal(loaded(ids).logits, expected)
    assert loaded.config.timescale_schedules == in_memory.config.timescale_schedules
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert [tokenizer.convert_tokens_to_ids(word) for word in words] == list(range(len(words)))
    remote = load_in_fresh_process_without_package(out, ids, tmp_path / "fresh")
    assert torch.equal(remote["logits"], expected)


@pytest.mark.parametrize("source_name", ["awd-lstm", "huthlab-mts"])
def test_mtlstm_eval_runs_on_a_converted_folder(tmp_path, corpus, source_name, capsys):
    from mtlstm_hf.evaluation.cli import main as eval_main

    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, seed=2).eval()
    if source_name == "huthlab-mts":
        source.assign_reference_timescales()
    torch.save(source.awd_state_dict(), tmp_path / "w.pt")
    out = tmp_path / "converted"
    convert_checkpoint(tmp_path / "w.pt", folder, out, source_name)
    assert eval_main([str(out), "--data", str(folder), "--output", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    # The test split scored with the state carried, as AWD's evaluate() does with batch size 1.
    lines = (folder / "test.txt").read_text().splitlines()
    stream = torch.tensor([[words.index(w) for line in lines for w in line.split() + ["<eos>"]]])
    log_probs, _ = source.log_probs(stream[:, :-1])
    expected = math.exp(-log_probs[0].gather(-1, stream[0, 1:, None]).mean().item())
    assert result["n_tokens"] == stream.shape[1] - 1
    assert result["perplexity"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_converted_tokenizer_pads_with_its_own_token_and_the_collator_keeps_every_eos(tmp_path, corpus, tie):
    """A converted folder pads with ``<pad>``, added after the last word (every word
    keeps its id), so DataCollatorForLanguageModeling(mlm=False) keeps every ``<eos>`` label (oracle:
    the labels are the ids but at padding); the model's pad row has probability 0, and a padded
    batch scores each row as the row alone does (oracle: the source)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling

    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 2, tie=tie, seed=4).eval()
    torch.save(source.awd_state_dict(), tmp_path / "w.pt")
    out = tmp_path / "converted"
    convert_checkpoint(tmp_path / "w.pt", folder, out, "awd-lstm")
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out).eval()
    assert [tokenizer.convert_tokens_to_ids(word) for word in words] == list(range(len(words)))
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<pad>", len(words)) and len(tokenizer) == len(words) + 1
    assert model.config.vocab_size == len(words) + 1 and model.config.pad_token_id == len(words)
    record = json.loads((out / "conversion.json").read_text())["vocabulary"]
    assert record["pad_token_added"] is True and record["size"] == len(words)

    texts = ["w1 w2 <eos> w3 <eos>", "w4 <eos>", "w5 w6 w7 <eos> w8 w9 <eos>"]
    rows = [tokenizer(text)["input_ids"] for text in texts]
    batch = DataCollatorForLanguageModeling(tokenizer, mlm=False)([{"input_ids": row} for row in rows])
    eos = tokenizer.eos_token_id
    kept = int(((batch["labels"] == eos) & (batch["input_ids"] == eos)).sum())
    assert kept == sum(row.count(eos) for row in rows) == 5
    assert torch.equal(batch["labels"], batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
    with torch.no_grad():
        padded = torch.log_softmax(model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    for index, row in enumerate(rows):
        expected, _ = source.log_probs(torch.tensor([row]))
        got = padded[index, batch["input_ids"].shape[1] - len(row) :]  # left padding
        assert (got[:, : len(words)] - expected[0]).abs().max().item() <= TOLERANCE
        assert bool((got[:, len(words)].exp() == 0).all())


def test_a_vocabulary_with_a_pad_word_pads_with_it():
    """fastai's ``xxpad`` (or a ``<pad>`` word) is the pad token: no row is added."""
    vocabulary = Vocabulary(["xxunk", "xxpad", "xxbos", "xxeos", "the", "cat"], "itos", [])
    tokenizer = tokenizer_for_vocabulary(vocabulary)
    assert (tokenizer.pad_token, tokenizer.pad_token_id, len(tokenizer)) == ("xxpad", 1, 6)
    assert (tokenizer.eos_token, tokenizer.convert_ids_to_tokens(unknown_word_id(tokenizer))) == ("xxeos", "xxunk")
    assert tokenizer.decode(tokenizer("the zebra")["input_ids"], skip_special_tokens=True).split() == ["the", "xxunk"]
    standard = tokenizer_for_vocabulary(Vocabulary(["<unk>", "<eos>", "<pad>", "the"], "list", []))
    assert (standard.pad_token_id, len(standard)) == (2, 4)


def test_output_dir_that_holds_files_is_refused_unless_overwrite(tmp_path, corpus):
    folder, words = corpus
    torch.save(AWDLike(len(words), 6, 10, 2).awd_state_dict(), tmp_path / "w.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_checkpoint(tmp_path / "w.pt", folder, out, "awd-lstm")
    assert (out / "keep.txt").read_text() == "mine"
    convert_checkpoint(tmp_path / "w.pt", folder, out, "awd-lstm", overwrite=True)
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()


# --------------------------------------------------------------------------- vocabularies


def test_word_lists_json_pickle_text_and_a_pickle_naming_code(tmp_path):
    import pickle

    itos = ["xxunk", "xxpad", "the", "xxfake", "xxfake"]
    (tmp_path / "a.json").write_text(json.dumps(itos))
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(itos, protocol=4))
    (tmp_path / "c.txt").write_text("\n".join(itos) + "\n")
    (tmp_path / "d.json").write_text(json.dumps({"the": 1, "xxunk": 0}))
    expected = ["xxunk", "xxpad", "the", "xxfake", "<duplicate:4>"]
    for name in ("a.json", "b.pkl", "c.txt"):
        assert read_word_list(tmp_path / name).words == expected
    assert read_word_list(tmp_path / "d.json").words == ["xxunk", "the"]
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([nn.Identity()], protocol=4))
    with pytest.raises(ValueError, match="names the Python object torch.nn"):
        read_word_list(tmp_path / "evil.pkl")


def test_corpus_vocabulary_is_the_originals_dictionary(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "train.txt").write_text("b a\r\n\nc b\n")
    (folder / "valid.txt").write_text("d a\n")
    (folder / "test.txt").write_text("e\n")
    assert corpus_vocabulary(folder).words == ["b", "a", "<eos>", "c", "d", "e"]


# --------------------------------------------------------------------------- bad input


def full_pickle(path):
    model = nn.Sequential(nn.Embedding(5, 4), nn.LSTM(4, 4))
    torch.save([model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=30)], path)


def gru_state_dict(path):
    torch.save(WordLanguageModelLike(len(WORDS), 8, 8, 2, rnn=nn.GRU).state_dict(), path)


def transformer_state_dict(path):
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    state = {
        "input_emb.weight": torch.randn(20, 8),
        **{f"encoder.layers.0.{k}": v for k, v in layer.state_dict().items()},
    }
    state.update({"decoder.weight": torch.randn(20, 8), "decoder.bias": torch.zeros(20)})
    torch.save(state, path)


def without_decoder(path):
    state = AWDLike(len(WORDS) + 2, 6, 10, 2).awd_state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("decoder.")}, path)


def inconsistent_layers(path):
    state = AWDLike(len(WORDS) + 2, 6, 10, 3).awd_state_dict()
    state["rnns.1.module.weight_ih_l0"] = torch.randn(40, 9)
    torch.save(state, path)


def another_vocabulary_size(path):
    torch.save(AWDLike(len(WORDS) + 5, 6, 10, 2).awd_state_dict(), path)


BAD_INPUTS = {
    "full pickle": (full_pickle, "awd-lstm", r"full pickle, not a state_dict .*torch\.nn\.modules.*state_dict\(\)"),
    "GRU": (
        gru_state_dict,
        "word-language-model",
        r"layer 1: rnn\.weight_hh_l0 has 24 rows = 3 x H=8, a GRU's 3 gate blocks.*4 x H = 32",
    ),
    "transformer": (
        transformer_state_dict,
        "awd-lstm",
        r"not a awd-lstm LSTM language model: no embedding matrix.*looks like a transformer",
    ),
    "missing decoder": (
        without_decoder,
        "awd-lstm",
        r"missing decoder: found neither decoder\.weight nor decoder\.bias",
    ),
    "inconsistent layers": (
        inconsistent_layers,
        "awd-lstm",
        r"inconsistent layer sizes: layer 2 reads inputs of width 9 but layer 1 \(hidden size 10\)",
    ),
    "vocabulary size": (
        another_vocabulary_size,
        "awd-lstm",
        r"vocabulary size mismatch: .* has 17 words but the embedding .* has 20 rows",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_exit_code_2_and_nothing_written(tmp_path, corpus, case, capsys):
    make, source_name, message = BAD_INPUTS[case]
    folder, words = corpus
    assert len(words) == 17
    make(tmp_path / "weights.pt")
    out = tmp_path / "new" / "converted"
    assert convert_main(["--from", source_name, str(tmp_path / "weights.pt"), "--vocab", str(folder), str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mtlstm-convert: error: ") and len(error.strip().splitlines()) == 1
    assert __import__("re").search(message, error), error
    assert not out.exists() and not out.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "weights.pt"]


def test_full_pickle_error_gives_each_familys_export_line(tmp_path):
    full_pickle(tmp_path / "m.pt")
    for name in SOURCES:
        with pytest.raises(FullPickleError) as caught:
            convert_model(tmp_path / "m.pt", tmp_path, name)
        assert EXPORT_HINTS[name] in str(caught.value)


def test_the_sources_list_matches_the_families():
    assert SOURCES == tuple(FAMILIES)


def test_help_names_the_export_without_importing_torch():
    script = (
        "import sys\nsys.argv = ['mtlstm-convert', '--help']\nfrom mtlstm_hf.convert.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0\n"
        "print('HEAVY:', 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "weights_only=False)[0]; torch.save(m.state_dict()" in " ".join(done.stdout.split())
    assert done.stdout.strip().endswith("HEAVY: False")


def test_strict_loading_accepts_assigned_infinite_biases_only(tmp_path, corpus):
    """mtlstm-eval's strict loader: the T=0 unit's b_f = -inf, b_i = +inf pass; an unpaired
    infinity or a NaN in the same tensors is still refused."""
    from safetensors.torch import load_file, save_file

    from mtlstm_hf.model_folder import load_model_strictly

    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, seed=2)
    source.assign_reference_timescales()
    torch.save(source.awd_state_dict(), tmp_path / "w.pt")
    convert_checkpoint(tmp_path / "w.pt", folder, tmp_path / "ok", "huthlab-mts")
    load_model_strictly(tmp_path / "ok")
    (tmp_path / "ok" / "weights_sha256.json").unlink()  # the weights are edited by hand below: the tensors' own check
    for value in (math.inf, math.nan):
        tensors = load_file(str(tmp_path / "ok" / "model.safetensors"))
        tensors["model.layers.1.gate_biases.input_gate"][0] = value
        save_file(tensors, str(tmp_path / "ok" / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(ValueError, match=r"non-finite .*model\.layers\.1\.gate_biases\.input_gate"):
            load_model_strictly(tmp_path / "ok")


def test_safetensors_and_data_parallel_files_convert_to_the_same_model(tmp_path, corpus):
    """safetensors stores a tied matrix once (no decoder.weight: taken as tied); a DataParallel
    state_dict has every key under module."""
    from safetensors.torch import save_file

    folder, words = corpus
    state = AWDLike(len(words), 6, 10, 2).awd_state_dict()
    torch.save(state, tmp_path / "plain.pt")
    save_file({k: v.contiguous() for k, v in state.items() if k != "decoder.weight"}, str(tmp_path / "w.bin"))
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pt")
    ids = two_windows(len(words))[0]
    logits = []
    for name in ("plain.pt", "w.bin", "dp.pt"):
        conversion = convert_model(tmp_path / name, folder, "awd-lstm")
        assert conversion.model.config.tie_word_embeddings
        with torch.no_grad():
            logits.append(conversion.model(ids).logits)
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    assert any(
        "taken as tied" in note for note in convert_model(tmp_path / "w.bin", folder, "awd-lstm").record["notes"]
    )


def test_mtlstm_analyze_runs_on_a_converted_multi_timescale_folder(tmp_path, corpus):
    from mtlstm_hf.analysis.cli import main as analyze_main

    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, seed=2)
    source.assign_reference_timescales()
    torch.save(source.awd_state_dict(), tmp_path / "w.pt")
    out = tmp_path / "converted"
    convert_checkpoint(tmp_path / "w.pt", folder, out, "huthlab-mts")
    arguments = [
        str(out),
        "--data",
        str(folder),
        "--analyses",
        "timescales,ablation",
        "--no-figures",
        "--no-progress-bar",
        "--threads",
        "1",
    ]
    assert analyze_main(arguments) == 0
    report = json.loads((out / "analysis" / "report.json").read_text())
    assert {"timescales", "ablation"} <= set(report["analyses"]) and not report["skipped"]


def test_assigned_biases_are_recognised_in_other_families_and_required_for_huthlab(tmp_path, corpus):
    """b_i = -b_f exactly marks assigned timescales whatever the family (frozen: forget and input
    gates); --from huthlab-mts refuses a checkpoint without the reference code's bias layout."""
    folder, words = corpus
    source = AWDLike(len(words), 6, 10, 3, seed=2).eval()
    source.assign_reference_timescales()
    torch.save(source.awd_state_dict(), tmp_path / "mts.pt")
    model = convert_model(tmp_path / "mts.pt", folder, "awd-lstm").model
    assert [s["type"] for s in model.config.timescale_schedules] == ["explicit", "explicit", "none"]
    assert model.config.frozen_biases == "forget_input"
    windows = two_windows(len(words))
    assert_same_as_reference(model, *reference_run(source, windows), windows)
    torch.save(AWDLike(len(words), 6, 10, 3).awd_state_dict(), tmp_path / "plain.pt")
    with pytest.raises(
        ValueError,
        match=r"layer 1's biases are not assigned timescales as the reference code sets them \(bias_ih_l0 has 20 non-zero",
    ):
        convert_model(tmp_path / "plain.pt", folder, "huthlab-mts")
