"""transformers' common generation tests (``GenerationTesterMixin``), the cases that apply to a
recurrent causal LM, on the common tester, each against an independent oracle: the plain
forward run step by step without a state, each row alone, a reload, or the returned scores.

Not applicable (transformers' own Mamba / xLSTM tests skip them or transformers refuses them):
group beam search, constrained beam search, contrastive search and DoLa (in transformers 5.10
and 5.24 moved to Hub ``custom_generate`` repositories, which need the network and
``trust_remote_code``); static / quantized / offloaded key-value caches and compiled
generation (the state is not a key-value cache: ``cache_implementation`` is ignored with
transformers' warning); key-value cache format and cropping tests (a recurrent state cannot
be cropped). Assisted and prompt-lookup decoding need that cropping: transformers refuses them
for stateful models (``_is_stateful``), the model refuses to be another model's assistant, and
the state refuses ``crop``, which is tested below.
"""

import pytest
import torch
from conftest import TESTER_SPECIAL_ID, TESTER_VOCAB, common_inputs, common_model

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.models.mtlstm.modeling_mtlstm import GENERATE_CACHE_KWARG
from mtlstm_hf.models.mtlstm.state import MTLSTMState

PROMPT_BATCH, PROMPT_LENGTH, NEW_TOKENS = 4, 5, 4
NUM_LAYERS = 2


def _model(seed: int = 0) -> MTLSTMForCausalLM:
    """The tester's network with weights scaled up (embedding U(-1, 1), recurrent weights and free
    biases x6): freshly initialised, its slow second layer (inverse-gamma timescales, input gate
    nearly shut) gives every prompt the same argmax, under which a generation test cannot tell
    right from wrong; scaled, the tokens depend on the prompt and on every step."""
    model = common_model(seed=seed, embedding_init_range=1.0)
    with torch.no_grad():
        for _name, parameter in model.model.layers.named_parameters():
            parameter.mul_(6.0)
    return model


def _prompt(seed: int = 0, left_padded: bool = False):
    ids, _ = common_inputs(seed=seed, batch=PROMPT_BATCH, length=PROMPT_LENGTH)
    mask = torch.ones_like(ids)
    if left_padded:
        for row, pad in enumerate((0, 2, 1, 3)):
            mask[row, :pad] = 0
            ids[row, :pad] = TESTER_SPECIAL_ID
    return ids, mask


def _generate(model, ids, mask, **kwargs):
    fields = dict(
        max_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=TESTER_SPECIAL_ID, return_dict_in_generate=True
    )
    fields.update(kwargs)
    return model.generate(ids, attention_mask=mask, **fields)


def _state_of(output) -> MTLSTMState:
    return getattr(output, "cache", None) or output.past_key_values


def _greedy_oracle(model, ids, mask, steps=NEW_TOKENS):
    """Argmax of a plain forward over the whole sequence at every step (no state carried)."""
    logits = []
    with torch.no_grad():
        for _ in range(steps):
            step_logits = model(ids, attention_mask=mask).logits[:, -1]
            logits.append(step_logits)
            ids = torch.cat([ids, step_logits.argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids, logits


def _sequence_log_prob(model, sequences, mask, prompt_length):
    """Sum over the generated tokens of log softmax of the plain forward (the beam score oracle)."""
    full_mask = torch.cat([mask, torch.ones(len(sequences), sequences.shape[1] - prompt_length, dtype=mask.dtype)], 1)
    with torch.no_grad():
        log_probs = model(sequences, attention_mask=full_mask).logits.log_softmax(-1)
    picked = log_probs[:, prompt_length - 1 : -1].gather(-1, sequences[:, prompt_length:, None])[..., 0]
    return picked.sum(-1)


# --- greedy -------------------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("left_padded", [False, True])
def test_greedy_generate_and_its_dict_outputs(use_cache, left_padded):
    model = _model()
    ids, mask = _prompt(left_padded=left_padded)
    out = _generate(
        model,
        ids,
        mask,
        do_sample=False,
        use_cache=use_cache,
        output_scores=True,
        output_logits=True,
        output_hidden_states=True,
    )
    expected, oracle_logits = _greedy_oracle(model, ids, mask)
    assert torch.equal(out.sequences, expected)
    assert len(out.scores) == len(out.logits) == len(out.hidden_states) == NEW_TOKENS
    for step in range(NEW_TOKENS):
        assert out.scores[step].shape == out.logits[step].shape == (PROMPT_BATCH, TESTER_VOCAB)
        torch.testing.assert_close(out.logits[step], oracle_logits[step], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.scores[step], oracle_logits[step], atol=1e-5, rtol=1e-5)  # no processors
    # Hidden states: one tuple of L + 1 tensors per step; the prompt at step 0, then one token
    # per step with the state (the whole sequence again without it).
    with torch.no_grad():
        full = model(
            expected[:, :-1],
            attention_mask=torch.cat([mask, torch.ones(PROMPT_BATCH, NEW_TOKENS - 1, dtype=mask.dtype)], 1),
            output_hidden_states=True,
        ).hidden_states
    for step, per_layer in enumerate(out.hidden_states):
        assert len(per_layer) == NUM_LAYERS + 1
        length = PROMPT_LENGTH + step if (step == 0 or not use_cache) else 1
        assert [h.shape for h in per_layer] == [(PROMPT_BATCH, length, 32)] * (NUM_LAYERS + 1)
        position = PROMPT_LENGTH + step - 1
        torch.testing.assert_close(per_layer[-1][:, -1], full[-1][:, position], atol=1e-5, rtol=1e-5)
    state = _state_of(out)
    if use_cache:
        assert isinstance(state, MTLSTMState) and state.batch_size == PROMPT_BATCH
        assert state.hidden_sizes == [32, 32] and state.get_seq_length() == PROMPT_LENGTH + NEW_TOKENS - 1
    assert getattr(out, "attentions", None) is None  # no attention to report


def test_generate_without_input_ids_starts_from_bos():
    """As in transformers' test, with the tester's ids (bos = eos = pad, so the prompt is not taken
    for padding): the prompt is bos alone (oracle: greedy from ``[[bos]]``)."""
    model = _model()
    out = model.generate(max_new_tokens=3, do_sample=False)
    bos = torch.tensor([[TESTER_SPECIAL_ID]])
    assert out[0, 0] == TESTER_SPECIAL_ID
    expected = _greedy_oracle(model, bos, torch.ones_like(bos), steps=3)[0]
    assert torch.equal(out[0], expected[0, : out.shape[1]])


def test_left_padding_compatibility_each_row_alone():
    """Left-padded rows generate what they generate alone, unpadded (scores to 1e-5)."""
    model = _model()
    ids, mask = _prompt(left_padded=True)
    batch = _generate(model, ids, mask, do_sample=False, output_scores=True)
    for row in range(PROMPT_BATCH):
        kept = mask[row].bool()
        alone = _generate(model, ids[row : row + 1, kept], None, do_sample=False, output_scores=True)
        assert torch.equal(batch.sequences[row, PROMPT_LENGTH:], alone.sequences[0, int(kept.sum()) :])
        for step in range(NEW_TOKENS):
            torch.testing.assert_close(batch.scores[step][row], alone.scores[step][0], atol=1e-5, rtol=1e-5)


# --- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [True, False])
def test_sample_generate_draws_from_the_softmax_of_its_scores(use_cache):
    """The tokens are the multinomial draws, under the same seed, from the returned scores,
    and those are the plain forward's logits over the temperature (oracle)."""
    model = _model()
    ids, mask = _prompt(seed=1)
    torch.manual_seed(11)
    out = _generate(
        model,
        ids,
        mask,
        do_sample=True,
        top_k=0,
        temperature=1.3,
        use_cache=use_cache,
        output_scores=True,
        num_return_sequences=2,
    )
    assert out.sequences.shape == (2 * PROMPT_BATCH, PROMPT_LENGTH + NEW_TOKENS)
    torch.manual_seed(11)
    for step, scores in enumerate(out.scores):
        assert scores.shape == (2 * PROMPT_BATCH, TESTER_VOCAB)
        drawn = torch.multinomial(scores.softmax(-1), num_samples=1)[:, 0]
        assert torch.equal(drawn, out.sequences[:, PROMPT_LENGTH + step])
        prefix = out.sequences[:, : PROMPT_LENGTH + step]
        with torch.no_grad():
            logits = model(prefix).logits[:, -1]
        torch.testing.assert_close(scores, logits / 1.3, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.sequences[0::2, :PROMPT_LENGTH], ids) and torch.equal(
        out.sequences[1::2, :PROMPT_LENGTH], ids
    )


# --- beam search --------------------------------------------------------------------------


@pytest.mark.parametrize("do_sample", [False, True])
@pytest.mark.parametrize("left_padded", [False, True])
def test_beam_search_and_beam_sample_scores_are_the_sequences_log_probabilities(do_sample, left_padded):
    """``sequences_scores`` (length_penalty 0) equal the plain forward's summed log-probabilities
    of the returned tokens; the state changes nothing (use_cache False gives the same under
    the same seed); the dict outputs have transformers' shapes."""
    model = _model()
    ids, mask = _prompt(seed=2, left_padded=left_padded)
    kwargs = dict(
        do_sample=do_sample,
        num_beams=3,
        num_return_sequences=2,
        length_penalty=0.0,
        output_scores=True,
        output_logits=True,
    )
    if do_sample:
        kwargs["top_k"] = 0
    torch.manual_seed(5)
    out = _generate(model, ids, mask, **kwargs)
    torch.manual_seed(5)
    without_state = _generate(model, ids, mask, use_cache=False, **kwargs)
    assert torch.equal(out.sequences, without_state.sequences)
    rows = PROMPT_BATCH * 2
    assert out.sequences.shape == (rows, PROMPT_LENGTH + NEW_TOKENS)
    assert out.sequences_scores.shape == (rows,) and out.beam_indices.shape == (rows, NEW_TOKENS)
    assert len(out.scores) == len(out.logits) == NEW_TOKENS
    assert all(s.shape == (PROMPT_BATCH * 3, TESTER_VOCAB) for s in out.scores)
    oracle = _sequence_log_prob(model, out.sequences, mask.repeat_interleave(2, dim=0), PROMPT_LENGTH)
    torch.testing.assert_close(out.sequences_scores, oracle, atol=1e-4, rtol=1e-5)
    if not do_sample:
        # Of each prompt's two returned beams, the first scores at least as high.
        assert bool((out.sequences_scores[0::2] >= out.sequences_scores[1::2] - 1e-6).all())


def test_beam_search_with_one_beam_is_greedy():
    model = _model()
    ids, mask = _prompt(seed=3)
    out = _generate(model, ids, mask, do_sample=False, num_beams=1)
    assert torch.equal(out.sequences, _greedy_oracle(model, ids, mask)[0])


# --- state, embeddings, keywords ------------------------------------------------------------


@pytest.mark.parametrize("left_padded", [False, True])
def test_generate_continues_from_the_returned_cache(left_padded):
    """Generating 2 + 3 tokens through the returned state equals generating 5 at once."""
    model = _model()
    ids, mask = _prompt(seed=4, left_padded=left_padded)
    whole = _generate(model, ids, mask, do_sample=False, max_new_tokens=5)
    first = _generate(model, ids, mask, do_sample=False, max_new_tokens=2)
    longer_mask = torch.cat([mask, torch.ones(PROMPT_BATCH, 2, dtype=mask.dtype)], dim=1)
    second = _generate(
        model,
        first.sequences,
        longer_mask,
        do_sample=False,
        max_new_tokens=3,
        **{GENERATE_CACHE_KWARG: _state_of(first)},
    )
    assert torch.equal(second.sequences, whole.sequences)


def test_generate_from_random_inputs_embeds_follows_the_embeddings():
    """Embeddings that are no token's still drive generation: greedy from them equals the argmax
    of the plain forward on them (oracle), and differs from the ids' generation."""
    model = _model()
    ids, mask = _prompt(seed=5)
    torch.manual_seed(0)
    embeds = torch.randn(PROMPT_BATCH, PROMPT_LENGTH, 32)
    out = model.generate(
        inputs_embeds=embeds,
        attention_mask=mask,
        max_new_tokens=3,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=TESTER_SPECIAL_ID,
    )
    assert out.shape == (PROMPT_BATCH, 3)  # only the new tokens, as for transformers' models
    with torch.no_grad():
        first = model(inputs_embeds=embeds, attention_mask=mask).logits[:, -1].argmax(-1)
        following = embeds
        expected = [first]
        for _ in range(2):
            following = torch.cat([following, model.get_input_embeddings()(expected[-1])[:, None]], dim=1)
            expected.append(model(inputs_embeds=following).logits[:, -1].argmax(-1))
    assert torch.equal(out, torch.stack(expected, dim=1))
    from_ids = _generate(model, ids, mask, do_sample=False, max_new_tokens=3).sequences[:, PROMPT_LENGTH:]
    assert not torch.equal(out, from_ids)


@pytest.mark.parametrize("left_padded", [False, True])
def test_generate_continues_from_inputs_embeds_and_the_returned_cache(left_padded):
    """transformers' ``test_generate_continue_from_inputs_embeds``: generating 3 tokens from
    embeddings, then 1 more from the embeddings of the whole sequence with the returned cache, gives
    the scores and the state of generating 4 at once (oracle: the uninterrupted run; its state has
    read prompt + 3 positions)."""
    model = _model()
    ids, mask = _prompt(seed=10, left_padded=left_padded)
    embeds = model.get_input_embeddings()(ids).detach()
    fields = dict(
        do_sample=False,
        eos_token_id=None,
        pad_token_id=TESTER_SPECIAL_ID,
        return_dict_in_generate=True,
        output_scores=True,
    )
    whole = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=4, **fields)
    first = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=3, **fields)
    assert _state_of(first).get_seq_length() == PROMPT_LENGTH + 2  # the last token is not read yet
    continued = torch.cat([embeds, model.get_input_embeddings()(first.sequences).detach()], dim=1)
    longer_mask = torch.cat([mask, torch.ones(PROMPT_BATCH, 3, dtype=mask.dtype)], dim=1)
    second = model.generate(
        inputs_embeds=continued,
        attention_mask=longer_mask,
        max_new_tokens=1,
        **{GENERATE_CACHE_KWARG: _state_of(first)},
        **fields,
    )
    assert _state_of(second).get_seq_length() == _state_of(whole).get_seq_length() == PROMPT_LENGTH + 3
    torch.testing.assert_close(second.scores[-1], whole.scores[-1], atol=1e-6, rtol=1e-6)
    assert torch.equal(second.sequences, whole.sequences[:, -1:])
    for index in range(NUM_LAYERS):
        torch.testing.assert_close(
            _state_of(second).hidden[index], _state_of(whole).hidden[index], atol=1e-6, rtol=1e-6
        )
    # A cache that has read every position given leaves nothing to feed: refused, not run empty.
    with pytest.raises(ValueError, match="nothing is left to feed"):
        model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=1,
            **{GENERATE_CACHE_KWARG: _state_of(whole)},
            **fields,
        )
    with pytest.raises(ValueError, match="nothing is left to feed"):
        model.generate(ids, attention_mask=mask, max_new_tokens=1, **{GENERATE_CACHE_KWARG: _state_of(whole)}, **fields)


def test_logits_to_keep_changes_nothing_in_generation():
    model = _model()
    ids, mask = _prompt(seed=6)
    default = _generate(model, ids, mask, do_sample=False, output_scores=True)
    every = _generate(model, ids, mask, do_sample=False, output_scores=True, logits_to_keep=0)
    assert torch.equal(default.sequences, every.sequences)
    for a, b in zip(default.scores, every.scores):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_prepare_inputs_for_generation_feeds_what_the_state_has_not_consumed():
    model = _model()
    ids, mask = _prompt(seed=7, left_padded=True)
    fresh = model.prepare_inputs_for_generation(
        ids, attention_mask=mask, use_cache=True, custom_flag=7, cache_position=torch.arange(PROMPT_LENGTH)
    )
    assert torch.equal(fresh["input_ids"], ids) and torch.equal(fresh["attention_mask"], mask)
    assert fresh["custom_flag"] == 7 and "cache_position" not in fresh and fresh["cache"] is None
    state = model(ids[:, :3], attention_mask=mask[:, :3]).cache
    later = model.prepare_inputs_for_generation(ids, cache=state, attention_mask=mask, use_cache=True)
    assert torch.equal(later["input_ids"], ids[:, 3:]) and torch.equal(later["attention_mask"], mask[:, 3:])
    assert later["cache"] is state
    # What it prepares continues the state to the whole prompt's output (oracle: one pass).
    with torch.no_grad():
        torch.testing.assert_close(
            model(**later).logits[:, -1], model(ids, attention_mask=mask).logits[:, -1], atol=1e-5, rtol=1e-5
        )


# --- stopping -----------------------------------------------------------------------------


def test_min_new_tokens_holds_back_eos_then_it_stops_generation():
    model = _model()
    eos = 7
    with torch.no_grad():
        model.lm_head.bias[eos] = 50.0  # the model wants to end at once
    ids, mask = _prompt(seed=8)
    stopped = model.generate(
        ids, attention_mask=mask, max_new_tokens=6, eos_token_id=eos, pad_token_id=TESTER_SPECIAL_ID
    )
    assert torch.equal(stopped, torch.cat([ids, torch.full((PROMPT_BATCH, 1), eos)], dim=1))
    held = model.generate(
        ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=3, eos_token_id=eos, pad_token_id=TESTER_SPECIAL_ID
    )
    assert held.shape == (PROMPT_BATCH, PROMPT_LENGTH + 4) and bool((held[:, -1] == eos).all())
    # The held-back steps take the best other token (oracle: the plain forward without eos).
    sequence = ids
    for _step in range(3):
        with torch.no_grad():
            logits = model(sequence).logits[:, -1]
        logits[:, eos] = -float("inf")
        sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(held[:, :-1], sequence)


def test_a_finished_row_is_padded_while_the_others_go_on():
    model = _model()
    ids, mask = _prompt(seed=9)
    free = _generate(model, ids, mask, do_sample=False, max_new_tokens=5).sequences
    eos = int(free[0, PROMPT_LENGTH + 1])  # row 0 ends at its second new token
    ends = [
        (row, int((free[row, PROMPT_LENGTH:] == eos).nonzero()[0]))
        if bool((free[row, PROMPT_LENGTH:] == eos).any())
        else (row, None)
        for row in range(PROMPT_BATCH)
    ]
    out = model.generate(
        ids, attention_mask=mask, max_new_tokens=5, do_sample=False, eos_token_id=eos, pad_token_id=TESTER_SPECIAL_ID
    )
    for row, end in ends:
        generated = out[row, PROMPT_LENGTH:]
        if end is None:
            assert torch.equal(generated, free[row, PROMPT_LENGTH : PROMPT_LENGTH + len(generated)])
        else:
            assert torch.equal(generated[: end + 1], free[row, PROMPT_LENGTH : PROMPT_LENGTH + end + 1])
            assert bool((generated[end + 1 :] == TESTER_SPECIAL_ID).all())
    assert ends[0][1] <= 1


# --- refused modes ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["prompt_lookup", "assistant_model", "as_the_assistant", "crop"])
def test_assisted_and_prompt_lookup_decoding_are_refused_clearly(mode):
    """Both verify drafted tokens and take back rejected ones, which a recurrent state cannot:
    refused with a ValueError that says so, whether the model is the main model (transformers
    refuses stateful models, as for Mamba and xLSTM), the assistant of another model (a GPT-2 built
    from a config: transformers would crop the draft state, an AttributeError before), or the state
    is cropped directly."""
    from test_transformers_common import _small_gpt2

    model = _model()
    assert MTLSTMForCausalLM._is_stateful and not MTLSTMState.is_croppable
    ids, mask = _prompt()
    if mode == "crop":
        state = model(ids, attention_mask=mask).cache
        with pytest.raises(ValueError, match="cannot be rolled back"):
            state.crop(2)
        return
    if mode == "as_the_assistant":
        main = _small_gpt2()
        with pytest.raises(ValueError, match="cannot be rolled back"):
            main.generate(
                ids[:1],
                attention_mask=mask[:1],
                max_new_tokens=5,
                do_sample=False,
                pad_token_id=TESTER_SPECIAL_ID,
                assistant_model=model,
            )
        return
    kwargs = {"prompt_lookup_num_tokens": 2} if mode == "prompt_lookup" else {"assistant_model": _model(seed=1)}
    with pytest.raises(ValueError, match="stateful|cropped"):
        model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False, **kwargs)
    # The model still generates normally afterwards (the refusal left nothing behind).
    assert model.generate(
        ids, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=TESTER_SPECIAL_ID
    ).shape == (PROMPT_BATCH, PROMPT_LENGTH + 2)


# --- generation config --------------------------------------------------------------------


def test_generation_config_follows_the_model_config_and_survives_a_reload(tmp_path):
    model = _model()
    config = model.generation_config
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (TESTER_SPECIAL_ID,) * 3
    config.max_new_tokens = 2
    config.do_sample = False
    model.save_pretrained(tmp_path)
    assert (tmp_path / "generation_config.json").is_file()
    reloaded = MTLSTMForCausalLM.from_pretrained(tmp_path)
    assert reloaded.generation_config.to_dict() == model.generation_config.to_dict()
    ids, mask = _prompt()
    out = reloaded.generate(ids, attention_mask=mask)  # the saved defaults apply
    assert out.shape == (PROMPT_BATCH, PROMPT_LENGTH + 2)
