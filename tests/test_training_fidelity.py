"""Training follows nn.LSTM and the reference code step by step (issue 22).

Oracles are loops written here, over ``nn.LSTM`` layers holding the same weights (PyTorch's two bias
vectors per layer: ``bias_ih_l0``, ``bias_hh_l0``):

* the library's loop (AWD-LSTM's recipe as this library trains it: SGD lr 30, clip 0.25, weight
  decay, AR/TAR, the window's learning rate, the mean of every iterate since the switch);
* the reference's loop (AWD-LSTM's ``main.py`` as the authors' code runs it: the drawn length scales
  the learning rate, one target left at an epoch's end is dropped, ``torch.optim.ASGD(t0=0,
  lambd=0)`` after the switch), against ``replay_reference_loop=True``.

Both compare every parameter after every step, to float32 rounding. Also here: the two bias
vectors themselves (their gradients, older checkpoints, conversion), the step's result record
and the way to drive the loop from outside.
"""

from __future__ import annotations

import random

import pytest
import torch
from conftest import reset_accelerate_state, tiny_config
from torch import nn
from torch.nn import functional as F

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.training import LanguageModelTrainer, TrainingSettings

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")

NO_DROPOUT = {
    "embedding_dropout": 0.0,
    "input_dropout": 0.0,
    "hidden_dropout": 0.0,
    "output_dropout": 0.0,
    "weight_drop": 0.0,
}
GATES = ("input_gate", "forget_gate", "cell_candidate", "output_gate")  # PyTorch's row blocks i, f, g, o


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    for split, lines in (("train", 60), ("valid", 20)):
        text = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) + "\n" for _ in range(lines))
        (directory / f"{split}.txt").write_text(text, encoding="utf-8")
    return directory


def trainer_for(corpus_dir, tmp_path, schedules, frozen_biases="forget_input", **overrides) -> LanguageModelTrainer:
    fields = dict(
        data=str(corpus_dir), preset="tiny", output_dir=str(tmp_path / "run"), batch_size=4, eval_batch_size=2,
        bptt=10, epochs=3, progress_bar=False, tracker="none", evaluate_test=False, cpu=True,
        model_overrides={**NO_DROPOUT, "timescale_schedules": schedules, "frozen_biases": frozen_biases},
    )  # fmt: skip
    config = TrainingSettings(**{**fields, **overrides})
    return LanguageModelTrainer(config)


class NNLSTMLanguageModel(nn.Module):
    """Embedding, one ``nn.LSTM`` per layer, tied decoder: the oracle, holding our model's weights
    (bias_ih_l0 = the input sides, bias_hh_l0 = the recurrent sides, 0 for a frozen gate). The
    frozen gates' rows of both biases get no gradient and never change (the oracle's ``freeze``)."""

    def __init__(self, ours: MTLSTMForCausalLM) -> None:
        super().__init__()
        config = ours.config
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        inputs = [config.embedding_size] + config.hidden_sizes[:-1]
        self.layers = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(inputs, config.hidden_sizes))
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.alpha, self.beta = config.activation_regularization, config.temporal_activation_regularization
        self.frozen_rows: list[torch.Tensor] = []
        self.copy_from(ours)
        with torch.no_grad():
            for layer, own in zip(self.layers, ours.model.layers):
                biases = own.gate_biases
                frozen = torch.zeros(4 * own.hidden_size, dtype=torch.bool)
                for index, gate in enumerate(GATES):
                    if gate in biases.frozen_gates:
                        frozen[index * own.hidden_size : (index + 1) * own.hidden_size] = True
                self.frozen_rows.append(frozen)
                for bias in (layer.bias_ih_l0, layer.bias_hh_l0):
                    if bool(frozen.all()):  # the reference's way: the whole vectors do not train
                        bias.requires_grad_(False)
                    elif bool(frozen.any()):
                        bias.register_hook(lambda grad, rows=frozen: grad.masked_fill(rows, 0.0))
        self.saved_frozen = [
            (layer.bias_ih_l0.detach().clone(), layer.bias_hh_l0.detach().clone()) for layer in self.layers
        ]

    @torch.no_grad()
    def copy_from(self, ours: MTLSTMForCausalLM) -> None:
        """Take our model's weights (bias_ih_l0: the input sides; bias_hh_l0: the recurrent sides, 0
        for a frozen gate)."""
        self.embeddings.weight.copy_(ours.model.embeddings.weight)
        self.decoder_bias.copy_(ours.lm_head.bias)
        for layer, own in zip(self.layers, ours.model.layers):
            layer.weight_ih_l0.copy_(own.weight_ih)
            layer.weight_hh_l0.copy_(own.weight_hh)
            biases = own.gate_biases
            layer.bias_ih_l0.copy_(torch.cat([getattr(biases, g) for g in GATES]))
            layer.bias_hh_l0.copy_(torch.cat([
                torch.zeros(own.hidden_size) if g in biases.frozen_gates else getattr(biases, g + "_hh") for g in GATES
            ]))  # fmt: skip

    def freeze(self) -> None:
        """Put the frozen rows back (weight decay moved them: the library keeps them as buffers)."""
        with torch.no_grad():
            for layer, rows, (ih, hh) in zip(self.layers, self.frozen_rows, self.saved_frozen):
                layer.bias_ih_l0[rows] = ih[rows]
                layer.bias_hh_l0[rows] = hh[rows]

    def loss(self, inputs, targets, state):
        hidden = self.embeddings(inputs)
        new_state = []
        for layer, carried in zip(self.layers, state or [None] * len(self.layers)):
            hidden, (h, c) = layer(hidden, carried)
            new_state.append((h.detach(), c.detach()))
        logits = hidden @ self.embeddings.weight.T + self.decoder_bias
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss = loss + self.alpha * hidden.pow(2).mean() + self.beta * (hidden[:, 1:] - hidden[:, :-1]).pow(2).mean()
        return loss, new_state

    def as_ours(self) -> dict[str, torch.Tensor]:
        """The oracle's parameters under our names (a frozen gate's one vector: the sum)."""
        tensors = {"model.embeddings.weight": self.embeddings.weight, "lm_head.bias": self.decoder_bias}
        for index, (layer, rows) in enumerate(zip(self.layers, self.frozen_rows)):
            prefix = f"model.layers.{index}."
            tensors[prefix + "weight_ih"] = layer.weight_ih_l0
            tensors[prefix + "weight_hh"] = layer.weight_hh_l0
            size = layer.hidden_size
            for block, gate in enumerate(GATES):
                rows_of = slice(block * size, (block + 1) * size)
                if bool(rows[rows_of].all()):
                    tensors[f"{prefix}gate_biases.{gate}"] = layer.bias_ih_l0[rows_of] + layer.bias_hh_l0[rows_of]
                else:
                    tensors[f"{prefix}gate_biases.{gate}"] = layer.bias_ih_l0[rows_of]
                    tensors[f"{prefix}gate_biases.{gate}_hh"] = layer.bias_hh_l0[rows_of]
        return {name: tensor.detach().clone() for name, tensor in tensors.items()}


def assert_same_parameters(trainer: LanguageModelTrainer, oracle: NNLSTMLanguageModel, step: int) -> None:
    ours = dict(trainer.unwrapped_model.named_parameters()) | dict(trainer.unwrapped_model.named_buffers())
    theirs = oracle.as_ours()
    assert set(theirs) <= set(ours)
    for name, tensor in theirs.items():
        torch.testing.assert_close(
            ours[name].detach(), tensor, rtol=1e-5, atol=2e-6, msg=lambda message: f"step {step} {name}: {message}"
        )


def synchronise(trainer: LanguageModelTrainer, oracle: NNLSTMLanguageModel) -> list | None:
    """After a step's comparison, start the oracle's next step where ours starts (weights and carried
    state): each step is then compared from the same point, so that float32 rounding differences
    (the two loops sum in other orders) cannot grow over the steps, at learning rate 30, into more
    than rounding; a wrong update still shows at its own step."""
    oracle.copy_from(trainer.unwrapped_model)
    state = trainer.carried_state
    return None if state is None else [(h[None].clone(), c[None].clone()) for h, c in zip(state.hidden, state.cell)]


SCHEDULES = {
    "baseline": [{"type": "none"}, {"type": "none"}],
    "multi_timescale": [{"type": "fixed", "values": [3.0, 4.0]}, {"type": "none"}],
}


@pytest.mark.parametrize("arm", sorted(SCHEDULES))
def test_the_library_loop_follows_an_nn_lstm_stack_step_by_step(corpus_dir, tmp_path, arm):
    """Two bias vectors per layer, as nn.LSTM: each receives the gradient, so SGD moves their sum
    twice as far as one vector would, clipping and weight decay count both (before: the
    trajectories separated at step 1, the bias updates by a factor 2). 16 steps over an epoch
    end, averaged SGD switched on at step 8."""
    trainer = trainer_for(corpus_dir, tmp_path, SCHEDULES[arm])
    oracle = NNLSTMLanguageModel(trainer.unwrapped_model)
    optimizer = torch.optim.SGD(oracle.parameters(), lr=30.0, weight_decay=1.2e-6)
    assert_same_parameters(trainer, oracle, 0)
    state, averaged, epoch_ends = None, [], 0
    for step in range(1, 17):
        if step == 9:
            trainer.start_averaging()
        windows, epoch_done = trainer.next_windows()
        result = trainer.train_step(windows, trainer.drawn_lengths)
        ((inputs, targets),) = windows
        loss, state = oracle.loss(inputs, targets, state)
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(oracle.parameters(), 0.25)
        for group in optimizer.param_groups:
            group["lr"] = 30.0 * inputs.shape[1] / 10
        optimizer.step()
        oracle.freeze()
        assert result.grad_norm == pytest.approx(float(norm), rel=1e-5)
        assert result.loss == pytest.approx(loss.item(), rel=1e-5)
        assert result.loss == pytest.approx(result.lm_loss + result.ar_loss + result.tar_loss, rel=1e-6)
        assert result.ar_loss > 0 and result.tar_loss > 0
        assert result.learning_rate == pytest.approx(30.0 * inputs.shape[1] / 10)
        assert result.window_lengths == [inputs.shape[1]] and result.drawn_lengths == trainer.drawn_lengths
        assert_same_parameters(trainer, oracle, step)
        if step >= 9:
            averaged.append(oracle.as_ours())
        if epoch_done:  # AWD starts every epoch from the zero state
            trainer.carried_state, epoch_ends = None, epoch_ends + 1
        state = synchronise(trainer, oracle)
    assert epoch_ends >= 1
    mean = {name: torch.stack([snapshot[name] for snapshot in averaged]).mean(0) for name in averaged[0]}
    average = dict(trainer.averaged_model.module.named_parameters()) | dict(
        trainer.averaged_model.module.named_buffers()
    )
    for name, tensor in mean.items():
        torch.testing.assert_close(average[name].detach(), tensor, rtol=1e-5, atol=2e-6, msg=name)


class ReferenceLoop:
    """AWD-LSTM's ``train()`` (``main.py``) as the authors' code runs it, over ``rows``: windows
    ``data[i : i + min(seq_len, n - 1 - i)]`` while ``i < n - 1 - 1`` (a single target left is dropped),
    the learning rate scaled by the *drawn* ``seq_len`` for the step and put back after it, SGD,
    then ``torch.optim.ASGD(t0=0, lambd=0)`` from the switch on. The drawn lengths are given (the
    reference draws them with numpy; here they are the trainer's draws)."""

    def __init__(self, oracle: NNLSTMLanguageModel, rows: torch.Tensor, bptt: int) -> None:
        self.oracle, self.rows, self.bptt = oracle, rows, bptt
        self.optimizer = torch.optim.SGD(oracle.parameters(), lr=30.0, weight_decay=1.2e-6)
        self.position, self.state = 0, None

    def switch_to_asgd(self) -> None:
        self.optimizer = torch.optim.ASGD(self.oracle.parameters(), lr=30.0, t0=0, lambd=0.0, weight_decay=1.2e-6)

    def step(self, drawn: int) -> tuple[torch.Tensor, bool]:
        """One window of the given drawn length; returns its inputs and whether the epoch ended."""
        n, i = self.rows.shape[1], self.position
        assert i < n - 1 - 1
        seq_len = min(drawn, n - 1 - i)
        inputs, targets = self.rows[:, i : i + seq_len], self.rows[:, i + 1 : i + 1 + seq_len]
        group = self.optimizer.param_groups[0]
        lr2 = group["lr"]
        group["lr"] = lr2 * drawn / self.bptt
        loss, self.state = self.oracle.loss(inputs, targets, self.state)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.oracle.parameters() if p.requires_grad], 0.25)
        self.optimizer.step()
        self.oracle.freeze()
        group["lr"] = lr2
        self.position = i + seq_len
        if self.position >= n - 1 - 1:
            self.position, self.state = 0, None  # a new epoch, from the zero state
            return inputs, True
        return inputs, False


@pytest.mark.parametrize("lengths", ["variable", "fixed"])
def test_the_replay_switch_follows_the_reference_loop_step_by_step(corpus_dir, tmp_path, lengths):
    """replay_reference_loop with the reference's frozen recurrent weights and whole frozen bias
    vectors in the layer with timescales (its published condition) against the reference's loop: the last, cut window's learning rate scaled by the
    drawn length (variable lengths); a single target left at an epoch's end dropped (fixed
    lengths chosen so that one is left); ASGD's learning rate one step late (its eta, made at its
    first step from that step's rate) and its average without the first iterate after the switch. Every parameter after every step, and the
    average at the end (ASGD's ``ax``)."""
    from mtlstm_hf.data import build_word_tokenizer, load_corpus, split_to_stream

    tokens = split_to_stream(
        load_corpus(str(corpus_dir)), "train", build_word_tokenizer(corpus_dir / "train.txt")
    ).numel()
    if lengths == "fixed":  # batch and bptt that leave exactly one target at the end of every epoch
        batch, bptt = next((b, t) for b in range(2, 9) for t in range(6, 21) if (tokens // b - 1) % t == 1)
        options = dict(bptt=bptt, variable_bptt=False, batch_size=batch)
    else:
        bptt, options = 10, {}
    trainer = trainer_for(corpus_dir, tmp_path, SCHEDULES["multi_timescale"], frozen_biases="all",
                          freeze_recurrent_weights=True, replay_reference_loop=True, **options)  # fmt: skip
    row_length = trainer.rows.shape[1]
    oracle = NNLSTMLanguageModel(trainer.unwrapped_model)
    for layer in oracle.layers:
        layer.weight_hh_l0.requires_grad_(False)  # the reference's weight-drop wrapper never trains them
    reference = ReferenceLoop(oracle, trainer.rows, bptt)
    cut = dropped = 0
    steps = 3 * (row_length // bptt + 1)  # about three epochs
    for step in range(1, steps + 1):
        if step == steps // 2:
            trainer.start_averaging()
            reference.switch_to_asgd()
        windows, epoch_done = trainer.next_windows()
        trainer.train_step(windows, trainer.drawn_lengths)
        inputs, reference_epoch_done = reference.step(trainer.drawn_lengths[0])
        assert torch.equal(windows[0][0], inputs) and epoch_done == reference_epoch_done, step
        cut += windows[0][0].shape[1] != trainer.drawn_lengths[0]
        if epoch_done:
            trainer.carried_state = None
            dropped += trainer.iterator.end == row_length - 2 and (row_length - 1) % bptt == 1
        assert_same_parameters(trainer, oracle, step)
        reference.state = synchronise(trainer, oracle)
    assert (cut >= 1) if lengths == "variable" else (dropped >= 2)  # the quirks were exercised
    average = dict(trainer.averaged_model.module.named_parameters()) | dict(
        trainer.averaged_model.module.named_buffers()
    )
    with torch.no_grad():  # ASGD's averages under our names: swap them in, read, swap back
        saved = [p.detach().clone() for p in oracle.parameters()]
        for parameter in oracle.parameters():
            if "ax" in reference.optimizer.state[parameter]:
                parameter.copy_(reference.optimizer.state[parameter]["ax"])
        ax = oracle.as_ours()
        for parameter, value in zip(oracle.parameters(), saved):
            parameter.copy_(value)
    for name, tensor in ax.items():
        torch.testing.assert_close(average[name].detach(), tensor, rtol=1e-5, atol=2e-6, msg=name)


# --- the two bias vectors themselves ------------------------------------------------------------


@pytest.mark.parametrize("cell_type", ["lstm", "lstm-gates", "lstm-srnn", "lstm-srnn-hidden"])
def test_no_two_parameters_share_gradient_memory_and_accumulation_is_exact(cell_type):
    """oneDNN's LSTM backward hands one tensor to both biases; through the per-gate views the two
    sides' .grad were once the same memory, so that a second accumulated window (and an in-place
    clip) counted it twice (1.8e-3 off the whole batch's gradient). Oracle: the gradient of the
    whole batch, and distinct memory for every parameter's gradient."""
    schedules = [None, None] if cell_type == "lstm-gates" else [{"type": "fixed", "values": [3.0, 4.0]}, None]
    ids = torch.randint(1, 37, (4, 7), generator=torch.Generator().manual_seed(0))

    def gradients(parts):
        torch.manual_seed(0)
        model = MTLSTMForCausalLM(tiny_config(cell_types=[cell_type, "lstm"], timescale_schedules=schedules)).train()
        for rows in parts:
            (model(ids[rows], labels=ids[rows]).loss * (rows.stop - rows.start) / 4).backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        spans = sorted((g.data_ptr(), g.data_ptr() + g.numel() * g.element_size(), name) for name, g in grads.items())
        for (_, end, name), (start, _, other) in zip(spans, spans[1:]):
            assert end <= start, f"the gradients of {name} and {other} overlap in memory"
        return grads

    whole, split = gradients([slice(0, 4)]), gradients([slice(0, 2), slice(2, 4)])
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-5, atol=1e-7, msg=name)
    trained = [name for name in whole if ".gate_biases." in name and name.endswith("_hh")]
    assert trained and all(
        torch.equal(whole[name], whole[name[:-3]]) for name in trained
    )  # each side: the same gradient


def test_older_checkpoints_load_with_zero_recurrent_sides_and_say_nothing(tmp_path, caplog):
    """A checkpoint saved with one bias vector per gate (tests/fixtures/saved_by_f0cac04) loads as
    the input side with a zero recurrent side, without a word; the strict loader accepts it, and
    refuses a checkpoint that holds some recurrent sides but not all."""
    import logging
    from pathlib import Path

    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from mtlstm_hf.model_folder import load_model_strictly

    folder = Path(__file__).parent / "fixtures" / "saved_by_f0cac04" / "multi-timescale"
    with caplog.at_level(logging.INFO):
        model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    saved = load_file(folder / "model.safetensors")
    recurrent = [name for name, _ in model.named_parameters() if ".gate_biases." in name and name.endswith("_hh")]
    assert recurrent and not any(name in saved for name in recurrent)
    for name in recurrent:
        assert torch.equal(model.get_parameter(name), torch.zeros_like(model.get_parameter(name)))
        assert torch.equal(model.get_parameter(name[:-3]), saved[name[:-3]])
    load_model_strictly(folder)  # accepted
    # A checkpoint of today with one recurrent side removed is damage, not an older layout.
    model.save_pretrained(tmp_path / "new")
    tensors = load_file(tmp_path / "new" / "model.safetensors")
    del tensors[recurrent[0]]
    save_file(tensors, tmp_path / "new" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"missing: {recurrent[0]}"):
        load_model_strictly(tmp_path / "new")


def test_a_torch_state_dict_of_the_older_layout_loads_too():
    model = MTLSTMForCausalLM(tiny_config()).eval()
    state = {
        name: tensor
        for name, tensor in model.state_dict().items()
        if not (".gate_biases." in name and name.endswith("_hh"))
    }
    fresh = MTLSTMForCausalLM(tiny_config())
    fresh.load_state_dict(state, strict=True)  # the recurrent sides are added as zeros
    assert all(
        not bool(p.any()) for name, p in fresh.named_parameters() if ".gate_biases." in name and name.endswith("_hh")
    )


def test_load_parameters_and_the_carried_state_drive_a_step_from_outside(corpus_dir, tmp_path):
    """Another trainer set to this one's weights and carried state takes the same step."""
    first = trainer_for(corpus_dir, tmp_path / "a", SCHEDULES["multi_timescale"])
    for _ in range(3):
        first.train_step(*_windows(first))
    weights = {name: tensor.detach().clone() for name, tensor in first.unwrapped_model.state_dict().items()}
    state = first.carried_state
    windows, drawn = _windows(first)
    reset_accelerate_state()
    second = trainer_for(corpus_dir, tmp_path / "b", SCHEDULES["multi_timescale"])
    second.load_parameters(weights)
    second.carried_state = state
    expected = first.train_step(windows, drawn)
    result = second.train_step(windows, drawn)
    assert result == expected
    for (name, ours), theirs in zip(
        second.unwrapped_model.state_dict().items(), first.unwrapped_model.state_dict().values()
    ):
        assert torch.equal(ours, theirs), name
    with pytest.raises(ValueError, match="load_parameters: missing"):
        second.load_parameters({"model.embeddings.weight": weights["model.embeddings.weight"]})


def _windows(trainer):
    windows, _ = trainer.next_windows()
    return windows, trainer.drawn_lengths
