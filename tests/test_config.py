"""MTLSTMConfig: validation of every field, JSON round trip, presets, per-layer schedule realisation."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import tiny_config

from mtlstm_hf import PRESETS, MTLSTMConfig, MTLSTMForCausalLM


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"vocab_size": -5}, "vocab_size"),
        ({"vocab_size": 10.5}, "vocab_size"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"hidden_sizes": [10, 0]}, r"hidden_sizes\[1\]"),
        ({"hidden_sizes": [10, -6]}, r"hidden_sizes\[1\]"),
        ({"hidden_sizes": 10}, "hidden_sizes"),
        ({"embedding_dropout": 1.0}, "embedding_dropout"),
        ({"input_dropout": -0.1}, "input_dropout"),
        ({"hidden_dropout": 1.5}, "hidden_dropout"),
        ({"output_dropout": "0.2"}, "output_dropout"),
        ({"weight_drop": 1.0}, "weight_drop"),
        ({"weight_drop": 1e-7}, "weight_drop"),
        ({"weight_drop": 1 - 1e-7}, "weight_drop"),
        ({"activation_regularization": -1.0}, "activation_regularization"),
        ({"temporal_activation_regularization": float("nan")}, "temporal_activation_regularization"),
        ({"embedding_init_range": 0.0}, "embedding_init_range"),
        ({"hidden_sizes": [10, 7]}, "tie_word_embeddings"),
        ({"frozen_biases": "forget"}, "frozen_biases"),
        ({"pad_token_id": 1.5}, "pad_token_id"),
        ({"eos_token_id": -1}, "eos_token_id"),
        ({"timescale_schedules": [None]}, "one entry per layer"),
        ({"timescale_schedules": "none"}, "timescale_schedules"),
        ({"timescale_schedules": [{"type": "gamma"}, None]}, r"timescale_schedules\[0\]"),
        ({"timescale_schedules": [{"type": "explicit", "timescales": [3.0] * 9}, None]}, r"timescale_schedules\[0\]"),
        (
            {"timescale_schedules": [{"type": "explicit", "timescales": [3.0] * 9 + [-1.0]}, None]},
            r"timescale_schedules\[0\]",
        ),
        ({"timescale_schedules": [{"type": "fixed", "values": [0.0]}, None]}, r"timescale_schedules\[0\]"),
        (
            {"timescale_schedules": [{"type": "inverse_gamma", "alpha": -1, "beta": 1}, None]},
            r"timescale_schedules\[0\]",
        ),
        (
            {"timescale_schedules": [{"type": "inverse_gamma", "alpha": 1, "beta": 1, "grid": "x"}, None]},
            r"timescale_schedules\[0\]",
        ),
        ({"timescale_schedules": [{"type": "chrono", "max_timescale": 1.0}, None]}, r"timescale_schedules\[0\]"),
    ],
)
def test_every_bad_value_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_unknown_schedule_lists_allowed_types():
    with pytest.raises(ValueError) as error:
        tiny_config(timescale_schedules=[{"type": "gamma"}, None])
    for allowed in ("none", "fixed", "inverse_gamma", "chrono", "explicit"):
        assert allowed in str(error.value)


def test_untied_model_allows_any_last_size():
    config = tiny_config(hidden_sizes=[10, 7], tie_word_embeddings=False)
    model = MTLSTMForCausalLM(config)
    assert model.lm_head.weight.shape == (37, 7)


def test_json_round_trip(tmp_path):
    config = tiny_config(timescale_schedules=[{"type": "chrono", "max_timescale": 30}, "none"])
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["model_type"] == "mtlstm"
    assert stored["timescale_schedules"] == [{"type": "chrono", "max_timescale": 30.0}, {"type": "none"}]
    loaded = MTLSTMConfig.from_pretrained(tmp_path)
    for field in (
        "vocab_size",
        "embedding_size",
        "hidden_sizes",
        "timescale_schedules",
        "frozen_biases",
        "weight_drop",
    ):
        assert getattr(loaded, field) == getattr(config, field)
    assert MTLSTMConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_presets():
    paper = MTLSTMConfig.from_preset("paper")
    assert paper.hidden_sizes == [1150, 1150, 400] and paper.embedding_size == 400 and paper.tie_word_embeddings
    assert [s["type"] for s in paper.timescale_schedules] == ["fixed", "inverse_gamma", "none"]
    assert paper.timescale_schedules[1]["alpha"] == 0.56 and paper.timescale_schedules[1]["beta"] == 1.0
    assert (paper.input_dropout, paper.hidden_dropout, paper.weight_drop) == (0.4, 0.25, 0.5)
    baseline = MTLSTMConfig.from_preset("paper-baseline")
    assert all(s["type"] == "none" for s in baseline.timescale_schedules)
    assert MTLSTMConfig.from_preset("paper-wikitext2").vocab_size == 33278
    assert MTLSTMConfig.from_preset("paper", vocab_size=123).vocab_size == 123
    with pytest.raises(ValueError, match="preset"):
        MTLSTMConfig.from_preset("papers")
    assert set(PRESETS) >= {"paper", "paper-baseline"}


def _scipy_quantile_timescales(alpha, hidden, grid):
    q = np.linspace(0, 1, hidden + 1)[1:] if grid == "reference" else np.linspace(0, 1, hidden + 2)[1:-1]
    return scipy.stats.invgamma.isf(q, a=alpha, scale=1.0)


def _timescale_from_bias(bias):
    # Independent of the library: T = -1 / ln sigmoid(b), in float64 numpy.
    return -1.0 / np.log(1.0 / (1.0 + np.exp(-bias.astype(np.float64))))


def test_paper_model_realises_each_layer_schedule():
    torch.manual_seed(0)
    model = MTLSTMForCausalLM(MTLSTMConfig.from_preset("paper"))
    layer1, layer2, layer3 = model.model.layers
    forget1 = layer1.gate_biases.forget_gate
    assert torch.equal(forget1[:575], torch.full((575,), forget1[0].item()))
    assert forget1[0].item() == pytest.approx(0.9273, abs=1e-4)  # T = 3
    assert forget1[575].item() == pytest.approx(1.2587, abs=1e-4)  # T = 4
    assert torch.equal(layer1.gate_biases.input_gate, -forget1)
    # Layer 2: inverse gamma quantiles, endpoint-free grid, against scipy (float32 storage).
    expected = _scipy_quantile_timescales(0.56, 1150, "endpoint_free")
    expected_bias = -np.log(np.expm1(1.0 / expected))
    np.testing.assert_allclose(layer2.gate_biases.forget_gate.numpy(), expected_bias, rtol=1e-6, atol=1e-6)
    assigned = model.assigned_timescales()
    np.testing.assert_allclose(
        assigned[1].numpy(), _timescale_from_bias(layer2.gate_biases.forget_gate.numpy()), rtol=1e-9
    )
    assert assigned[2] is None
    # Layer 3 is free: every bias is a trainable parameter, not a buffer.
    assert all(isinstance(getattr(layer3.gate_biases, g), torch.nn.Parameter) for g in layer3.gate_biases.gate_names)


def test_reference_grid_has_a_zero_timescale_last_unit():
    torch.manual_seed(0)
    config = tiny_config(
        timescale_schedules=[{"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "reference"}, None]
    )
    forget = MTLSTMForCausalLM(config).model.layers[0].gate_biases.forget_gate
    assert forget[-1].item() == -math.inf
    expected = _scipy_quantile_timescales(0.56, 10, "reference")[:-1]
    np.testing.assert_allclose(forget[:-1].numpy(), -np.log(np.expm1(1.0 / expected)), rtol=1e-6)


def test_explicit_and_chrono_schedules():
    explicit = [float(t) for t in range(1, 11)]
    torch.manual_seed(0)
    model = MTLSTMForCausalLM(tiny_config(timescale_schedules=[{"type": "explicit", "timescales": explicit}, None]))
    np.testing.assert_allclose(
        _timescale_from_bias(model.model.layers[0].gate_biases.forget_gate.numpy()), explicit, rtol=1e-5
    )
    chrono = MTLSTMForCausalLM(tiny_config(timescale_schedules=[{"type": "chrono", "max_timescale": 50.0}, None]))
    forget = chrono.model.layers[0].gate_biases.forget_gate
    # Chrono: b_f = log U(1, T_max - 1).
    assert bool((forget >= 0).all()) and bool((forget <= math.log(49.0) + 1e-6).all())
    assert torch.equal(chrono.model.layers[0].gate_biases.input_gate, -forget)


def test_hidden_size_and_num_hidden_layers_are_read_only_views_of_hidden_sizes():
    """transformers' standard names, derived (oracle: the model's own output shapes)."""
    import pytest
    import torch
    from conftest import tiny_model

    model = tiny_model(hidden_sizes=[10, 7, 6], timescale_schedules=None)
    out = model.model(torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert model.config.hidden_size == out.last_hidden_state.shape[-1] == 6
    assert model.config.num_hidden_layers == len(out.hidden_states) - 1 == 3
    with pytest.raises(AttributeError):
        model.config.hidden_size = 12
    assert "hidden_size" not in model.config.to_dict()  # nothing new is saved


def test_resize_below_a_special_token_id_completes_and_the_id_is_named_when_fed():
    """As transformers' own models behave (oracle: GPT-2 under the same call)."""
    import pytest
    import torch
    from conftest import tiny_model
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=6, vocab_size=37, bos_token_id=30))
    gpt2.resize_token_embeddings(24)
    model = tiny_model(bos_token_id=30)
    old = model.get_input_embeddings().weight[:24].detach().clone()
    model.resize_token_embeddings(24)
    assert model.config.vocab_size == gpt2.config.vocab_size == 24
    assert (
        torch.equal(model.get_input_embeddings().weight, old) and model.lm_head.weight is model.model.embeddings.weight
    )
    assert model(torch.tensor([[1, 23]])).logits.shape == (1, 2, 24)
    with pytest.raises(ValueError, match=r"\[0, 24\).*outside the vocabulary: config.bos_token_id=30"):
        model(torch.tensor([[30, 2]]))
