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
    logits, state = [chunk.logits], chunk.past_key_values
    for t in range(5, 12):
        step = model(ids[:, t : t + 1], attention_mask=mask[:, t : t + 1], past_key_values=state)
        logits.append(step.logits)
        state = step.past_key_values
    stepped = torch.cat(logits, 1)
    valid = mask.bool()
    torch.testing.assert_close(stepped[valid], full[valid], atol=1e-6, rtol=0)
    assert state.get_seq_length() == 12


def test_generate_accepts_a_prefilled_state():
    model = tiny_model()
    ids = torch.tensor([[4, 8, 15, 16, 23, 3]])
    state = model(ids[:, :4]).past_key_values
    continued = model.generate(ids, past_key_values=state, max_new_tokens=5, do_sample=False, pad_token_id=0)
    fresh = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(continued, fresh)
