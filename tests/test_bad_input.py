"""A configuration or a model input that is wrong gives an error
that names it (or, where the math has no answer, a warning), never a silently different model.
Each test also checks that the nearby correct input still works, so a check that rejects
everything would fail too."""

import json
import logging

import pytest
import torch
from conftest import tiny_config, tiny_model

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.models.mtlstm.configuration_mtlstm import ARCHITECTURE_FIELDS

# --- kind 3: typos and gaps in a configuration ----------------------------------------------


@pytest.mark.parametrize(
    "typo, field",
    [
        ("hiden_sizes", "hidden_sizes"),
        ("timescale_scheduels", "timescale_schedules"),
        ("embeding_size", "embedding_size"),
        ("frozen_bias", "frozen_biases"),
    ],
)
def test_a_keyword_close_to_a_field_is_an_error_that_suggests_it(typo, field):
    with pytest.raises(ValueError, match=rf"unknown field '{typo}'; did you mean '{field}'"):
        MTLSTMConfig(**{typo: [400]})


def test_keys_transformers_writes_stay_accepted():
    config = MTLSTMConfig(
        architectures=["MTLSTMForCausalLM"],
        transformers_version="5.24.0",
        num_labels=3,
        output_hidden_states=True,
        problem_type="single_label_classification",
    )
    assert config.architectures == ["MTLSTMForCausalLM"]


def _saved_config(tmp_path, **changes):
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    saved = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del saved[key]
        else:
            saved[key] = value
    path.write_text(json.dumps(saved))
    return model, tmp_path / "model"


@pytest.mark.parametrize("field", ARCHITECTURE_FIELDS)
def test_a_saved_config_lacking_an_architecture_field_is_refused(tmp_path, field):
    _, folder = _saved_config(tmp_path, **{field: None})
    with pytest.raises(ValueError, match=rf"lacks \['{field}'\]"):
        MTLSTMForCausalLM.from_pretrained(folder)


def test_the_complete_saved_config_loads_the_same_model(tmp_path):
    model, folder = _saved_config(tmp_path)
    loaded = MTLSTMForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 37, (2, 5))
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_another_model_types_folder_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=37, n_positions=16)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type='gpt2', not 'mtlstm'"):
        MTLSTMForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0, -1.0])
def test_embedding_init_range_must_be_finite_and_positive(value):
    with pytest.raises(ValueError, match="embedding_init_range must be a finite number > 0"):
        tiny_config(embedding_init_range=value)


# --- kind 4: inputs with no answer -----------------------------------------------------------


def test_labels_with_no_target_warn_that_the_loss_is_nan(caplog):
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    with caplog.at_level(logging.WARNING):
        assert torch.isnan(model(ids, labels=torch.full_like(ids, -100)).loss)
        assert torch.isnan(model(ids[:, :1], labels=ids[:, :1]).loss)
    assert sum("No position has a target" in record.getMessage() for record in caplog.records) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        labels = ids.clone()
        labels[:, :-1] = -100  # one target per row: finite, no warning
        assert torch.isfinite(model(ids, labels=labels).loss)
    assert not caplog.records


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attention_mask": torch.tensor([[1, 2, 1]])}, r"attention_mask must contain only 0 .* got values \[2\]"),
        ({"attention_mask": torch.tensor([[1, 1, -1]])}, r"got values \[-1\]"),
        ({"use_cache": "no"}, "use_cache must be True, False or None, got 'no'"),
        ({"logits_to_keep": -1}, "logits_to_keep must be an integer >= 0"),
        ({"logits_to_keep": 1.5}, "logits_to_keep must be an integer >= 0"),
    ],
)
def test_bad_argument_values_are_rejected(kwargs, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model(torch.tensor([[1, 2, 3]]), **kwargs)


def test_good_argument_values_still_work():
    model = tiny_model()
    ids = torch.tensor([[1, 2, 3]])
    full = model(ids).logits
    assert torch.equal(model(ids, attention_mask=torch.ones_like(ids)).logits, full)
    assert torch.equal(model(ids, attention_mask=torch.ones_like(ids, dtype=torch.bool)).logits, full)
    # The output GEMM of one row may round differently from that of three: compare to 1e-6.
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, full[:, -1:], rtol=1e-6, atol=1e-7)
    assert model(ids, use_cache=False).cache is None


# --- kind 9: inputs of the wrong type, shape or device ---------------------------------------


@pytest.mark.parametrize("name", ["input_ids", "attention_mask", "labels"])
def test_a_list_instead_of_a_tensor_names_the_argument(name):
    model = tiny_model()
    kwargs = {"input_ids": torch.tensor([[1, 2, 3]])}
    kwargs[name] = [[1, 1, 1]]
    with pytest.raises(TypeError, match=rf"{name} must be a torch.Tensor, got list"):
        model(**kwargs)


def test_labels_of_another_shape_than_the_input():
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 7))
    with pytest.raises(
        ValueError, match=r"labels must have the input's shape \(batch, sequence\) = \(2, 7\), got \(2, 6\)"
    ):
        model(ids, labels=ids[:, :6])


def test_a_state_on_another_device_is_named():
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 4))
    state = model(ids).cache
    with pytest.raises(ValueError, match="cache .* is on meta but the input is on cpu"):
        model(ids, cache=state.to(device="meta"))
    model(ids, cache=state)  # the same state on the right device works
