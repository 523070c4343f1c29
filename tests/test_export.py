"""Issue 12 item 13: the forward traces. torch.compile(fullgraph=True) has no graph break (the
token-id range check, which reads values, stays out of traced code) and torch.export exports a
forward that takes and returns the state, with a dynamic batch size. Oracle: the eager model.

What works in torch 2.13 (see README): compile with fullgraph; export with a dynamic batch
size, with or without a state; the sequence length is specialised by torch.export (as for a
plain nn.LSTM), so an exported program takes windows of the exported length."""

import pytest
import torch
from torch.export import Dim

from conftest import tiny_model


def test_compile_fullgraph_matches_eager():
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    state = model(ids[:, :2]).cache
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    got, expected = compiled(ids, cache=state), model(ids, cache=state)
    assert torch.equal(got.logits, expected.logits)
    for a, b in zip(got.cache.hidden + got.cache.cell, expected.cache.hidden + expected.cache.cell):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 37\)"):
        model(torch.tensor([[3, 40]]))  # eager keeps the clear error


def test_export_with_a_state_and_a_dynamic_batch_size():
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    state = model(ids).cache
    batch = Dim("batch", min=1, max=64)
    program = torch.export.export(
        model, (), kwargs={"input_ids": ids, "cache": state},
        dynamic_shapes={"input_ids": {0: batch}, "cache": [{0: batch}] * 4}, strict=False,
    )
    for rows in (1, 3, 7):
        other = torch.randint(0, 37, (rows, 5))
        other_state = model(other).cache
        got, expected = program.module()(input_ids=other, cache=other_state), model(other, cache=other_state)
        torch.testing.assert_close(got.logits, expected.logits)
        torch.testing.assert_close(got.cache.hidden[-1], expected.cache.hidden[-1])
        assert got.cache.seen_tokens == expected.cache.seen_tokens


def test_state_is_a_pytree_node():
    model = tiny_model()
    state = model(torch.randint(0, 37, (2, 4))).cache
    leaves, spec = torch.utils._pytree.tree_flatten(state)
    assert len(leaves) == 4 and all(isinstance(leaf, torch.Tensor) for leaf in leaves)
    rebuilt = torch.utils._pytree.tree_unflatten(leaves, spec)
    assert rebuilt.seen_tokens == 4 and all(torch.equal(a, b) for a, b in zip(rebuilt.hidden, state.hidden))


class _FlatStateForward(torch.nn.Module):
    """The forward with the state as plain tensors (ONNX has no pytree inputs):
    ``(input_ids, h_1, c_1, ..., h_L, c_L) -> (logits, h_1', c_1', ..., h_L', c_L')``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, *state):
        from mtlstm_hf.models.mtlstm.state import MTLSTMState

        cache = MTLSTMState(hidden=list(state[0::2]), cell=list(state[1::2]))
        out = self.model(input_ids=input_ids, cache=cache)
        return (out.logits, *[t for pair in zip(out.cache.hidden, out.cache.cell) for t in pair])


def _flat_state(state) -> list[torch.Tensor]:
    return [t for pair in zip(state.hidden, state.cell) for t in pair]


def _run_in_onnx_runtime(path, model, shapes):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for rows, steps in shapes:
        ids = torch.randint(0, 37, (rows, steps))
        state = model(ids[:, :2]).cache
        feeds = [ids] + _flat_state(state)
        got = session.run(None, {name: tensor.numpy() for name, tensor in zip(names, feeds)})
        expected = model(ids, cache=state)
        torch.testing.assert_close(torch.from_numpy(got[0]), expected.logits, rtol=1e-5, atol=1e-5)
        for a, b in zip(got[1:], _flat_state(expected.cache)):
            torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_onnx_export_runs_in_onnx_runtime_with_dynamic_batch_and_length(tmp_path):
    """The TorchScript-based ONNX exporter maps the fused LSTM to ONNX's LSTM operator, so the
    exported forward takes any batch size and any sequence length (oracle: the eager model)."""
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    state = _flat_state(model(ids).cache)
    names = ["input_ids", "hidden_1", "cell_1", "hidden_2", "cell_2"]
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    dynamic |= {name: {0: "batch"} for name in names[1:]}
    path = tmp_path / "mtlstm.onnx"
    torch.onnx.export(
        _FlatStateForward(model).eval(), (ids, *state), str(path), dynamo=False, input_names=names,
        output_names=["logits", "next_hidden_1", "next_cell_1", "next_hidden_2", "next_cell_2"], dynamic_axes=dynamic,
    )  # fmt: skip
    _run_in_onnx_runtime(path, model, shapes=[(2, 5), (1, 3), (4, 9), (3, 1)])


@torch.no_grad()
def test_dynamo_onnx_export_runs_with_a_dynamic_batch(tmp_path):
    """The torch.export-based ONNX exporter: dynamic batch size; like torch.export it unrolls the
    LSTM over the exported length, so the program takes windows of that length."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    state = _flat_state(model(ids).cache)
    batch = Dim("batch", min=1, max=64)
    program = torch.onnx.export(
        _FlatStateForward(model).eval(), (ids, *state), dynamo=True, verbose=False,
        dynamic_shapes=({0: batch}, ({0: batch},) * 4),  # input_ids, then the *state tuple
    )  # fmt: skip
    path = tmp_path / "mtlstm-dynamo.onnx"
    program.save(str(path))
    _run_in_onnx_runtime(path, model, shapes=[(2, 5), (1, 5), (6, 5)])
