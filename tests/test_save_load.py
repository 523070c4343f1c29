"""Saving, loading (installed package and remote code) and frozen timescales that stay frozen."""

import json
import os

import pytest
import torch
from conftest import load_in_fresh_process_without_package, tiny_model
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from mtlstm_hf import MTLSTMForCausalLM, MTLSTMModel
from mtlstm_hf.models.mtlstm.timescales import forget_bias_from_timescale

FROZEN = ("input_gate", "forget_gate")


def _frozen_biases(model):
    return {name: tensor.detach().clone() for name, tensor in model.named_buffers() if name.endswith(FROZEN)}


def _train_steps(model, optimizer, steps=60):
    model.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        ids = torch.randint(0, 37, (4, 12), generator=generator)
        optimizer.zero_grad()
        model(ids, labels=ids).loss.backward()
        optimizer.step()


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
        lambda params: torch.optim.SGD(params, lr=1.0, weight_decay=0.1, momentum=0.9),
    ],
    ids=["adamw", "sgd"],
)
def test_frozen_timescale_biases_are_bit_identical_after_training(make_optimizer):
    model = tiny_model(weight_drop=0.3, input_dropout=0.2)
    before = _frozen_biases(model)
    assert set(before) == {"model.layers.0.gate_biases.input_gate", "model.layers.0.gate_biases.forget_gate"}
    free_before = model.model.layers[0].gate_biases.output_gate.detach().clone()
    optimizer = make_optimizer(model.parameters())
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(tensor) not in optimised for tensor in dict(model.named_buffers()).values())
    _train_steps(model, optimizer)
    after = _frozen_biases(model)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    # The forget bias still encodes T = 3 / T = 4 exactly as assigned.
    expected = forget_bias_from_timescale(torch.tensor([3.0] * 5 + [4.0] * 5)).float()
    assert torch.equal(after["model.layers.0.gate_biases.forget_gate"], expected)
    # ...while the free biases of the same layer did train.
    assert not torch.equal(free_before, model.model.layers[0].gate_biases.output_gate)


def test_frozen_all_reproduces_reference_code():
    model = tiny_model(frozen_biases="all")
    names = {name for name, _ in model.named_buffers()}
    assert {
        f"model.layers.0.gate_biases.{g}" for g in ("input_gate", "forget_gate", "cell_candidate", "output_gate")
    } == names
    assert not any("layers.1.gate_biases" in n for n in names)  # the free layer stays trainable
    trainable_only = tiny_model(frozen_biases="none")
    assert not list(trainable_only.named_buffers())


def test_save_and_load_through_auto_classes(tmp_path):
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 7))
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"config.json", "model.safetensors", "modeling_mtlstm.py", "configuration_mtlstm.py"} <= files
    reloaded_config = AutoConfig.from_pretrained(tmp_path).to_dict()
    reloaded_config.pop("_name_or_path")
    expected_config = model.config.to_dict()
    expected_config.pop("_name_or_path")
    assert reloaded_config == expected_config
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MTLSTMForCausalLM)
    assert loaded.lm_head.weight is loaded.model.embeddings.weight
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert _frozen_biases(loaded).keys() == _frozen_biases(model).keys()
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, MTLSTMModel)
    assert torch.equal(base(ids).last_hidden_state, model.model(ids).last_hidden_state)


def test_bfloat16_load_keeps_timescale_biases_exact(tmp_path):
    model = tiny_model(timescale_schedules=[{"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}, None])
    model.save_pretrained(tmp_path)
    loaded = MTLSTMForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.model.layers[0].weight_ih.dtype == torch.bfloat16
    for name, tensor in _frozen_biases(model).items():
        loaded_tensor = loaded.get_buffer(name)
        assert loaded_tensor.dtype == torch.float32
        assert torch.equal(loaded_tensor, tensor), name
    # The inverse-gamma biases are not representable in bf16: the test would catch rounding.
    forget = _frozen_biases(model)["model.layers.0.gate_biases.forget_gate"]
    assert not torch.equal(forget.bfloat16().float(), forget)
    assert loaded(torch.tensor([[1, 2, 3]])).logits.dtype == torch.bfloat16


def test_remote_code_load_in_fresh_process_without_the_package(tmp_path):
    model = tiny_model()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_mtlstm.MTLSTMForCausalLM"
    ids = torch.randint(0, 37, (2, 9))
    remote = load_in_fresh_process_without_package(folder, ids, tmp_path)
    with torch.no_grad():  # like the loading script
        expected = model(ids).logits
    assert torch.equal(remote["logits"], expected)


def test_init_weights_sets_the_frozen_timescale_buffers(tmp_path):
    """Transformers initialises what a checkpoint lacks with _init_weights; the
    frozen forget/input biases are buffers and must be set too (oracle: a fresh model's, which
    come from the schedule), also when the rest of their layer was loaded, and on a model built
    on the meta device."""
    from safetensors.torch import load_file, save_file

    schedules = [{"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}, None]
    model = tiny_model(timescale_schedules=schedules)
    frozen = _frozen_biases(model)
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    for name in frozen:
        del tensors[name]
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    loaded = MTLSTMForCausalLM.from_pretrained(tmp_path)
    for name, tensor in frozen.items():
        assert torch.equal(loaded.get_buffer(name), tensor), name

    with torch.device("meta"):
        empty = MTLSTMForCausalLM(model.config)
    empty = empty.to_empty(device="cpu")
    for name in frozen:
        empty.get_buffer(name).fill_(float("nan"))
    empty.model.layers[0].gate_biases.apply(empty._init_weights)  # the module alone, as transformers may call it
    for name, tensor in frozen.items():
        assert torch.equal(empty.get_buffer(name), tensor), name
