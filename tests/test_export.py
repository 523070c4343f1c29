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
