"""Forward pass of the MTLSTM models against an independent per-step reference."""

import pytest
import torch
from conftest import tiny_config, tiny_model
from reference_lm import reference_lstm_lm
from torch.nn import functional as F

from mtlstm_hf import MTLSTMForCausalLM, MTLSTMModel, MTLSTMState


def _ids(batch=3, steps=9, vocab=37, seed=0):
    return torch.randint(0, vocab, (batch, steps), generator=torch.Generator().manual_seed(seed))


def test_forward_matches_per_step_reference(device):
    model = tiny_model()
    ids = _ids()
    ref_logits, ref_hidden, ref_cell = reference_lstm_lm(model, ids)  # float64 on the CPU
    out = model.to(device)(ids.to(device))
    torch.testing.assert_close(out.logits.cpu().double(), ref_logits, atol=1e-5, rtol=0)
    for layer in range(2):
        torch.testing.assert_close(out.cache.hidden[layer].cpu().double(), ref_hidden[layer], atol=1e-6, rtol=0)
        torch.testing.assert_close(out.cache.cell[layer].cpu().double(), ref_cell[layer], atol=1e-6, rtol=0)


def test_two_chunks_with_state_equal_one_pass(device):
    model = tiny_model().to(device)
    ids = _ids(steps=12).to(device)
    full = model(ids)
    first = model(ids[:, :5])
    second = model(ids[:, 5:], cache=first.cache)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), full.logits, atol=1e-6, rtol=0)
    for a, b in zip(second.cache.hidden + second.cache.cell, full.cache.hidden + full.cache.cell):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert second.cache.get_seq_length() == 12


def test_given_state_is_not_mutated():
    model = tiny_model()
    state = model(_ids(steps=4)).cache
    saved = [h.clone() for h in state.hidden]
    a = model(_ids(steps=3, seed=1), cache=state).logits
    b = model(_ids(steps=3, seed=1), cache=state).logits
    assert torch.equal(a, b)
    assert all(torch.equal(h, s) for h, s in zip(state.hidden, saved))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_leaves_state_untouched(side, device):
    model = tiny_model()
    lengths = [7, 4, 1]
    steps = max(lengths)
    ids = torch.zeros(3, steps, dtype=torch.long)
    mask = torch.zeros(3, steps, dtype=torch.long)
    rows = [_ids(batch=1, steps=n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    for i, (row, n) in enumerate(zip(rows, lengths)):
        span = slice(steps - n, steps) if side == "left" else slice(0, n)
        ids[i, span] = row
        mask[i, span] = 1
    model, ids, mask, rows = model.to(device), ids.to(device), mask.to(device), [row.to(device) for row in rows]
    start_state = model(_ids(steps=3, seed=5).to(device)).cache  # non-zero initial state
    out = model(ids, attention_mask=mask, cache=start_state)
    for i, (row, n) in enumerate(zip(rows, lengths)):
        alone = model(row[None], cache=start_state.select(slice(i, i + 1)))
        span = slice(steps - n, steps) if side == "left" else slice(0, n)
        torch.testing.assert_close(out.logits[i, span], alone.logits[0], atol=1e-6, rtol=0)
        for a, b in zip(out.cache.hidden + out.cache.cell, alone.cache.hidden + alone.cache.cell):
            torch.testing.assert_close(a[i], b[0], atol=1e-6, rtol=0)


def test_all_padding_row_keeps_its_state():
    model = tiny_model()
    state = model(_ids(batch=2, steps=3)).cache
    mask = torch.tensor([[0, 0, 0], [1, 1, 1]])
    out = model(_ids(batch=2, steps=3, seed=2), attention_mask=mask, cache=state)
    for a, b in zip(out.cache.cell, state.cell):
        assert torch.equal(a[0], b[0])
        assert not torch.equal(a[1], b[1])


def test_mask_with_zeros_anywhere_equals_each_row_alone_on_its_kept_tokens(device):
    """Masks as transformers' tests draw them. Oracle: each row run alone on its
    kept tokens, from the same state; masked steps give zero outputs and leave the state as it
    was."""
    model = tiny_model().to(device)
    ids = _ids(batch=3, steps=6).to(device)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], device=device)
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    for row in range(3):
        kept = mask[row].bool()
        alone = model(ids[row : row + 1, kept], output_hidden_states=True)
        torch.testing.assert_close(out.logits[row, kept], alone.logits[0], rtol=1e-5, atol=1e-6)
        for layer in range(2):
            torch.testing.assert_close(out.cache.hidden[layer][row], alone.cache.hidden[layer][0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(out.cache.cell[layer][row], alone.cache.cell[layer][0], rtol=1e-5, atol=1e-6)
        assert torch.equal(out.hidden_states[-1][row, ~kept], torch.zeros_like(out.hidden_states[-1][row, ~kept]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(_ids(batch=1, steps=4).to(device), attention_mask=torch.tensor([[1, 1]], device=device))


def test_inputs_embeds_equal_input_ids(device):
    model = tiny_model().to(device)
    ids = _ids().to(device)
    embeds = model.get_input_embeddings()(ids)
    torch.testing.assert_close(model(inputs_embeds=embeds).logits, model(ids).logits)


def test_hidden_states_and_tuple_output():
    model = tiny_model()
    ids = _ids()
    out = model(ids, output_hidden_states=True)
    assert [tuple(h.shape) for h in out.hidden_states] == [(3, 9, 6), (3, 9, 10), (3, 9, 6)]
    base = model.model(ids, output_hidden_states=True)
    assert torch.equal(base.last_hidden_state, out.hidden_states[-1])
    as_tuple = model(ids, labels=ids, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 4  # to_tuple(): loss, logits, state, lm_loss
    assert torch.equal(as_tuple[1], out.logits)
    assert isinstance(as_tuple[2], MTLSTMState)
    assert model(ids, use_cache=False).cache is None


def test_loss_is_shifted_cross_entropy_ignoring_minus_100(device):
    model = tiny_model().to(device)
    ids = _ids().to(device)
    labels = ids.clone()
    labels[0, 4] = -100
    out = model(ids, labels=labels)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 37), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    # AWD-style windows pass targets already aligned with the inputs (same length).
    aligned_targets = torch.cat([labels[:, 1:], torch.full((3, 1), -100, device=device)], dim=1)
    torch.testing.assert_close(model(ids, shift_labels=aligned_targets).loss, expected)


def test_ar_and_tar_penalties_only_in_training():
    model = tiny_model(activation_regularization=2.0, temporal_activation_regularization=1.0)
    ids = _ids()
    model.train()
    out = model(ids, labels=ids, output_hidden_states=True)
    last = out.hidden_states[-1]
    expected = out.lm_loss + 2.0 * last.pow(2).mean() + 1.0 * (last[:, 1:] - last[:, :-1]).pow(2).mean()
    torch.testing.assert_close(out.loss, expected)
    model.eval()
    out = model(ids, labels=ids)
    assert torch.equal(out.loss, out.lm_loss)


def test_dropouts_act_in_training_and_vanish_in_eval():
    model = tiny_model(
        embedding_dropout=0.3, input_dropout=0.3, hidden_dropout=0.3, output_dropout=0.3, weight_drop=0.5
    )
    ids = _ids()
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)
    model.eval()
    first = model(ids).logits
    assert torch.equal(first, model(ids).logits)
    torch.testing.assert_close(first.double(), reference_lstm_lm(model, ids)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dropout", ["input_dropout", "hidden_dropout", "output_dropout"])
def test_the_model_drops_whole_units_for_the_whole_sequence(dropout):
    """Locked (variational) dropout inside the model: what the next module receives is the raw
    tensor times one (B, 1, H) mask scaled by 1/(1-p). Oracle: the raw tensor captured by hooks
    on the module before; a per-step mask would drop a unit at some steps only."""
    model = tiny_model(**{dropout: 0.5}).train()
    before, after = {
        "input_dropout": (model.model.embeddings, model.model.layers[0]),
        "hidden_dropout": (model.model.layers[0], model.model.layers[1]),
        "output_dropout": (model.model.layers[1], model.lm_head),
    }[dropout]
    seen = {}

    def keep_raw(module, args, output):  # returns None: the output is not replaced
        seen["raw"] = output if torch.is_tensor(output) else output[0]

    def keep_dropped(module, args):
        seen["dropped"] = args[0]

    hooks = [before.register_forward_hook(keep_raw), after.register_forward_pre_hook(keep_dropped)]
    try:
        model(torch.randint(0, 37, (4, 9)))
    finally:
        for hook in hooks:
            hook.remove()
    raw, dropped = seen["raw"].detach(), seen["dropped"].detach()
    assert bool((raw != 0).all())
    ratio = dropped / raw  # 0 (dropped) or 2 (kept, scaled by 1 / (1 - 0.5)) for every entry
    assert bool(((ratio == 0) | torch.isclose(ratio, torch.tensor(2.0))).all())
    assert torch.equal(ratio, ratio[:, :1].expand_as(ratio))  # the same mask at every step
    assert 0 < int((ratio[:, 0] == 0).sum()) < ratio[:, 0].numel()  # some units dropped, some kept
    assert not torch.equal(ratio[0], ratio[1])  # one mask per sequence


def test_weight_drop_keeps_raw_recurrent_weights_trainable(device):
    model = tiny_model(weight_drop=0.5).to(device)
    model.train()
    ids = _ids(steps=20).to(device)
    model(ids, labels=ids).loss.backward()
    for layer in model.model.layers:
        grad = layer.weight_hh.grad
        assert grad is not None and torch.isfinite(grad).all()
        zero_fraction = (grad == 0).float().mean().item()
        # DropConnect zeroes about half the entries' gradient; the others receive gradient.
        assert 0.3 < zero_fraction < 0.7, zero_fraction
    before = model.model.layers[0].weight_hh.detach().clone()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert not torch.equal(before, model.model.layers[0].weight_hh)


def test_weight_drop_gradient_equals_masked_gradient():
    """d loss / d raw = mask / (1 - p) * d loss / d dropped, for the same DropConnect mask."""
    model = tiny_model(weight_drop=0.5)
    model.train()
    layer = model.model.layers[0]
    ids = _ids(steps=10)
    torch.manual_seed(7)
    model(ids, labels=ids).loss.backward()
    raw_grad = layer.weight_hh.grad.clone()
    # Replay with the same seed, capturing the dropped matrix as a leaf.
    captured = {}
    original = type(layer).recurrent_weight

    def capture(self):
        dropped = original(self)
        if self is layer:
            leaf = dropped.detach().requires_grad_(True)
            captured["leaf"], captured["dropped"] = leaf, dropped.detach()
            return leaf
        return dropped

    type(layer).recurrent_weight = capture
    try:
        torch.manual_seed(7)
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
    finally:
        type(layer).recurrent_weight = original
    mask = (captured["dropped"] != 0).float() / 0.5
    torch.testing.assert_close(raw_grad, captured["leaf"].grad * mask)


def test_tied_output_weights():
    model = tiny_model()
    assert model.lm_head.weight is model.model.embeddings.weight
    untied = tiny_model(tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.model.embeddings.weight


def test_resize_token_embeddings_keeps_old_rows():
    model = tiny_model()
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(45)
    assert model.config.vocab_size == 45
    assert model.lm_head.weight is model.model.embeddings.weight
    assert model.lm_head.bias.shape == (45,)
    assert torch.equal(model.get_input_embeddings().weight[:37], old)
    assert model(torch.tensor([[44, 3]])).logits.shape == (1, 2, 45)


def test_bfloat16_forward_is_close_to_float32():
    model = tiny_model()
    ids = _ids()
    reference = model(ids).logits
    logits = model.to(torch.bfloat16)(ids).logits
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, atol=5e-2, rtol=5e-2)


def test_inputs_embeds_of_another_dtype_than_the_model_are_refused():
    """A bf16 model fed fp32 inputs_embeds (or fp32 fed fp64) would reach oneDNN with mixed
    dtypes ("could not create a primitive descriptor"); the model names both dtypes."""
    model = tiny_model()
    embeds = model.get_input_embeddings()(_ids())
    with pytest.raises(
        ValueError, match=r"inputs_embeds has dtype torch.float64 but the model's weights are torch.float32"
    ):
        model(inputs_embeds=embeds.double())
    model = model.to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"dtype torch.float32 but the model's weights are torch.bfloat16"):
        model(inputs_embeds=embeds)
    assert model(inputs_embeds=embeds.to(torch.bfloat16)).logits.dtype == torch.bfloat16


def test_cpu_autocast_probe_agrees_with_the_kernel_and_the_model_runs_under_autocast_anyway(monkeypatch):
    """The cached probe answers what the fused kernel itself does under CPU bf16 autocast
    (oracle: a direct torch.lstm call); it is what mtlstm-train asks before --mixed-precision bf16
    on a CPU. The model never runs its recurrence under autocast (the precision policy,
    layers.recurrence_precision), so its forward works whatever the probe says: the LSTM layers
    give their float32 outputs and only the output layer runs in bfloat16."""
    from mtlstm_hf.models.mtlstm import kernel_lstm as recurrences

    x = torch.randn(2, 5, 3)
    h = torch.zeros(1, 2, 4)
    weights = [torch.randn(16, 3), torch.randn(16, 4), torch.randn(16), torch.zeros(16)]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.lstm(x, (h, h), weights, True, 1, 0.0, False, False, True)
        kernel_runs = True
    except RuntimeError:
        kernel_runs = False
    assert recurrences.cpu_autocast_lstm_supported(torch.bfloat16) is kernel_runs

    model = tiny_model()
    ids = _ids()
    reference = model(ids)
    monkeypatch.setattr(recurrences, "cpu_autocast_lstm_supported", lambda dtype: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(ids)
    assert output.logits.dtype == torch.bfloat16
    torch.testing.assert_close(output.logits.float(), reference.logits, atol=5e-2, rtol=5e-2)
    for ours, theirs in zip(output.cache.hidden + output.cache.cell, reference.cache.hidden + reference.cache.cell):
        assert ours.dtype == torch.float32 and torch.equal(ours, theirs)


def test_base_model_returns_state_and_last_hidden():
    torch.manual_seed(0)
    base = MTLSTMModel(tiny_config()).eval()
    out = base(_ids())
    assert out.last_hidden_state.shape == (3, 9, 6)
    assert out.cache.hidden_sizes == [10, 6]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(torch.tensor([[1, 37]])), r"input_ids must lie in \[0, 37\)"),
        (lambda m: m(torch.tensor([[-1, 2]])), r"input_ids must lie in \[0, 37\)"),
        (lambda m: m(torch.zeros(2, 0, dtype=torch.long)), "empty"),
        (lambda m: m(torch.tensor([1, 2])), r"shape \(batch, sequence\)"),
        (lambda m: m(torch.tensor([[1.0, 2.0]])), "integer"),
        (lambda m: m(), "exactly one of input_ids"),
        (lambda m: m(inputs_embeds=torch.zeros(1, 2, 5)), "inputs_embeds must have shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model())


def test_foreign_or_mismatched_state_is_rejected():
    model = tiny_model()
    other = MTLSTMForCausalLM(tiny_config(hidden_sizes=[8, 6])).eval()
    foreign_state = other(_ids(batch=3, steps=2)).cache
    with pytest.raises(ValueError, match="another model"):
        model(_ids(), cache=foreign_state)
    state = model(_ids(batch=2, steps=2)).cache
    with pytest.raises(ValueError, match="batch size 3"):
        model(_ids(batch=3), cache=state)
    with pytest.raises(ValueError, match="MTLSTMState"):
        model(_ids(), cache=([torch.zeros(3, 10)], [torch.zeros(3, 10)]))


def test_past_key_values_is_an_alias_of_cache():
    """transformers < 5.24 and earlier code name the state past_key_values: same state, same result."""
    model = tiny_model()
    first = model(_ids(steps=4))
    assert first.past_key_values is first.cache
    with_cache = model(_ids(steps=3, seed=1), cache=first.cache)
    with_alias = model(_ids(steps=3, seed=1), past_key_values=first.cache)
    fresh = model(_ids(steps=3, seed=1))
    torch.testing.assert_close(with_alias.logits, with_cache.logits, rtol=0, atol=0)
    assert not torch.allclose(fresh.logits, with_cache.logits)
    with pytest.raises(ValueError, match="not both"):
        model(_ids(steps=3), cache=first.cache, past_key_values=first.cache)


@pytest.mark.parametrize("side", ["right", "left"])
def test_ar_and_tar_ignore_padded_steps(side):
    """Oracle: the same row alone, and the penalties written out over the real
    steps of each row run on its own (AR: mean of h^2 over real steps; TAR: mean over pairs of
    consecutive real steps)."""
    model = tiny_model(activation_regularization=2.0, temporal_activation_regularization=1.0).train()
    row = torch.tensor([[5, 9, 2, 7]])
    alone = model(row, labels=row)
    padded = (
        torch.cat([row, torch.zeros(1, 3, dtype=torch.long)], 1)
        if side == "right"
        else torch.cat([torch.zeros(1, 3, dtype=torch.long), row], 1)
    )
    mask = (torch.arange(7) < 4) if side == "right" else (torch.arange(7) >= 3)
    labels = padded.masked_fill(~mask[None], -100)
    out = model(padded, attention_mask=mask[None].long(), labels=labels)
    torch.testing.assert_close(out.loss - out.lm_loss, alone.loss - alone.lm_loss, rtol=1e-6, atol=1e-7)

    batch = torch.tensor([[5, 9, 2, 7, 1], [3, 4, 8, 0, 0]])
    batch_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out = model(batch, attention_mask=batch_mask, labels=batch.masked_fill(batch_mask == 0, -100))
    rows = [
        model.model(batch[:1], output_hidden_states=True).last_hidden_state[0],
        model.model(batch[1:, :3], output_hidden_states=True).last_hidden_state[0],
    ]
    squares = sum(h.pow(2).sum() for h in rows)
    pairs = sum((h[1:] - h[:-1]).pow(2).sum() for h in rows)
    hidden = rows[0].shape[-1]
    expected = 2.0 * squares / (8 * hidden) + 1.0 * pairs / (6 * hidden)
    torch.testing.assert_close(out.loss - out.lm_loss, expected, rtol=1e-5, atol=1e-7)


def test_a_wrapped_input_embedding_is_used():
    """The forward calls the embedding module instead of reading
    its weight, so a wrapper such as PEFT's LoRA embedding (here a stand-in adding a low-rank
    term, with no num_embeddings attribute) takes effect. Oracle: inputs_embeds from the wrapper."""

    class LowRankWrapped(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base_layer = base
            self.a = torch.nn.Parameter(torch.randn(base.weight.shape[0], 2))
            self.b = torch.nn.Parameter(torch.randn(2, base.weight.shape[1]))

        def forward(self, ids):
            return self.base_layer(ids) + torch.nn.functional.embedding(ids, self.a) @ self.b

    model = tiny_model(embedding_dropout=0.0, tie_word_embeddings=False)
    ids = _ids()
    plain = model(ids).logits
    wrapper = LowRankWrapped(model.get_input_embeddings())
    model.set_input_embeddings(wrapper)
    wrapped = model(ids).logits
    assert not torch.allclose(wrapped, plain)
    torch.testing.assert_close(wrapped, model(inputs_embeds=wrapper(ids)).logits)
