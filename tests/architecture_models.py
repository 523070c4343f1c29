"""Small randomly initialised models of the architectures the analyses read (each from its
transformers config, with its own ``_init_weights``), a tiny corpus and its word-level tokenizer:
shared by ``test_architectures.py`` and ``test_analyze_architectures.py``."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    Mamba2Config,
    Mamba2ForCausalLM,
    MambaConfig,
    MambaForCausalLM,
    RecurrentGemmaConfig,
    RecurrentGemmaForCausalLM,
    RwkvConfig,
    RwkvForCausalLM,
    xLSTMConfig,
    xLSTMForCausalLM,
)

from mtlstm_hf.data import build_word_tokenizer, load_corpus, split_to_stream

ARCHITECTURES = ("mamba", "mamba2", "rwkv", "recurrent_gemma", "xlstm")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    weights = [1.0 / (rank + 1) for rank in range(30)]
    directory = tmp_path_factory.mktemp("corpus")
    for name, n_lines in (("train", 100), ("valid", 30), ("test", 10)):
        lines = [" ".join(rng.choices(words, weights, k=rng.randint(3, 9))) for _ in range(n_lines)]
        (directory / f"{name}.txt").write_text("".join(f" {line} \n" for line in lines), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tokenizer(corpus_dir):
    return build_word_tokenizer(corpus_dir / "train.txt")


@pytest.fixture(scope="module")
def streams(corpus_dir, tokenizer):
    corpus = load_corpus(corpus_dir)
    return split_to_stream(corpus, "validation", tokenizer), split_to_stream(corpus, "train", tokenizer)


def build(architecture: str, vocab_size: int, seed: int = 0, **overrides):
    """A small random model of the architecture (its own ``_init_weights``)."""
    torch.manual_seed(seed)
    if architecture == "mamba":
        fields = dict(hidden_size=16, num_hidden_layers=2, state_size=4, intermediate_size=32)
        return MambaForCausalLM(MambaConfig(vocab_size=vocab_size, **{**fields, **overrides})).eval()
    if architecture == "mamba2":
        fields = dict(
            hidden_size=16, num_hidden_layers=2, state_size=4, num_heads=8, head_dim=4, n_groups=2, chunk_size=8
        )
        return Mamba2ForCausalLM(Mamba2Config(vocab_size=vocab_size, **{**fields, **overrides})).eval()
    if architecture == "rwkv":
        fields = dict(hidden_size=16, num_hidden_layers=2, attention_hidden_size=16, intermediate_size=32)
        return RwkvForCausalLM(RwkvConfig(vocab_size=vocab_size, context_length=64, **{**fields, **overrides})).eval()
    if architecture == "recurrent_gemma":
        fields = dict(
            hidden_size=32,
            lru_width=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            intermediate_size=64,
            attention_window_size=16,
            head_dim=8,
            block_types=["recurrent", "recurrent", "attention"],
        )
        return RecurrentGemmaForCausalLM(RecurrentGemmaConfig(vocab_size=vocab_size, **{**fields, **overrides})).eval()
    if architecture == "xlstm":
        # hidden_size * qk_dim_factor a multiple of 64: transformers' xLSTMCache rounds the widths up to one.
        fields = dict(hidden_size=128, num_blocks=2, num_heads=4, chunk_size=8)
        return xLSTMForCausalLM(xLSTMConfig(vocab_size=vocab_size, **{**fields, **overrides})).eval()
    raise AssertionError(architecture)
