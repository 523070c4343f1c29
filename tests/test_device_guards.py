"""CPU guards of the CUDA path: each fault here lives only in a CUDA kernel, a precision wrapper or a
multi-process run, so each test reproduces on the CPU what decides it there (a spy on the kernel
call, an emulation of cuDNN's autocast wrapper, a device-mismatch detector, a count of host reads).
The CUDA tests that settle the same questions on a GPU are ``tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the train flag of the fused kernels ------------------------------------------------------


def _spy_on_fused_kernels(monkeypatch) -> list[tuple[str, bool]]:
    """Record ``(op, train flag)`` of every ``torch.lstm`` / ``torch.rnn_tanh`` call (the flag is
    argument 6 of the dense overload, 7 of the packed one, whose input is 2-D)."""
    seen: list[tuple[str, bool]] = []
    for name in ("lstm", "rnn_tanh"):
        real = getattr(torch, name)

        def spy(*args, _real=real, _name=name):
            seen.append((_name, args[6] if args[0].dim() == 3 else args[7]))
            return _real(*args)

        monkeypatch.setattr(torch, name, spy)
    return seen


@pytest.mark.parametrize("cell_type", ["lstm", "lstm-gates"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_fused_kernels_get_the_training_kernel_exactly_when_autograd_records(
    monkeypatch, cell_type, mode, grad, padded
):
    """cuDNN's backward refuses the inference kernel ("cudnn RNN backward can only be called in
    training mode"), so the flag must follow grad mode, not the module's mode: eval + grad
    (Jacobians) needs True, train + no_grad needs False. Before the fix every flag was False."""
    model = tiny_model(
        cell_types=[cell_type, "lstm"], timescale_schedules=[None, {"type": "fixed", "values": [3.0, 4.0]}]
    )
    model.train(mode == "train")
    ids = torch.randint(0, 37, (3, 6))
    mask = None
    if padded:
        mask = torch.ones(3, 6, dtype=torch.long)
        mask[0, :2] = 0
        mask[2, 4:] = 0
    seen = _spy_on_fused_kernels(monkeypatch)
    with torch.set_grad_enabled(grad):
        output = model(ids, attention_mask=mask, labels=ids)
    if grad:
        output.loss.backward()
    ops = {"lstm": "lstm", "lstm-gates": "rnn_tanh"}
    assert [op for op, _ in seen] == [ops[cell_type], "lstm"]
    assert [flag for _, flag in seen] == [grad, grad]


# --- the precision policy: the recurrence never runs under autocast ---------------------------


def _emulate_cudnn_autocast(monkeypatch) -> list[dict]:
    """Replace ``torch.lstm`` by what CUDA autocast makes of it: when called with autocast on, it
    checks nothing but returns float16 outputs (``_cudnn_rnn_cast_reflatten`` casts to half whatever
    the autocast dtype); every call records its argument dtypes and whether autocast was on."""
    calls: list[dict] = []
    real = torch.lstm

    def spy(*args):
        inputs, hx, params = args[0], args[1], args[2]
        autocast = torch.is_autocast_enabled("cpu")
        calls.append({
            "autocast": autocast,
            "input": inputs.dtype,
            "state": {t.dtype for t in hx},
            "params": [t.dtype for t in params],
        })  # fmt: skip
        with torch.autocast("cpu", enabled=False):
            outputs = real(inputs.float(), tuple(t.float() for t in hx), [t.float() for t in params], *args[3:])
        return tuple(t.half() for t in outputs) if autocast else outputs

    monkeypatch.setattr(torch, "lstm", spy)
    return calls


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_recurrence_runs_outside_autocast_in_the_weights_dtype(monkeypatch, dtype):
    """Under CUDA autocast a 3-layer model crashed at layer 2 ("Weight scalar types do not match."):
    cuDNN's wrapper returned half from layer 1 and layer 2 cast its bias to that while its weights
    stayed float32. The policy: every recurrence runs with autocast off, in float32, so no call
    sees autocast and every call's tensors share one dtype."""
    calls = _emulate_cudnn_autocast(monkeypatch)
    model = tiny_model(
        hidden_sizes=[12, 10, 6], timescale_schedules=[{"type": "fixed", "values": [3.0, 4.0]}, None, None]
    )
    model.train()
    ids = torch.randint(0, 37, (2, 5))
    with torch.autocast("cpu", dtype=dtype):
        output = model(ids, labels=ids)
    output.loss.backward()
    assert len(calls) == 3
    for call in calls:
        assert not call["autocast"]
        assert call["input"] == torch.float32 and call["state"] == {torch.float32}
        assert call["params"] == [torch.float32] * 4
    assert output.loss.dtype == torch.float32 and output.lm_loss.dtype == torch.float32
    assert output.cache.hidden[0].dtype == torch.float32 and output.cache.cell[0].dtype == torch.float32
    assert model.model.layers[0].gate_biases.forget_gate.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("cell_type", ["lstm", "lstm-gates", "lstm-srnn", "lstm-srnn-hidden"])
def test_every_cell_type_gives_its_float32_result_under_autocast(cell_type):
    """The policy holds for every kernel (fused, scan, hand-written loop), not only torch.lstm: the
    layer outputs under autocast equal the float32 ones bit for bit."""
    schedules = [None, None] if cell_type == "lstm-gates" else [{"type": "fixed", "values": [3.0, 4.0]}, None]
    model = tiny_model(cell_types=[cell_type, "lstm"], timescale_schedules=schedules)
    ids = torch.randint(0, 37, (2, 7))
    with torch.no_grad():
        expected = model.model(ids, output_hidden_states=True).hidden_states
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model.model(ids, output_hidden_states=True).hidden_states
    for layer_expected, layer_got in zip(expected[1:], got[1:]):
        assert layer_got.dtype == torch.float32
        assert torch.equal(layer_got, layer_expected)
