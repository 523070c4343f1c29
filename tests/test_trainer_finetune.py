"""Fine-tuning with transformers.Trainer (examples/finetune_trainer.py) on a tiny model:
frozen timescale biases stay bit-identical, other weights train, the Trainer checkpoint reloads."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from transformers import AutoModelForCausalLM

from mtlstm_hf import MTLSTMForCausalLM

from conftest import corpus_and_saved_model, tiny_config

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
        model_dir, output_dir, data=str(corpus), block_size=8, batch_size=4, gradient_accumulation_steps=2,
        learning_rate=1e-2, max_steps=3, eval_steps=2, save_steps=3, disable_tqdm=True,
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
        args = TrainingArguments(output_dir=str(tmp_path / name), per_device_eval_batch_size=2, report_to=[],
                                 use_cpu=True, disable_tqdm=True)
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
        output_dir=str(tmp_path / f"b{batch_size}x{accumulation}"), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1.0, optim="sgd", lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=0.0, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_drop_last=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Blocks(ids))
    trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_gradient_accumulation_gives_the_update_of_the_whole_batch(tmp_path):
    """Issue 12 item 8: AR and TAR weighted by each micro-batch's share of the targets, as the
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
    corpus, model_dir = corpus_and_saved_model(tmp_path, activation_regularization=2.0, temporal_activation_regularization=1.0)
    example = load_example()
    weights = {}
    for batch_size, accumulation in ((8, 1), (4, 2)):
        trainer = example.finetune(
            model_dir, tmp_path / f"b{batch_size}x{accumulation}", data=str(corpus), block_size=6,
            batch_size=batch_size, gradient_accumulation_steps=accumulation, learning_rate=1.0, max_steps=1,
            eval_steps=100, save_steps=100, optim="sgd", max_grad_norm=0.0, disable_tqdm=True,
        )
        weights[accumulation] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    start = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert max((weights[1][name] - start[name]).abs().max().item() for name in weights[1]) > 1e-2
    moved = max((weights[1][name] - weights[2][name]).abs().max().item() for name in weights[1])
    assert moved < 1e-6, moved
