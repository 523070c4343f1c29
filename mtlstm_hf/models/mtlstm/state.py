"""The recurrent state of a stacked LSTM, passed to and returned by the model as ``cache``
(``past_key_values`` before transformers 5.24).

An LSTM needs no growing key/value cache: its whole memory of the past is ``(h, c)``
per layer. ``generate()`` only requires the object to be reorderable for beam search
(``reorder_cache``) and to report how many tokens it has consumed (``get_seq_length``).
This file travels to the Hub with the model, so it imports only torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.utils._pytree

NO_ROLLBACK = (
    "A recurrent state cannot be rolled back: (h, c) summarises every token read, with no entry per "
    "token to drop. Assisted (speculative) decoding and prompt lookup take back rejected draft tokens, "
    "so they cannot use an MTLSTM model, neither as the main model nor as the assistant; generate "
    "without assistant_model / prompt_lookup_num_tokens (or keep a copy of the state to branch from)."
)
"""The error given wherever a caller would crop (roll back) the state."""


class MTLSTMState:
    """Per-layer ``(hidden, cell)`` states, each ``(B, H_l)``, plus the number of tokens seen.

    The model never mutates a state it was given: every forward returns a new object,
    so the same state can be reused to branch a continuation. ``reorder_cache`` is the
    one in-place operation (``generate()`` calls it for beam search).

    Args:
        hidden: one ``(B, H_l)`` tensor per layer.
        cell: one ``(B, H_l)`` tensor per layer.
        seen_tokens: number of time steps consumed so far (for ``get_seq_length``).
    """

    # generate() asks caches these: no torch.compile static cache, and no cropping (an LSTM
    # state cannot take back a step).
    is_compileable = False
    is_croppable = False

    def __init__(self, hidden: list[torch.Tensor], cell: list[torch.Tensor], seen_tokens: int = 0) -> None:
        if len(hidden) != len(cell):
            raise ValueError(
                f"MTLSTMState: got {len(hidden)} hidden and {len(cell)} cell tensors; need one per layer each."
            )
        self.hidden = list(hidden)
        self.cell = list(cell)
        self.seen_tokens = seen_tokens

    @classmethod
    def zeros(
        cls,
        batch_size: int,
        hidden_sizes: list[int],
        cell_sizes: list[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> MTLSTMState:
        """The all-zero initial state (what the model uses when no state is passed).

        ``cell_sizes`` defaults to ``hidden_sizes``; a cell-less layer (tanh RNN) has 0.
        """
        cell_sizes = hidden_sizes if cell_sizes is None else cell_sizes
        hidden = [torch.zeros(batch_size, size, device=device, dtype=dtype) for size in hidden_sizes]
        cell = [torch.zeros(batch_size, size, device=device, dtype=dtype) for size in cell_sizes]
        return cls(hidden, cell, 0)

    @property
    def num_layers(self) -> int:
        return len(self.hidden)

    @property
    def batch_size(self) -> int:
        return self.hidden[0].shape[0]

    @property
    def hidden_sizes(self) -> list[int]:
        return [h.shape[-1] for h in self.hidden]

    @property
    def cell_sizes(self) -> list[int]:
        return [c.shape[-1] for c in self.cell]

    def __len__(self) -> int:
        return self.num_layers

    @property
    def is_linear(self) -> list[bool]:
        """Per layer ``True``: a fixed-size recurrent state, like a linear-attention/SSM layer, not a
        growing key/value cache (transformers >= 5.24 generate() asks; it then leaves the slicing
        of already-consumed tokens to ``prepare_inputs_for_generation``)."""
        return [True] * self.num_layers

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of tokens consumed so far (the same for every layer)."""
        return self.seen_tokens

    def crop(self, max_length: int) -> None:
        """Refused (``ValueError``, :data:`NO_ROLLBACK`): a key/value cache's crop, which generate()'s
        assisted decoding calls to take back draft tokens; an LSTM state cannot take back a step."""
        raise ValueError(NO_ROLLBACK)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select batch rows in place (beam search keeps the surviving beams)."""
        self.hidden = [h.index_select(0, beam_idx.to(h.device)) for h in self.hidden]
        self.cell = [c.index_select(0, beam_idx.to(c.device)) for c in self.cell]

    def detach(self) -> MTLSTMState:
        """A copy cut from the autograd graph (truncated BPTT: carry the state, not its history)."""
        return MTLSTMState([h.detach() for h in self.hidden], [c.detach() for c in self.cell], self.seen_tokens)

    def to(self, *args, **kwargs) -> MTLSTMState:
        """A copy with every tensor moved/cast like ``Tensor.to``."""
        return MTLSTMState(
            [h.to(*args, **kwargs) for h in self.hidden], [c.to(*args, **kwargs) for c in self.cell], self.seen_tokens
        )

    def select(self, rows: torch.Tensor | slice) -> MTLSTMState:
        """A new state holding only some batch rows."""
        return MTLSTMState([h[rows] for h in self.hidden], [c[rows] for c in self.cell], self.seen_tokens)

    def __repr__(self) -> str:
        return f"MTLSTMState(layers={self.num_layers}, batch_size={self.batch_size}, hidden_sizes={self.hidden_sizes}, seen_tokens={self.seen_tokens})"


def _flatten_state(state: MTLSTMState) -> tuple[list[torch.Tensor], tuple[int, int]]:
    return [*state.hidden, *state.cell], (len(state.hidden), state.seen_tokens)


def _flatten_state_with_keys(state: MTLSTMState) -> tuple[list[tuple[Any, torch.Tensor]], tuple[int, int]]:
    keys: list[Any] = [torch.utils._pytree.MappingKey(f"hidden_{i}") for i in range(len(state.hidden))]
    keys += [torch.utils._pytree.MappingKey(f"cell_{i}") for i in range(len(state.cell))]
    tensors, context = _flatten_state(state)
    return list(zip(keys, tensors)), context


def _unflatten_state(tensors: Iterable[torch.Tensor], context: tuple[int, int]) -> MTLSTMState:
    layers, seen_tokens = context
    tensors = list(tensors)
    return MTLSTMState(tensors[:layers], tensors[layers:], seen_tokens)


# A pytree node: torch.export / torch.compile can take and return the state (its tensors are
# the leaves; the layer count and seen_tokens are static context).
torch.utils._pytree.register_pytree_node(
    MTLSTMState,
    _flatten_state,
    _unflatten_state,
    serialized_type_name="mtlstm_hf.MTLSTMState",
    flatten_with_keys_fn=_flatten_state_with_keys,
)
