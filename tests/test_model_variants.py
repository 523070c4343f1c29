"""Every cell variant works in the full model: forward vs reference loop, state continuation,
padding, generation with cache, save/load and remote-code load."""

import json
import os

import pytest
import torch
from conftest import load_in_fresh_process_without_package, tiny_config

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.models.mtlstm.layouts import CELL_TYPES
from mtlstm_hf.models.mtlstm.naive import reference_sequence

VARIANTS = [c for c in CELL_TYPES if c != "lstm"]


def variant_model(cell_type, seed=0, **overrides):
    torch.manual_seed(seed)
    schedule = None if cell_type == "lstm-gates" else {"type": "fixed", "values": [3.0, 4.0]}
    fields = dict(cell_types=cell_type, timescale_schedules=[schedule, None])
    fields.update(overrides)
    return MTLSTMForCausalLM(tiny_config(**fields)).eval()


def reference_logits(model, ids):
    """The model's forward rebuilt from the per-step reference loop of every layer."""
    x = model.get_input_embeddings()(ids)
    for layer in model.model.layers:
        batch = ids.shape[0]
        h0 = torch.zeros(batch, layer.hidden_size)
        c0 = torch.zeros(batch, layer.hidden_size) if layer.layout.has_cell else None
        x, _, _ = reference_sequence(
            layer.cell_type, x, h0, c0, layer.weight_ih, layer.weight_hh, layer.gate_biases.concatenated(x.dtype)
        )
    return model.lm_head(x)


@pytest.mark.parametrize("cell_type", VARIANTS)
def test_variant_model_matches_reference_and_continues_state(cell_type):
    model = variant_model(cell_type)
    ids = torch.randint(0, 37, (3, 11), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    torch.testing.assert_close(full.logits, reference_logits(model, ids), atol=1e-5, rtol=0)
    first = model(ids[:, :4])
    second = model(ids[:, 4:], cache=first.cache)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), full.logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell_type", VARIANTS)
def test_variant_left_padding_and_generation_with_cache(cell_type):
    model = variant_model(cell_type)
    ids = torch.tensor([[5, 9, 3, 22, 7], [0, 0, 14, 2, 30]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    padded = model(ids, attention_mask=mask)
    alone = model(ids[1:, 2:])
    torch.testing.assert_close(padded.logits[1, 2:], alone.logits[0], atol=1e-6, rtol=0)
    for mode in (dict(do_sample=False), dict(do_sample=False, num_beams=3)):
        runs = [
            model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=6,
                use_cache=use_cache,
                pad_token_id=0,
                eos_token_id=None,
                output_scores=True,
                return_dict_in_generate=True,
                **mode,
            )
            for use_cache in (True, False)
        ]
        assert torch.equal(runs[0].sequences, runs[1].sequences)
        for a, b in zip(runs[0].scores, runs[1].scores):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_mixed_variant_stack_saves_and_loads_with_remote_code(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(
        hidden_sizes=[10, 8, 9, 7, 6],
        cell_types=["lstm-srnn", "lstm-srnn-out", "lstm-srnn-hidden", "lstm-gates", "lstm"],
        timescale_schedules=[
            {"type": "fixed", "values": [3.0, 4.0]},
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0},
            {"type": "chrono", "max_timescale": 20.0},
            None,
            None,
        ],
    )
    model = MTLSTMForCausalLM(config).eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["cell_types"] == config.cell_types
    assert {"kernel_lstm.py", "kernel_variants.py", "kernel_scan.py"} <= set(os.listdir(folder))
    assert "naive.py" not in os.listdir(folder)
    ids = torch.randint(0, 37, (2, 9))
    loaded = MTLSTMForCausalLM.from_pretrained(folder).eval()
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    remote = load_in_fresh_process_without_package(folder, ids, tmp_path / "remote")
    with torch.no_grad():  # like the loading script: no-grad and autograd paths may differ by an ulp
        expected = model(ids).logits
    assert torch.equal(remote["logits"], expected)


def test_variant_parameter_shapes_and_frozen_gates():
    model = variant_model("lstm-srnn-out", frozen_biases="all")
    layer = model.model.layers[0]
    assert layer.weight_ih.shape == (30, 6) and layer.weight_hh.shape == (20, 10)
    assert {name for name, _ in layer.named_buffers()} == {"gate_biases.input_gate", "gate_biases.forget_gate"}
    hidden_only = variant_model("lstm-srnn-hidden").model.layers[0]
    assert hidden_only.weight_hh is None
    rnn = variant_model("lstm-gates").model.layers[0]
    assert rnn.weight_ih.shape == (10, 6) and rnn.cell_size == 0


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"cell_types": "gru"}, r"cell_types\[0\]"),
        ({"cell_types": ["lstm"]}, "one per layer"),
        ({"cell_types": ["lstm-gates", "lstm"]}, r"timescale_schedules\[0\].*forget gate"),
    ],
)
def test_bad_cell_types_raise(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)
