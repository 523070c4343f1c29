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
            prompt, max_new_tokens=5, do_sample=False, pad_token_id=0, output_scores=True,
            return_dict_in_generate=True, **kwargs,
        )

    continued = run(ids, **{state_keyword: state})
    oracle = run(torch.cat([other_prefix, ids[:, 4:]], dim=1))
    plain = run(ids)
    assert torch.equal(continued.sequences[:, 6:], oracle.sequences[:, 6:])
    for ours, expected, fresh in zip(continued.scores, oracle.scores, plain.scores):
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
        assert (ours - fresh).abs().max() > 1e-4  # the state did change the continuation
    assert state.get_seq_length() == 4  # generate() did not mutate the caller's state object
