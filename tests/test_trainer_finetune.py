"""Fine-tuning with transformers.Trainer (examples/finetune_trainer.py) on a tiny model:
frozen timescale biases stay bit-identical, other weights train, the Trainer checkpoint reloads."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from conftest import corpus_and_saved_model, tiny_config
from transformers import AutoModelForCausalLM

from mtlstm_hf import MTLSTMForCausalLM

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_trainer.py"


def load_example():
    spec = importlib.util.spec_from_file_location("finetune_trainer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_trainer_finetune_keeps_frozen_biases_and_checkpoint_reloads(tmp_path):
    corpus, model_dir = corpus_and_saved_model(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    example = load_example()
    output_dir = tmp_path / "finetuned"
    trainer = example.finetune(
        model_dir,
        output_dir,
        data=str(corpus),
        block_size=8,
        batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=1e-2,
        max_steps=3,
        eval_steps=2,
        save_steps=3,
        disable_tqdm=True,
    )
    assert trainer.state.global_step == 3
    assert any("eval_loss" in entry and math.isfinite(entry["eval_loss"]) for entry in trainer.state.log_history)

    after = {name: tensor.detach().cpu() for name, tensor in trainer.model.state_dict().items()}
    # Layer 1 has timescales: its input/forget biases are frozen buffers. Layer 2 has none.
    frozen = sorted(name for name, _ in model.named_buffers() if ".gate_biases." in name)
    assert frozen == ["model.layers.0.gate_biases.forget_gate", "model.layers.0.gate_biases.input_gate"]
    for name in frozen:
        assert torch.equal(before[name], after[name]), f"{name} moved"
    for name in ("model.layers.0.weight_hh", "model.layers.1.gate_biases.forget_gate", "lm_head.bias"):
        assert not torch.equal(before[name], after[name]), f"{name} did not train"

    checkpoint = output_dir / "checkpoint-3"
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert isinstance(reloaded, MTLSTMForCausalLM)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, after[name]), name
    assert (output_dir / "tokenizer.json").is_file()
    assert torch.equal(AutoModelForCausalLM.from_pretrained(output_dir).lm_head.bias, after["lm_head.bias"])


class _Blocks(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def test_trainer_predict_returns_logits_like_gpt2(tmp_path):
    """Trainer.predict / evaluate(compute_metrics=...) see the logits alone, an (N, T, V) array,
    as for a GPT-2 built from a config under the same Trainer (oracle); the metrics function
    written for GPT-2 works unchanged."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    ids = torch.randint(0, 37, (5, 6))
    seen = {}

    def compute_metrics(prediction):
        seen["shape"] = prediction.predictions.shape
        return {"mean_logit": float(prediction.predictions.mean())}

    models = {
        "gpt2": GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=6, vocab_size=37, n_positions=16)),
        "mtlstm": MTLSTMForCausalLM(tiny_config()),
    }
    shapes = {}
    for name, model in models.items():
        args = TrainingArguments(
            output_dir=str(tmp_path / name), per_device_eval_batch_size=2, report_to=[], use_cpu=True, disable_tqdm=True
        )
        trainer = Trainer(model=model, args=args, compute_metrics=compute_metrics)
        predictions = trainer.predict(_Blocks(ids))
        metrics = trainer.evaluate(_Blocks(ids))
        assert "eval_mean_logit" in metrics
        shapes[name] = (type(predictions.predictions), predictions.predictions.shape, seen["shape"])
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert shapes["mtlstm"] == shapes["gpt2"]
    assert shapes["mtlstm"][1] == (5, 6, 37)


def _one_trainer_step(tmp_path, ids, batch_size, accumulation):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = MTLSTMForCausalLM(tiny_config(activation_regularization=2.0, temporal_activation_regularization=1.0))
    args = TrainingArguments(
        output_dir=str(tmp_path / f"b{batch_size}x{accumulation}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=1.0,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        dataloader_drop_last=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Blocks(ids))
    trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_gradient_accumulation_gives_the_update_of_the_whole_batch(tmp_path):
    """AR and TAR weighted by each micro-batch's share of the targets, as the
    Trainer weights the cross-entropy (num_items_in_batch). Oracle: one step on all rows."""
    ids = torch.randint(1, 37, (4, 7))
    whole = _one_trainer_step(tmp_path, ids, batch_size=4, accumulation=1)
    for batch_size, accumulation in ((2, 2), (1, 4)):
        split = _one_trainer_step(tmp_path, ids, batch_size, accumulation)
        moved = max((whole[name] - split[name]).abs().max().item() for name in whole)
        assert moved < 1e-6, (batch_size, accumulation, moved)


def test_example_with_accumulation_gives_the_update_without_it(tmp_path):
    """examples/finetune_trainer.py: 2 micro-batches of 4 blocks accumulated give the update of
    one batch of the same 8 blocks (the Trainer's seeded sampler draws the same blocks). Plain
    SGD, so a mis-scaled accumulated gradient would show (Adam's first step hides scale)."""
    corpus, model_dir = corpus_and_saved_model(
        tmp_path, activation_regularization=2.0, temporal_activation_regularization=1.0
    )
    example = load_example()
    weights = {}
    for batch_size, accumulation in ((8, 1), (4, 2)):
        trainer = example.finetune(
            model_dir,
            tmp_path / f"b{batch_size}x{accumulation}",
            data=str(corpus),
            block_size=6,
            batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            learning_rate=1.0,
            max_steps=1,
            eval_steps=100,
            save_steps=100,
            optim="sgd",
            max_grad_norm=0.0,
            disable_tqdm=True,
        )
        weights[accumulation] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    start = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert max((weights[1][name] - start[name]).abs().max().item() for name in weights[1]) > 1e-2
    moved = max((weights[1][name] - weights[2][name]).abs().max().item() for name in weights[1])
    assert moved < 1e-6, moved


# --- label smoothing and uneven targets ----------------------------


class _LabelledRows(torch.utils.data.Dataset):
    """Rows of ids with their own labels (``-100`` where a row has no target) and mask."""

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.ids, self.labels, self.mask = ids, labels, mask

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = {"input_ids": self.ids[index], "labels": self.labels[index]}
        if self.mask is not None:
            row["attention_mask"] = self.mask[index]
        return row


def _trainer_step(tmp_path, model, dataset, batch_size=4, accumulation=1, counts=None, **arguments):
    """The parameters after one plain-SGD Trainer step (lr 0.5, no clipping, no decay); ``counts``,
    a list, receives the Trainer's ``num_items_in_batch`` of each micro-batch."""
    from transformers import Trainer, TrainingArguments

    class Trainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if counts is not None:
                counts.append(num_items_in_batch)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = TrainingArguments(
        output_dir=str(tmp_path / f"run{batch_size}x{accumulation}"), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to=[], use_cpu=True,
        disable_tqdm=True, seed=0, **arguments,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _sgd_oracle(model, loss_of, learning_rate=0.5):
    """The full-batch update: ``p - lr * d loss_of(model) / dp`` for every trainable parameter."""
    model.train()
    model.zero_grad()
    loss_of(model).backward()
    updated = {name: (p - learning_rate * p.grad).detach() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return updated


def _smoothed_shifted_cross_entropy(logits, labels, epsilon=0.1, reduction="mean"):
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        labels[:, 1:].flatten(),
        ignore_index=-100,
        label_smoothing=epsilon,
        reduction=reduction,
    )


def _assert_same_update(ours, oracle, tolerance=2e-6):
    assert ours.keys() == oracle.keys()
    worst = max((ours[name] - oracle[name]).abs().max().item() for name in ours)
    assert worst < tolerance, worst


@pytest.mark.parametrize("wrapped", ["plain", "lora"])
def test_trainer_label_smoothing_compares_each_step_with_the_next_token_as_for_gpt2(tmp_path, wrapped):
    """TrainingArguments(label_smoothing_factor=0.1): the Trainer's smoother shifts the labels for
    this model as for GPT-2 (built from a config, under the same Trainer: the oracle that the
    Trainer's update is that of ``F.cross_entropy(shifted logits, shifted labels,
    label_smoothing=0.1)``); before, it compared step t's logits with token t. Also under LoRA."""
    from transformers import GPT2Config, GPT2LMHeadModel

    ids = torch.randint(2, 37, (4, 7), generator=torch.Generator().manual_seed(3))
    dataset = _LabelledRows(ids, ids.clone())

    def build(kind):
        torch.manual_seed(0)
        if kind == "gpt2":
            return GPT2LMHeadModel(
                GPT2Config(
                    n_layer=1,
                    n_head=2,
                    n_embd=6,
                    vocab_size=37,
                    n_positions=16,
                    resid_pdrop=0.0,
                    embd_pdrop=0.0,
                    attn_pdrop=0.0,
                )
            )
        model = MTLSTMForCausalLM(tiny_config())
        if wrapped == "lora":
            import peft

            model = peft.get_peft_model(
                model,
                peft.LoraConfig(
                    r=2, lora_alpha=4, target_modules=[], target_parameters=["weight_hh"], init_lora_weights=False
                ),
            )
        return model

    counted = {}
    for kind in ("gpt2", "mtlstm"):
        counts = counted[kind] = []
        ours = _trainer_step(tmp_path / kind, build(kind), dataset, counts=counts, label_smoothing_factor=0.1)
        # The smoother divides the sum over the targets by the Trainer's count (transformers 5.24 counts
        # GPT-2's 28 labels, not its 24 targets: the count is the Trainer's, the targets are the oracle).
        oracle = _sgd_oracle(
            build(kind),
            lambda model: (
                _smoothed_shifted_cross_entropy(model(input_ids=ids).logits, ids, reduction="sum") / counts[0]
            ),
        )
        _assert_same_update(ours, oracle)
    assert int(counted["mtlstm"][0]) == 24  # 4 rows of 6 targets


def test_config_label_smoothing_smooths_the_models_loss_and_keeps_ar_and_tar(tmp_path, caplog):
    """config.label_smoothing: the model's training loss is the smoothed cross-entropy plus AR and
    TAR (oracle: the formulas on the whole batch: AWD's means in a plain call; under the Trainer,
    which passes num_items_in_batch, sums over the steps that predict a target divided by their
    number); the Trainer's update is its gradient step. The Trainer's own label_smoothing_factor
    calls the model without labels, which drops AR/TAR: the model says so."""
    ids = torch.randint(2, 37, (4, 7), generator=torch.Generator().manual_seed(4))
    regularised = dict(activation_regularization=2.0, temporal_activation_regularization=1.0)

    def build(**fields):
        torch.manual_seed(0)
        return MTLSTMForCausalLM(tiny_config(**regularised, **fields))

    def full_loss(model, per_target=False):
        output = model(input_ids=ids, output_hidden_states=True)
        hidden = output.hidden_states[-1]
        squares, changes = hidden.pow(2).mean(-1), (hidden[:, 1:] - hidden[:, :-1]).pow(2).mean(-1)
        if per_target:  # the last step predicts nothing; 24 targets
            ar, tar = squares[:, :-1].sum() / 24, changes[:, :-1].sum() / 24
        else:
            ar, tar = squares.mean(), changes.mean()
        return _smoothed_shifted_cross_entropy(output.logits, ids) + 2.0 * ar + 1.0 * tar

    model = build(label_smoothing=0.1).train()
    output = model(input_ids=ids, labels=ids)
    torch.testing.assert_close(output.loss, full_loss(model), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        output.lm_loss, _smoothed_shifted_cross_entropy(output.logits, ids), rtol=1e-6, atol=1e-6
    )
    oracle = _sgd_oracle(build(label_smoothing=0.1), lambda model: full_loss(model, per_target=True))
    _assert_same_update(
        _trainer_step(tmp_path / "config", build(label_smoothing=0.1), _LabelledRows(ids, ids.clone())), oracle
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        tiny_config(label_smoothing=1.0)

    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            _trainer_step(tmp_path / "trainer", build(), _LabelledRows(ids, ids.clone()), label_smoothing_factor=0.1)
    finally:
        hf_logging.disable_propagation()
    assert "AR/TAR" in caplog.text and "config.label_smoothing" in caplog.text


@pytest.mark.parametrize("masked", [False, True])
def test_accumulation_with_uneven_targets_gives_the_whole_batchs_update(tmp_path, masked):
    """Rows with different numbers of targets (-100 labels, and with ``masked`` padding too): any
    split into micro-batches under the Trainer gives the update of the whole batch (oracle: one
    step on all rows), AR and TAR included (before: 1.8e-3 apart)."""
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(2, 37, (4, 8), generator=generator)
    labels = ids.clone()
    labels[0, :6] = -100  # row 0 predicts 1 token, row 2 predicts 4, rows 1 and 3 all 7
    labels[2, 2:5] = -100
    mask = None
    if masked:
        mask = torch.ones_like(ids)
        mask[1, :3] = 0  # left padding without targets
        labels[1, :3] = -100
    dataset = _LabelledRows(ids, labels, mask)

    def build():
        torch.manual_seed(0)
        return MTLSTMForCausalLM(tiny_config(activation_regularization=2.0, temporal_activation_regularization=1.0))

    whole = _trainer_step(tmp_path, build(), dataset, batch_size=4, accumulation=1)
    for batch_size, accumulation in ((2, 2), (1, 4)):
        _assert_same_update(_trainer_step(tmp_path, build(), dataset, batch_size, accumulation), whole, tolerance=1e-6)
    # The whole batch's penalty is per target: AR summed over the steps that predict one, TAR over
    # the pairs ending at one, each divided by the number of targets (oracle: by hand).
    model = build().train()
    targets = torch.nn.functional.pad(labels[:, 1:] != -100, (0, 1), value=False)
    if mask is not None:
        targets &= mask.bool()
    output = model(
        input_ids=ids,
        attention_mask=mask,
        labels=labels,
        output_hidden_states=True,
        num_items_in_batch=torch.tensor(int(targets.sum())),
    )
    hidden = output.hidden_states[-1]
    count = targets.sum()
    ar = 2.0 * (hidden.pow(2).mean(-1) * targets).sum() / count
    earlier = torch.ones_like(targets[:, :-1]) if mask is None else mask[:, :-1].bool()
    tar = 1.0 * ((hidden[:, 1:] - hidden[:, :-1]).pow(2).mean(-1) * (targets[:, 1:] & earlier)).sum() / count
    torch.testing.assert_close(output.ar_loss, ar, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(output.tar_loss, tar, rtol=1e-6, atol=1e-7)
