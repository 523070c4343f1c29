"""A schedule's timescales frozen, trainable, or trainable at their own rate without weight decay
(``timescale_learning_rate``, the S4 pattern), honoured by ``mtlstm-train``, the ``Trainer`` and PEFT.

Oracles: the plain SGD update ``-rate * gradient`` of each parameter, with the gradient taken by
autograd on the same batch in a separate model (so the update's rate is read off exactly); a rate
of 0 keeps the biases bit-identical while the rest trains; frozen biases stay bit-identical."""

from __future__ import annotations

import copy
import warnings

import peft
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from conftest import tiny_config
from test_training import corpus_dir, tiny_run  # noqa: F401 (fixture)

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.training import parameter_groups, timescale_bias_names, train, trainer_optimizer_cls_and_kwargs
from mtlstm_hf.training.preparation import build_optimizer

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings(
        "ignore:Model has `tie_word_embeddings=True`"
    ),  # PEFT on a tied lm_head, not merged here
]

TIMESCALES = [{"type": "ring", "exponent": 8}, {"type": "log_uniform"}]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def model_with(rate, frozen_biases="none", seed=0):
    torch.manual_seed(seed)
    config = tiny_config(timescale_schedules=TIMESCALES, frozen_biases=frozen_biases, timescale_learning_rate=rate)
    return MTLSTMForCausalLM(config)


def gradients(model, ids):
    """The oracle's gradient, from a copy (no optimiser: its one warning is expected and muted)."""
    model = copy.deepcopy(model).train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="timescale_learning_rate=.* no own-rate optimiser group")
        model(input_ids=ids, labels=ids).loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timescale_learning_rate": 0.1}, r"needs frozen_biases='none' .* frozen_biases='forget_input'"),
        ({"timescale_learning_rate": -1.0, "frozen_biases": "none"}, r"finite and >= 0 .*, got -1.0"),
        ({"timescale_learning_rate": float("inf"), "frozen_biases": "none"}, r"finite and >= 0"),
        ({"timescale_learning_rate": "fast", "frozen_biases": "none"}, r"timescale_learning_rate must be None"),
        (
            {"timescale_learning_rate": 0.1, "frozen_biases": "none", "timescale_schedules": None},
            r"no layer has a timescale schedule",
        ),
    ],
)
def test_bad_values_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**fields)


def test_the_groups_hold_the_forget_and_input_biases_of_the_layers_with_a_schedule():
    model = MTLSTMForCausalLM(
        tiny_config(timescale_schedules=[TIMESCALES[0], None], frozen_biases="none", timescale_learning_rate=0.5)
    )
    names = timescale_bias_names(model)
    assert sorted(names) == sorted(
        f"model.layers.0.gate_biases.{gate}{side}" for gate in ("forget_gate", "input_gate") for side in ("", "_hh")
    )
    groups = parameter_groups(model, weight_decay=1e-6)
    assert [(group["weight_decay"], group.get("lr")) for group in groups] == [(1e-6, None), (0.0, 0.5)]
    parameters = dict(model.named_parameters())
    assert [id(p) for p in groups[1]["params"]] == [id(parameters[name]) for name in names]
    assert sum(len(group["params"]) for group in groups) == len(parameters)
    unset = MTLSTMForCausalLM(tiny_config(timescale_schedules=[TIMESCALES[0], None], frozen_biases="none"))
    assert [len(group["params"]) for group in parameter_groups(unset, 0.0)] == [len(list(unset.parameters()))]


@pytest.mark.parametrize("optimizer", ["awd", "adamw"])
def test_mtlstm_trains_optimizer_moves_the_timescales_at_their_own_rate(optimizer, tmp_path):
    """build_optimizer (what mtlstm-train runs): one SGD step moves each timescale bias by
    -rate * gradient and every other weight by -lr * (gradient + weight_decay * weight); AdamW's first
    step moves each by its group's rate times g / (|g| + eps) and decays only the main group."""
    from mtlstm_hf.training import TrainingSettings

    lr, rate, decay = 0.3, 0.05, 0.1
    settings = TrainingSettings(optimizer=optimizer, learning_rate=lr, weight_decay=decay, lr_scheduler="constant")
    model = model_with(rate).train()
    ids = torch.randint(2, 37, (3, 9))
    grads = gradients(model, ids)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer_, _ = build_optimizer(settings, model, planned_steps=1)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer_.step()
    own = set(timescale_bias_names(model))
    assert len(own) == 8
    for name, parameter in model.named_parameters():
        step = parameter.detach() - before[name]
        group_rate = rate if name in own else lr
        if optimizer == "awd":
            expected = -group_rate * (grads[name] + (0.0 if name in own else decay) * before[name])
            torch.testing.assert_close(step, expected, rtol=1e-5, atol=1e-6)  # float32 w - step - w
        else:
            # AdamW's first step: p (1 - lr wd) - lr g / (|g| + eps) (bias-corrected m = g, sqrt(v) = |g|)
            decayed = before[name] * (1 - (0.0 if name in own else lr * decay))
            gradient = grads[name]
            expected = decayed - group_rate * gradient / (gradient.abs() + settings.adam_epsilon)
            torch.testing.assert_close(parameter.detach(), expected, rtol=1e-5, atol=1e-6)


def test_mtlstm_train_honours_the_rate_end_to_end(corpus_dir, tmp_path):
    """A whole ``train`` run: at rate 0 the trainable timescale biases end bit-identical while
    every other weight moved; at a positive rate they move; frozen biases (buffers) never move."""
    from mtlstm_hf.models.mtlstm.timescales import realize_timescales

    overrides = {"timescale_schedules": [TIMESCALES[0], None]}
    ends = {}
    for label, extra in (
        ("zero", {"frozen_biases": "none", "timescale_learning_rate": 0.0}),
        ("own", {"frozen_biases": "none", "timescale_learning_rate": 1.0}),
        ("frozen", {"frozen_biases": "forget_input"}),
    ):
        result = train(
            tiny_run(corpus_dir, tmp_path / label, max_steps=3, epochs=1, model_overrides={**overrides, **extra})
        )
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        ends[label] = MTLSTMForCausalLM.from_pretrained(result.best_model_dir)
    hidden = ends["zero"].config.hidden_sizes[0]
    initial = realize_timescales(TIMESCALES[0], hidden)
    from mtlstm_hf.models.mtlstm.layers import timescale_gate_biases

    expected = timescale_gate_biases(initial)
    for label in ("zero", "frozen"):
        biases = ends[label].model.layers[0].gate_biases
        assert torch.equal(biases.effective("forget_gate"), expected["forget_gate"]), label
        assert torch.equal(biases.effective("input_gate"), expected["input_gate"]), label
    moved = ends["own"].model.layers[0].gate_biases.effective("forget_gate")
    assert not torch.equal(moved, expected["forget_gate"])


def _trainer(model, tmp_path, lr):
    from transformers import Trainer, TrainingArguments

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            ids = torch.arange(2, 11) + index
            return {"input_ids": ids, "labels": ids}

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=1,
        learning_rate=lr,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Blocks(),
        optimizer_cls_and_kwargs=trainer_optimizer_cls_and_kwargs(model, args),
    )
    ids = torch.stack([Blocks()[i]["input_ids"] for i in range(4)])
    return trainer, ids


@pytest.mark.parametrize("with_peft", [False, True])
def test_the_trainer_and_peft_move_the_timescales_at_their_own_rate(with_peft, tmp_path):
    """transformers.Trainer (optimizer_cls_and_kwargs from the helper), plain and with a LoRA
    adapter whose modules_to_save are the gate biases: one SGD step moves each timescale bias by
    -rate * gradient, the other trained tensors by -lr * gradient."""
    lr, rate = 0.2, 0.03
    model = model_with(rate)
    if with_peft:
        config = peft.LoraConfig(r=2, target_modules=["lm_head"], modules_to_save=["gate_biases"])
        model = peft.get_peft_model(model, config)
    trainer, ids = _trainer(model, tmp_path, lr)
    grads = gradients(model, ids)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    own = set(timescale_bias_names(model))
    assert len(own) == 8 and all(("modules_to_save" in name) == with_peft for name in own)
    trainer.train()
    for name, parameter in model.named_parameters():
        if name in before:
            expected = -(rate if name in own else lr) * grads[name]
            torch.testing.assert_close(parameter.detach() - before[name], expected, rtol=1e-5, atol=1e-6)


def test_peft_without_the_gate_biases_saved_names_the_fix():
    model = peft.get_peft_model(model_with(0.1), peft.LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(ValueError, match="modules_to_save"):
        parameter_groups(model, 0.0)


def test_a_model_without_timescales_is_refused_by_name():
    with pytest.raises(ValueError, match="needs an MTLSTM model"):
        parameter_groups(torch.nn.Linear(2, 2), 0.0)


def test_the_rate_survives_a_save_and_a_reload(tmp_path):
    model = model_with(0.25)
    model.save_pretrained(tmp_path)
    assert MTLSTMForCausalLM.from_pretrained(tmp_path).config.timescale_learning_rate == 0.25
    assert MTLSTMConfig.from_pretrained(tmp_path).frozen_biases == "none"


def test_an_optimiser_that_ignores_the_rate_is_not_silent():
    """A model with the rate set, trained by an optimiser over model.parameters(): one warning at
    the first training forward, naming the helpers; none when the groups come from parameter_groups."""
    ids = torch.randint(2, 37, (2, 6))
    model = model_with(0.01).train()
    with pytest.warns(UserWarning, match=r"8 timescale bias\(es\) .* in no own-rate optimiser group.*parameter_groups"):
        model(input_ids=ids, labels=ids).loss.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(input_ids=ids, labels=ids)  # once per model
        grouped = model_with(0.01).train()
        parameter_groups(grouped, 0.0)
        grouped(input_ids=ids, labels=ids)
        with torch.no_grad():  # evaluation never warns
            model_with(0.01).train()(input_ids=ids)
