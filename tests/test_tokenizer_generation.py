"""The word tokenizer in transformers' generation tools.

The model is transformers' own GPT-2, built from a config with the word
tokenizer's vocabulary, so that only the tokenizer is under test. Oracles:
the same greedy generation without stopping (truncated by hand where the stop
word first appears), and the words of the generated ids read off the
vocabulary table.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, pipeline

from mtlstm_hf import WordStopStringCriteria
from mtlstm_hf.data import build_word_tokenizer, load_corpus, sample_corpus_dir

PROMPT = "the game was"
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def sample_train():
    return load_corpus(sample_corpus_dir())["train"]


def tiny_gpt2(tokenizer, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=8, vocab_size=len(tokenizer), bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


def greedy(model, tokenizer, prompt: str, /, **kwargs) -> list[int]:
    """The generated ids only, greedy, without <eos> stopping (a random model may emit it)."""
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )  # fmt: skip
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def distinct_words_model(tokenizer):
    """A seed whose unconstrained continuation has >= 4 distinct words (random weights repeat words)."""
    for seed in range(50):
        model = tiny_gpt2(tokenizer, seed)
        ids = greedy(model, tokenizer, PROMPT)
        if len(set(ids)) >= 4:
            return model, ids
    pytest.fail("no seed gave a varied continuation")


@pytest.mark.parametrize("convention", ["whitespace", "wikitext"])
def test_pipeline_output_is_prompt_plus_space_plus_new_words(sample_train, convention):
    tokenizer = build_word_tokenizer(sample_train, convention=convention)
    model = tiny_gpt2(tokenizer)
    new_ids = greedy(model, tokenizer, PROMPT)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator(PROMPT, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)[0]["generated_text"]
    words = tokenizer.convert_ids_to_tokens(new_ids)
    if convention == "whitespace":  # words read off the table, joined by spaces
        assert text == PROMPT + " " + " ".join(words)
    # any convention: what the pipeline returns is the decoding of prompt + continuation
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    assert text == tokenizer.decode(prompt_ids + new_ids).lstrip(" ")
    # the decoding of earlier versions glued the first new word onto the prompt
    old = build_word_tokenizer(sample_train, convention=convention, space_prefix=False)
    old_text = pipeline("text-generation", model=model, tokenizer=old)(
        PROMPT, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None
    )[0]["generated_text"]
    assert old_text.startswith(PROMPT + words[0])


def test_pipeline_keeps_unknown_words_visible(sample_train):
    """A model that writes ``<unk>`` shows it in the text-generation pipeline's
    text (transformers skips named special tokens; ``<unk>`` is a word here). Oracle: the words
    read off the vocabulary, ``<unk>`` among them."""
    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
    from mtlstm_hf.data import UNK_TOKEN, unknown_word_id

    tokenizer = build_word_tokenizer(sample_train)
    unk = unknown_word_id(tokenizer)
    torch.manual_seed(0)
    model = MTLSTMForCausalLM(MTLSTMConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_sizes=[8])).eval()
    with torch.no_grad():
        model.lm_head.bias[unk] = 30.0  # every new word is <unk>
    text = pipeline("text-generation", model=model, tokenizer=tokenizer)("the city", max_new_tokens=3, do_sample=False)[
        0
    ]["generated_text"]
    assert text.split() == ["the", "city", UNK_TOKEN, UNK_TOKEN, UNK_TOKEN]
    assert tokenizer.decode(tokenizer("the zebra")["input_ids"], skip_special_tokens=True).split() == ["the", UNK_TOKEN]


def oracle_stop(prompt_words: list[str], words: list[str], stop: str) -> int:
    """How many new words generation keeps: up to the first word in whose text ``stop`` ends,
    the text being the words joined by spaces (the stop string ends after the prompt)."""
    for kept in range(1, len(words) + 1):
        before = len(" ".join(prompt_words + words[: kept - 1]))
        text = " ".join(prompt_words + words[:kept])
        if any(text.startswith(stop, i) and i + len(stop) > before for i in range(len(text))):
            return kept
    return len(words)


@pytest.mark.parametrize("pick", [0, 2, 3])
def test_stop_string_stops_right_after_the_stop_word(sample_train, pick):
    tokenizer = build_word_tokenizer(sample_train)
    model, free = distinct_words_model(tokenizer)
    words = tokenizer.convert_ids_to_tokens(free)
    stop_word = words[pick]
    # the oracle: truncate where the word first appears (as a word or inside one)
    first = min(k for k, word in enumerate(words) if stop_word in word)
    stopped = greedy(model, tokenizer, PROMPT, stopping_criteria=[WordStopStringCriteria(tokenizer, [stop_word])])
    assert stopped == free[: first + 1]
    assert first + 1 < NEW_TOKENS or pick == NEW_TOKENS - 1  # it did stop early
    # a stop string of two words stops after the second one
    two = " ".join(words[pick : pick + 2])
    stopped = greedy(model, tokenizer, PROMPT, stopping_criteria=[WordStopStringCriteria(tokenizer, two)])
    assert stopped == free[: oracle_stop(PROMPT.split(), words, two)]
    assert len(stopped) <= pick + 2


def test_stop_string_in_the_prompt_alone_and_absent_words_do_not_stop(sample_train):
    tokenizer = build_word_tokenizer(sample_train)
    model, free = distinct_words_model(tokenizer)
    generated = set(tokenizer.convert_ids_to_tokens(free))
    absent = next(w for w in ("game", "was", "the") if w not in generated)
    criteria = [WordStopStringCriteria(tokenizer, [absent, "zzzz-not-a-word"])]
    assert greedy(model, tokenizer, PROMPT, stopping_criteria=criteria) == free


def test_batched_rows_stop_independently(sample_train):
    tokenizer = build_word_tokenizer(sample_train)
    model, free = distinct_words_model(tokenizer)
    stop_word = tokenizer.convert_ids_to_tokens(free[1])
    criteria = WordStopStringCriteria(tokenizer, [stop_word])
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    # row 2 holds the stop word too, but not in its newest token
    rows = torch.tensor([prompt_ids + free[:2], free[1:2] + prompt_ids + free[:1]])
    assert criteria(rows, None).tolist() == [True, stop_word in tokenizer.convert_ids_to_tokens(free[0])]
    with pytest.raises(ValueError, match="non-empty"):
        WordStopStringCriteria(tokenizer, [""])


def mtlstm_lm(tokenizer, seed: int):
    from conftest import tiny_model

    return tiny_model(
        seed, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )


def sampled(model, tokenizer, prompt: str, /, **kwargs) -> list[int]:
    """The generated ids only, sampled from a fixed seed (a random LSTM's greedy output repeats
    one word), without <eos> stopping; stopping early does not change the draws before it."""
    inputs = tokenizer(prompt, return_tensors="pt")
    torch.manual_seed(7)
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, do_sample=True, top_k=0, eos_token_id=None,
            pad_token_id=tokenizer.pad_token_id, **kwargs,
        )  # fmt: skip
    return out[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("pick", [0, 3])
def test_generate_stop_strings_with_the_word_tokenizer(sample_train, pick):
    """``generate(stop_strings=..., tokenizer=...)`` on this model: transformers' own criterion
    cannot probe a word vocabulary (it fails on GPT-2 with the same tokenizer); ours stops where
    the truncation oracle says, in generate and in the text-generation pipeline."""
    from mtlstm_hf.models.mtlstm.stop_strings import tokenizer_spells_unknown_words

    tokenizer = build_word_tokenizer(sample_train)
    assert not tokenizer_spells_unknown_words(tokenizer)
    with pytest.raises(ValueError, match="substring not found"):
        greedy(tiny_gpt2(tokenizer), tokenizer, PROMPT, stop_strings=["the"], tokenizer=tokenizer)

    model = mtlstm_lm(tokenizer, 0)
    free = sampled(model, tokenizer, PROMPT)
    words = tokenizer.convert_ids_to_tokens(free)
    assert len(set(words)) >= 4
    for stop in (words[pick], " ".join(words[pick : pick + 2])):
        stopped = sampled(model, tokenizer, PROMPT, stop_strings=[stop], tokenizer=tokenizer)
        assert stopped == free[: oracle_stop(PROMPT.split(), words, stop)]
        assert len(stopped) < NEW_TOKENS
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    torch.manual_seed(7)
    text = generator(
        PROMPT, max_new_tokens=NEW_TOKENS, do_sample=True, top_k=0, eos_token_id=None, stop_sequence=words[pick]
    )
    kept = oracle_stop(PROMPT.split(), words, words[pick])
    assert text[0]["generated_text"] == PROMPT + " " + " ".join(words[:kept])


def test_a_tokenizer_that_spells_the_probe_keeps_transformers_criterion():
    """A character-level tokenizer spells any word: stop strings go to transformers' own
    StopStringCriteria (oracle: the criteria list transformers builds itself)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.generation import GenerationConfig, StoppingCriteriaList, StopStringCriteria

    from mtlstm_hf.models.mtlstm.stop_strings import WordStopStringCriteria, tokenizer_spells_unknown_words

    letters = list("abcdefghijklmnopqrstuvwxyz ")
    backend = Tokenizer(models.WordLevel({c: i for i, c in enumerate(letters + ["<unk>"])}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    chars = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert tokenizer_spells_unknown_words(chars)
    model = mtlstm_lm(chars, 0)
    config = GenerationConfig(stop_strings=["ab"], max_length=10)
    config._eos_token_tensor = None  # set by generate() before it builds the criteria
    kinds = [type(c) for c in model._get_stopping_criteria(config, StoppingCriteriaList(), tokenizer=chars)]
    assert StopStringCriteria in kinds and WordStopStringCriteria not in kinds
