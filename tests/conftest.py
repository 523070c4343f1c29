"""Shared test set-up: no network, deterministic seeds, small model factories."""

import os

# Tests never touch the network; the Hub tests use a local stand-in via HF_ENDPOINT.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from mtlstm_hf import REGULARIZATION_OFF, MTLSTMConfig, MTLSTMForCausalLM  # noqa: E402


def tiny_config(**overrides) -> MTLSTMConfig:
    """A small multi-timescale LM (2 layers) with every dropout off unless overridden."""
    fields = dict(
        vocab_size=37,
        embedding_size=6,
        hidden_sizes=[10, 6],
        timescale_schedules=[{"type": "fixed", "values": [3.0, 4.0]}, None],
        **REGULARIZATION_OFF,
        pad_token_id=0,
        eos_token_id=1,
    )
    fields.update(overrides)
    return MTLSTMConfig(**fields)


def tiny_model(seed: int = 0, **overrides) -> MTLSTMForCausalLM:
    torch.manual_seed(seed)
    return MTLSTMForCausalLM(tiny_config(**overrides)).eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
