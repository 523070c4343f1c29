"""The forward compiles and exports. torch.compile keeps each layer's recurrence eager (the compile
policy, ``layers._recurrence``: one graph break per layer, no value read of ids or masks in the
graph) and compiles the rest; torch.export exports a forward that takes and returns the state,
with a dynamic batch size. Oracle: the eager model.

What works in torch 2.13 (see README): compile without fullgraph, with inductor, padded batches
and variable window lengths; export with a dynamic batch size, with or without a state; the
sequence length is specialised by torch.export (as for a plain nn.LSTM), so an exported program
takes windows of the exported length."""

import shutil

import pytest
import torch
import torch._dynamo
from conftest import tiny_model
from torch.export import Dim


class RecordingBackend:
    """A torch.compile backend that runs each graph eagerly and records the ops in it."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):  # noqa: ANN001, ANN204
        self.graphs += 1
        self.ops += [str(node.target) for node in graph_module.graph.nodes if node.op == "call_function"]
        return graph_module.forward


def test_compile_keeps_each_recurrence_eager_and_matches_eager():
    """The compile policy: the recurrences run eagerly on the fused kernel (traced, each would become
    a Python loop over time steps), so no compiled graph holds an LSTM, also with a padded batch (no
    value read of the mask in a graph); what is compiled (the output layer and the loss) gives the
    eager model's results."""
    torch._dynamo.reset()
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    state = model(ids[:, :2]).cache
    backend = RecordingBackend()
    compiled = torch.compile(model, backend=backend)
    got, expected = compiled(ids, cache=state, labels=ids), model(ids, cache=state, labels=ids)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.loss, expected.loss)
    for a, b in zip(got.cache.hidden + got.cache.cell, expected.cache.hidden + expected.cache.cell):
        assert torch.equal(a, b)
    got, expected = compiled(ids, attention_mask=mask), model(ids, attention_mask=mask)
    torch.testing.assert_close(got.logits, expected.logits)
    assert backend.graphs >= 1 and any("linear" in op for op in backend.ops)  # the output layer is compiled
    assert not any("lstm" in op or "rnn" in op for op in backend.ops), backend.ops
    with pytest.raises(torch._dynamo.exc.Unsupported, match="compile policy.*compile without fullgraph"):
        torch.compile(model, fullgraph=True, backend="eager")(ids, attention_mask=mask)  # documented: no single graph
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 37\)"):
        model(torch.tensor([[3, 40]]))  # eager keeps the clear error


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler on the CPU"
)
def test_inductor_compiles_a_training_step_once_for_every_window_length():
    """With inductor (the default backend): a padded training step with AR/TAR and every dropout
    equals the eager step's loss and gradients with dropout off, and windows of new lengths (the
    variable BPTT) compile once more, as a dynamic shape, not once per length."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model = tiny_model(activation_regularization=2.0, temporal_activation_regularization=1.0).train()
    compiled = torch.compile(model)
    graphs = []
    for length in (6, 9, 11, 13):
        ids = torch.randint(0, 37, (3, length))
        mask = torch.ones_like(ids)
        mask[1, :2] = 0
        model.zero_grad()
        loss = compiled(ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        expected = model(ids, attention_mask=mask, labels=ids).loss
        expected.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        for grad, parameter in zip(grads, model.parameters()):
            torch.testing.assert_close(grad, parameter.grad, rtol=1e-4, atol=1e-6)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[2] == graphs[3]  # static for the first length, dynamic from the second on


def test_compiled_forward_generates_from_a_padded_prompt_as_the_eager_model():
    """generate() always passes a mask; with the forward compiled (what transformers' docs do for a
    model whose state is not a static cache: ``model.forward = torch.compile(model.forward)``) a
    left-padded prompt gives the eager model's tokens and scores (oracle: the eager generate)."""
    torch._dynamo.reset()
    from conftest import tiny_model as build

    eager, compiled = build(), build()
    compiled.forward = torch.compile(compiled.forward, backend="aot_eager")
    ids = torch.randint(2, 37, (3, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :1] = 0
    fields = dict(
        max_new_tokens=4,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        attention_mask=mask,
        return_dict_in_generate=True,
        output_scores=True,
    )
    got, expected = compiled.generate(ids, **fields), eager.generate(ids, **fields)
    assert torch.equal(got.sequences, expected.sequences)
    for a, b in zip(got.scores, expected.scores):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_trainer_with_torch_compile_trains_on_padded_batches_as_the_eager_trainer(tmp_path):
    """Trainer(torch_compile=True) with DataCollatorForLanguageModeling padding rows of different
    lengths: the step's update equals the eager Trainer's (oracle), AR/TAR and padding included."""
    from accelerate.state import AcceleratorState, GradientState
    from conftest import corpus_and_saved_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    _, model_dir = corpus_and_saved_model(
        tmp_path, activation_regularization=2.0, temporal_activation_regularization=1.0
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [tokenizer(" ".join(f"w{(7 * i + j) % 30}" for j in range(3 + 2 * i)))["input_ids"] for i in range(4)]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)

    def step(compile_it):
        torch._dynamo.reset()
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        args = TrainingArguments(
            output_dir=str(tmp_path / f"compiled-{compile_it}"), per_device_train_batch_size=4, max_steps=1,
            learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0,
            report_to=[], use_cpu=True, disable_tqdm=True, seed=0, torch_compile=compile_it,
            torch_compile_backend="aot_eager" if compile_it else None,
        )  # fmt: skip
        Trainer(
            model=model, args=args, train_dataset=[{"input_ids": row} for row in rows], data_collator=collator
        ).train()
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    assert len({len(row) for row in rows}) == 4  # the batch is padded
    eager, compiled = step(False), step(True)
    start = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert max((eager[name] - start[name]).abs().max().item() for name in eager) > 1e-3
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-6, msg=name)


def test_export_with_a_state_and_a_dynamic_batch_size():
    model = tiny_model()
    ids = torch.randint(0, 37, (2, 5))
    state = model(ids).cache
    batch = Dim("batch", min=1, max=64)
    program = torch.export.export(
        model,
        (),
        kwargs={"input_ids": ids, "cache": state},
        dynamic_shapes={"input_ids": {0: batch}, "cache": [{0: batch}] * 4},
        strict=False,
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
