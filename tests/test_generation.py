"""generate() with the recurrent state as cache must equal generate() without cache."""

import pytest
import torch
from conftest import tiny_model


def _prompt(left_padded: bool):
    ids = torch.tensor([[5, 9, 3, 22, 7], [0, 0, 14, 2, 30]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    if not left_padded:
        ids, mask = ids[:1], mask[:1]
    return ids, mask


def _generate(model, ids, mask, use_cache, seed=None, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    return model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=8,
        use_cache=use_cache,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
        **kwargs,
    )


@pytest.mark.parametrize("left_padded", [False, True])
@pytest.mark.parametrize(
    "mode",
    [
        dict(do_sample=False),
        dict(do_sample=True, top_k=0, temperature=1.3),
        dict(do_sample=False, num_beams=3, num_return_sequences=2),
    ],
    ids=["greedy", "sampling", "beam"],
)
def test_cache_and_no_cache_generate_the_same(mode, left_padded):
    model = tiny_model()
    ids, mask = _prompt(left_padded)
    seed = 99 if mode.get("do_sample") else None
    cached = _generate(model, ids, mask, True, seed=seed, **mode)
    uncached = _generate(model, ids, mask, False, seed=seed, **mode)
    assert torch.equal(cached.sequences, uncached.sequences)
    assert len(cached.scores) == len(uncached.scores) == 8
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if "num_beams" in mode:
        torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-5, rtol=1e-5)


def test_greedy_generation_follows_argmax_of_full_forward():
    model = tiny_model()
    ids, mask = _prompt(True)
    out = _generate(model, ids, mask, True, do_sample=False)
    full = model(out.sequences, attention_mask=torch.cat([mask, torch.ones(2, 8, dtype=torch.long)], 1)).logits
    expected_next = full[:, ids.shape[1] - 1 : -1].argmax(-1)
    assert torch.equal(out.sequences[:, ids.shape[1] :], expected_next)


def test_prefill_then_token_by_token_equals_full_forward_with_left_padding():
    model = tiny_model()
    ids = torch.randint(2, 37, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # row 1 is left-padded; the first chunk is mostly padding for it
    full = model(ids, attention_mask=mask).logits
    chunk = model(ids[:, :5], attention_mask=mask[:, :5])
    logits, state = [chunk.logits], chunk.cache
    for t in range(5, 12):
        step = model(ids[:, t : t + 1], attention_mask=mask[:, t : t + 1], cache=state)
        logits.append(step.logits)
        state = step.cache
    stepped = torch.cat(logits, 1)
    valid = mask.bool()
    torch.testing.assert_close(stepped[valid], full[valid], atol=1e-6, rtol=0)
    assert state.get_seq_length() == 12


@pytest.mark.parametrize("state_keyword", ["cache", "past_key_values"])
def test_generate_continues_from_a_prefilled_state(state_keyword):
    """The given state stands for the tokens it consumed: generating from ``ids`` with the state of
    another prefix must equal generating from that prefix followed by the rest of ``ids``."""
    model = tiny_model()
    ids = torch.tensor([[4, 8, 15, 16, 23, 3]])
    other_prefix = torch.tensor([[30, 2, 2, 11]])
    state = model(other_prefix).cache

    def run(prompt, **kwargs):
        return model.generate(
            prompt,
            max_new_tokens=5,
            do_sample=False,
            pad_token_id=0,
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )

    continued = run(ids, **{state_keyword: state})
    oracle = run(torch.cat([other_prefix, ids[:, 4:]], dim=1))
    plain = run(ids)
    assert torch.equal(continued.sequences[:, 6:], oracle.sequences[:, 6:])
    for ours, expected, fresh in zip(continued.scores, oracle.scores, plain.scores):
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
        assert (ours - fresh).abs().max() > 1e-4  # the state did change the continuation
    assert state.get_seq_length() == 4  # generate() did not mutate the caller's state object


# --- keywords reach forward, prompts given as embeddings ----------------

_MODES = {"greedy": {}, "sampling": {"do_sample": True, "top_k": 0}, "beam": {"num_beams": 2}}


def _varied_model():
    model = tiny_model(seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)  # sharper distributions: the generated tokens vary
    return model


@pytest.mark.parametrize("mode", sorted(_MODES))
@pytest.mark.parametrize("batch", [1, 2])
def test_prompt_as_inputs_embeds_generates_what_its_ids_generate(mode, batch):
    """Oracle: generate(input_ids) whose embeddings were given; same new tokens, scores to 1e-5."""
    model = _varied_model()
    ids = torch.tensor([[5, 9, 3, 22, 7], [14, 2, 30, 8, 1]])[:batch]
    embeds = model.get_input_embeddings()(ids).detach()
    kwargs = dict(
        max_new_tokens=6,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
        **_MODES[mode],
    )
    torch.manual_seed(11)
    from_ids = model.generate(ids, **kwargs)
    torch.manual_seed(11)
    from_embeds = model.generate(inputs_embeds=embeds, **kwargs)
    assert torch.equal(from_embeds.sequences, from_ids.sequences[:, ids.shape[1] :])
    assert len(set(from_ids.sequences[0, ids.shape[1] :].tolist())) > 1  # the tokens really vary
    for a, b in zip(from_embeds.scores, from_ids.scores):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_inputs_embeds_continue_a_returned_cache():
    """A state from a prefix, then the embeddings of the whole prompt (transformers' convention:
    the embeddings of every position, those the state has read included): the same as the whole
    prompt as ids."""
    model = _varied_model()
    ids = torch.tensor([[5, 9, 3, 22, 7, 11, 4]])
    state = model(ids[:, :3]).cache
    embeds = model.get_input_embeddings()(ids).detach()
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    continued = model.generate(inputs_embeds=embeds, cache=state, **kwargs)
    whole = model.generate(ids, **kwargs)
    assert torch.equal(continued, whole[:, ids.shape[1] :])
    assert state.seen_tokens == 3  # the caller's state is not consumed in place


def test_generation_keywords_reach_forward_and_prefill_scores_the_last_position_only():
    from conftest import tiny_config

    from mtlstm_hf import MTLSTMForCausalLM

    flags = []

    class WithFlag(MTLSTMForCausalLM):  # a model extended with its own forward keyword
        def forward(self, *args, my_custom_flag=None, **kwargs):
            flags.append(my_custom_flag)
            return super().forward(*args, **kwargs)

    ids = torch.randint(1, 37, (2, 9))  # no pad id 0: generate() would mask it
    torch.manual_seed(0)
    WithFlag(tiny_config()).eval().generate(
        ids, max_new_tokens=3, do_sample=False, my_custom_flag=7, pad_token_id=0, eos_token_id=None
    )
    assert flags == [7, 7, 7]

    model = tiny_model()
    head_inputs = []
    hook = model.lm_head.register_forward_pre_hook(lambda module, args: head_inputs.append(tuple(args[0].shape)))
    out = model.generate(
        ids,
        max_new_tokens=3,
        do_sample=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
    )
    hook.remove()
    assert head_inputs[0] == (2, 1, 6)  # prefill: logits of the last position only, not (2, 9, V)
    # One tuple of per-layer tensors per step (embedding + 2 layers), like GPT-2's.
    assert len(out.hidden_states) == 3 and all(len(step) == 3 for step in out.hidden_states)
    assert [tuple(t.shape) for t in out.hidden_states[0]] == [(2, 9, 6), (2, 9, 10), (2, 9, 6)]
    assert [tuple(t.shape) for t in out.hidden_states[1]] == [(2, 1, 6), (2, 1, 10), (2, 1, 6)]
    reference = model(ids, output_hidden_states=True).hidden_states
    for got, expected in zip(out.hidden_states[0], reference):
        torch.testing.assert_close(got, expected)
