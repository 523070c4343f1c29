"""The optimiser's parameter groups: the timescale biases at their own learning rate.

A model whose configuration sets ``timescale_learning_rate`` (with ``frozen_biases="none"``)
trains the forget- and input-gate biases of its layers with a timescale schedule at that rate and
without weight decay, as S4 registers its timescale parameters with their own rate and no decay
(state-spaces/s4 ``models/s4/s4d.py``, ``register``). Every other trainable tensor stays in the
main group(s). ``mtlstm-train`` builds its optimiser from :func:`parameter_groups`; a
``transformers.Trainer`` gets the same groups from :func:`trainer_optimizer_cls_and_kwargs`::

    trainer = Trainer(model, args, optimizer_cls_and_kwargs=trainer_optimizer_cls_and_kwargs(model, args), ...)

Without ``timescale_learning_rate`` the groups are the ones each already had (one group for
``mtlstm-train``; the Trainer's decay / no-decay pair), so nothing changes. A model with the rate
set warns once, at its first training forward, when a timescale bias is in no group made here (an
optimiser over ``model.parameters()`` would train it at the main rate).

Each trained gate has two bias vectors (``<gate>`` and ``<gate>_hh``, as ``nn.LSTM``'s ``bias_ih``
and ``bias_hh``), each moved at the rate: plain SGD moves their sum ``b_f`` by ``2 * rate * g``.
With PEFT, list the layers' ``gate_biases`` in ``modules_to_save``; PEFT refuses that together with
``target_parameters`` on the same layers (the recurrent weights' LoRA), so train the timescales
with adapters on ``target_modules`` only (embeddings, output layer).
"""

from __future__ import annotations

from typing import Any, cast

import torch

from mtlstm_hf.models.mtlstm.layers import OWN_RATE_MARK

__all__ = ["parameter_groups", "timescale_bias_names", "trainer_optimizer_cls_and_kwargs"]

TIMESCALE_GATES: tuple[str, ...] = ("forget_gate", "input_gate")
"""The gates whose biases carry a layer's timescales (``b_f`` and ``b_i = -b_f``)."""


def _configuration(model: torch.nn.Module) -> Any:
    config = getattr(model, "config", None)  # a PeftModel forwards .config to its base model
    if config is None or not hasattr(config, "timescale_schedules"):
        raise ValueError(
            f"parameter_groups needs an MTLSTM model (its config has timescale_schedules), got {type(model).__name__}."
        )
    return config


def timescale_bias_names(model: torch.nn.Module) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the trainable forget- and input-gate biases
    of every layer with a timescale schedule: both vectors of each gate (``<gate>`` and
    ``<gate>_hh``). A PEFT model's are those of its trained copies (``modules_to_save``).

    Raises:
        ValueError: ``model`` is not an MTLSTM model (or a PEFT model of one).
    """
    _configuration(model)
    names = []
    for module_name, module in model.named_modules():
        schedule = getattr(module, "timescale_schedule", None)  # a layer's GateBiases (duck-typed: remote code too)
        if schedule is None or schedule.get("type") == "none":
            continue
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if parameter.requires_grad and parameter_name.removesuffix("_hh") in TIMESCALE_GATES:
                names.append(f"{module_name}.{parameter_name}" if module_name else parameter_name)
    return names


def parameter_groups(
    model: torch.nn.Module, weight_decay: float, decay_names: set[str] | None = None
) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` as optimiser groups.

    Args:
        model: an MTLSTM model (or a PEFT model of one).
        weight_decay: the main groups' weight decay.
        decay_names: the names that get ``weight_decay`` (the Trainer's rule); the other trainable
            parameters go to a second group with none. ``None``: every parameter gets it (``mtlstm-train``).

    Returns:
        ``[{"params", "weight_decay"}, ...]`` (the main group first, then the no-decay group when
        ``decay_names`` is given), plus, when ``config.timescale_learning_rate`` is set,
        ``{"params": timescale biases, "lr": rate, "weight_decay": 0.0}`` last. Parameters with
        ``requires_grad=False`` are left out; an empty group is left out.

    Raises:
        ValueError: ``model`` is not an MTLSTM model; ``timescale_learning_rate`` is set but no
            timescale bias is trainable (e.g. a PEFT model that did not save the gate biases).
    """
    rate = _configuration(model).timescale_learning_rate
    own = set(timescale_bias_names(model)) if rate is not None else set()
    if rate is not None and not own:
        raise ValueError(
            f"timescale_learning_rate={rate!r} but no timescale bias of this model is trainable "
            "(with PEFT, list the layers' gate_biases in modules_to_save)."
        )
    decayed, undecayed, timescale = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name in own:
            setattr(parameter, OWN_RATE_MARK, True)  # the model's training forward then does not warn
            timescale.append(parameter)
        elif decay_names is None or name in decay_names:
            decayed.append(parameter)
        else:
            undecayed.append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if decay_names is not None:
        groups.append({"params": undecayed, "weight_decay": 0.0})
    if rate is not None:
        groups.append({"params": timescale, "lr": float(rate), "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


def trainer_optimizer_cls_and_kwargs(model: torch.nn.Module, args: Any) -> tuple[Any, dict[str, Any]]:
    """``(optimizer class, keyword arguments)`` for ``Trainer(optimizer_cls_and_kwargs=...)``: the
    optimiser ``args`` chooses (``args.optim``, its rate and betas, as the Trainer would), over
    :func:`parameter_groups` with the Trainer's own decay rule (no decay on biases and norms).

    Call it once per Trainer, with the model given to that Trainer: the groups hold that model's
    parameters, and the Trainer takes ``"params"`` out of the dictionary when it builds its
    optimiser (a second Trainer given the same dictionary would silently fall back to its own
    groups). A Trainer checkpoint saved with these groups resumes only with them.

    Args:
        model: the model given to the Trainer (an MTLSTM model or a PEFT model of one).
        args: its ``transformers.TrainingArguments``.
    """
    from transformers import Trainer

    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, cast(Any, model))
    decay_names = set(Trainer.get_decay_parameter_names(None, model))  # type: ignore[arg-type]  # self is unused
    groups = parameter_groups(model, args.weight_decay, decay_names)
    return optimizer_cls, {**optimizer_kwargs, "params": groups}
