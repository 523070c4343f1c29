"""The timescale schedule table: one torch-free rule and one torch realisation per schedule type,
under the same names, and a new schedule added by one registration. Oracles: the formula of the
toy schedule (a linear ramp), the model's own assigned timescales, and the error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.models.mtlstm import timescales as ts
from mtlstm_hf.models.mtlstm.checks import check_int_at_least, check_positive_finite, check_positive_int
from mtlstm_hf.models.mtlstm.validation import SCHEDULE_RULES, ScheduleRule, normalize_schedule


def test_the_rules_and_the_realisations_name_the_same_schedules():
    assert list(SCHEDULE_RULES) == list(ts.SCHEDULE_REALIZATIONS)
    assert ts.SCHEDULE_TYPES == tuple(SCHEDULE_RULES)
    assert [name for name, rule in SCHEDULE_RULES.items() if rule.drawn] == ["chrono"]
    assert [rule.distribution for rule in SCHEDULE_RULES.values() if rule.distribution] == ["inverse_gamma"]


def _linear_rule(spec, hidden_size, field):
    low = check_positive_finite(spec["low"], f"{field}.low")
    high = check_positive_finite(spec["high"], f"{field}.high")
    if high < low:
        raise ValueError(f"{field}.high must be >= {field}.low = {low}, got {high!r}")
    return {"type": "linear", "low": low, "high": high}


def _linear_timescales(spec, hidden_size, generator):
    return torch.linspace(spec["low"], spec["high"], hidden_size, dtype=torch.float64)


@pytest.fixture
def linear_schedule():
    """A toy schedule (timescales in a linear ramp) added with one registration, removed after."""
    ts.register_schedule("linear", ScheduleRule(("low", "high"), (), _linear_rule), _linear_timescales)
    try:
        yield
    finally:
        del SCHEDULE_RULES["linear"], ts.SCHEDULE_REALIZATIONS["linear"]


def test_a_schedule_is_added_by_one_registration(linear_schedule):
    config = MTLSTMConfig(
        vocab_size=20,
        embedding_size=6,
        hidden_sizes=[8, 6],
        timescale_schedules=[{"type": "linear", "low": 2, "high": 9}, None],
    )
    assert config.timescale_schedules[0] == {"type": "linear", "low": 2.0, "high": 9.0}
    torch.manual_seed(0)
    model = MTLSTMForCausalLM(config)
    assigned = model.model.assigned_timescales()[0]
    torch.testing.assert_close(assigned, torch.linspace(2, 9, 8, dtype=torch.float64), rtol=1e-6, atol=0)
    assert model.model.timescale_mismatches() == []
    with pytest.raises(ValueError, match=r"timescale_schedules\[0\]\.high must be >= "):
        MTLSTMConfig(hidden_sizes=[8], embedding_size=8, timescale_schedules=[{"type": "linear", "low": 5, "high": 1}])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['mid'\]"):
        normalize_schedule({"type": "linear", "low": 1, "high": 2, "mid": 1}, 4)


def test_an_unregistered_schedule_names_the_registered_ones():
    with pytest.raises(
        ValueError,
        match=r"type must be one of \['none', 'fixed', 'inverse_gamma', 'chrono', 'explicit', 'log_uniform', ",
    ):
        normalize_schedule({"type": "linear", "low": 1, "high": 2}, 4)


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="new non-empty string"):
        ts.register_schedule("fixed", SCHEDULE_RULES["fixed"], ts.SCHEDULE_REALIZATIONS["fixed"])
    assert ts.SCHEDULE_REALIZATIONS["fixed"] is not None


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4", None, math.nan])
def test_a_positive_integer_check_names_the_field_and_the_value(value):
    with pytest.raises(ValueError, match=rf"^batch_size must be a positive integer, got {value!r}\.$"):
        check_positive_int(value, "batch_size")


def test_integers_of_numpy_pass_unless_the_field_is_written_to_json():
    assert check_positive_int(np.int64(3), "window") == 3 and type(check_positive_int(np.int64(3), "window")) is int
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        check_positive_int(np.int64(3), "vocab_size", plain=True)
    with pytest.raises(ValueError, match=r"^passage_length must be an integer >= 2, got 1\.$"):
        check_int_at_least(1, "passage_length", 2)
    with pytest.raises(ValueError, match=r"max_steps must be a positive integer or None, got 0\."):
        check_positive_int(0, "max_steps", " or None")


def test_the_field_checks_are_the_ones_the_configurations_use():
    """A numpy integer is refused by the configuration (config.json could not be written) but taken
    by an analysis option; the message is the checks module's."""
    with pytest.raises(
        ValueError,
        match=r"^vocab_size must be a positive integer, got np\.int64\(5\)\.$|^vocab_size must be a positive integer, got 5\.$",
    ):
        MTLSTMConfig(vocab_size=np.int64(5))
    from mtlstm_hf.evaluation.frequency import token_counts

    with pytest.raises(ValueError, match=r"^vocab_size must be a positive integer, got 0\.$"):
        token_counts(torch.tensor([1, 2]), 0)


def test_the_model_computes_each_layers_timescales_once_and_passes_them_down(monkeypatch):
    """Each layer receives its schedule and timescales from the model (as fla's HGRN passes its
    lower bounds): the schedule is realised once per layer, when the model is built, and the
    weight initialisation reads the layer's own values, not the configuration again (oracle: a
    spy on the realisation, and biases unchanged after the configuration is edited)."""
    from mtlstm_hf.models.mtlstm import modeling_mtlstm

    calls = []
    realize = modeling_mtlstm.realize_timescales
    monkeypatch.setattr(modeling_mtlstm, "realize_timescales", lambda *a, **k: calls.append(a) or realize(*a, **k))
    config = MTLSTMConfig(
        vocab_size=20,
        embedding_size=6,
        hidden_sizes=[8, 6, 6],
        timescale_schedules=[
            {"type": "fixed", "values": [3, 4]},
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0},
            None,
        ],
    )
    model = MTLSTMForCausalLM(config)
    assert len(calls) == 2  # one per layer with a schedule, none in the weight initialisation
    biases = {name: tensor.clone() for name, tensor in model.state_dict().items() if "gate_biases.forget" in name}
    model.config.timescale_schedules[0] = {"type": "fixed", "values": [50.0]}
    model.model.layers[0].apply(model._init_weights)
    assert torch.equal(
        model.state_dict()["model.layers.0.gate_biases.forget_gate"], biases["model.layers.0.gate_biases.forget_gate"]
    )
    assert model.model.layers[1].gate_biases.timescale_schedule["type"] == "inverse_gamma"
