"""Torch modules of the multi-timescale LSTM: one recurrent layer and AWD-LSTM dropouts.

These are plain ``nn.Module``s with no Hugging Face dependency; the HF wrapper in
:mod:`modeling_mtlstm` stacks them. This file travels to the Hub with the model, so it
imports only torch and its own folder.

Regularisation follows AWD-LSTM (Merity et al. 2018), with the reference code's defect
fixed: DropConnect on the recurrent weights is applied functionally to the raw weight at
every forward, so gradients reach the raw weight (the reference wrapper re-creates the
dropped matrix as a fresh ``Parameter`` and the raw recurrent weights never train).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .recurrences import lstm_sequence
from .timescales import forget_bias_from_timescale

GATE_NAMES: tuple[str, ...] = ("input_gate", "forget_gate", "cell_candidate", "output_gate")
"""The standard LSTM's gates, in PyTorch's stacking order (i, f, g, o)."""


def locked_dropout(inputs: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Variational ("locked") dropout: one mask per sequence, shared over all time steps.

    Args:
        inputs: ``(B, T, D)``.
        probability: drop probability in ``[0, 1)``.
        training: apply only when True (identity in eval).

    Returns:
        ``(B, T, D)``, kept units scaled by ``1 / (1 - p)`` (Gal & Ghahramani 2016).
    """
    if not training or probability == 0.0:
        return inputs
    keep = 1.0 - probability
    mask = inputs.new_empty(inputs.shape[0], 1, inputs.shape[2]).bernoulli_(keep) / keep
    return inputs * mask


def embedding_dropout(weight: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Word-level embedding dropout: drop whole rows (words) of the embedding matrix.

    Every occurrence of a dropped word in the batch then embeds to zero (Gal &
    Ghahramani 2016, AWD-LSTM's ``dropoute``).

    Args:
        weight: ``(V, E)`` embedding matrix.

    Returns:
        ``(V, E)`` matrix with dropped rows zeroed and kept rows scaled by ``1 / (1 - p)``.
    """
    if not training or probability == 0.0:
        return weight
    keep = 1.0 - probability
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(keep) / keep
    return weight * mask


def drop_connect(weight: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """DropConnect (Wan et al. 2013): zero each weight with ``probability``, scale the rest.

    Returns ``weight * mask / (1 - p)``, a differentiable function of ``weight`` (the
    gradient reaches the raw weight through the mask), identity in eval. The mask is
    drawn with ``rand >= p``: on CPU this is about 1.5x faster than ``F.dropout`` /
    ``bernoulli_`` for the ~5M-entry recurrent matrices, and it is drawn every forward.
    """
    if not training or probability == 0.0:
        return weight
    keep_mask = torch.rand_like(weight) >= probability
    return weight * keep_mask.to(weight.dtype) * (1.0 / (1.0 - probability))


def activation_regularization(dropped_output: torch.Tensor, scale: float) -> torch.Tensor:
    """AR penalty ``scale * mean(h^2)`` on the (dropped-out) last-layer output (Merity et al. 2017)."""
    return scale * dropped_output.pow(2).mean()


def temporal_activation_regularization(raw_output: torch.Tensor, scale: float) -> torch.Tensor:
    """TAR penalty ``scale * mean((h_t - h_{t-1})^2)`` on the raw last-layer output ``(B, T, H)``."""
    if raw_output.shape[1] < 2:
        return raw_output.new_zeros(())
    return scale * (raw_output[:, 1:] - raw_output[:, :-1]).pow(2).mean()


class GateBiases(nn.Module):
    """The per-gate bias vectors of one LSTM layer, each ``(H,)``.

    A gate whose bias is frozen (e.g. the forget and input gates of a layer with imposed
    timescales) is stored as a buffer, so it is not in ``model.parameters()``, no
    optimiser sees it and weight decay cannot move it; the others are parameters. State
    dict keys are ``<gate name>`` either way, so checkpoints do not depend on freezing.
    The model keeps this module in float32 (``_keep_in_fp32_modules_strict``) so a bf16
    load does not round the timescales away.
    """

    def __init__(self, hidden_size: int, gate_names: tuple[str, ...], frozen_gates: tuple[str, ...]) -> None:
        super().__init__()
        self.gate_names = gate_names
        self.frozen_gates = frozen_gates
        for gate in gate_names:
            tensor = torch.zeros(hidden_size, dtype=torch.float32)
            if gate in frozen_gates:
                self.register_buffer(gate, tensor, persistent=True)
            else:
                self.register_parameter(gate, nn.Parameter(tensor))

    def concatenated(self, dtype: torch.dtype) -> torch.Tensor:
        """All gate biases stacked in gate order, ``(len(gate_names) * H,)``, cast to ``dtype``."""
        return torch.cat([getattr(self, gate) for gate in self.gate_names]).to(dtype)


class MTLSTMLayer(nn.Module):
    """One LSTM layer whose forget/input biases may carry fixed timescales.

    Parameters (``E`` = input size, ``H`` = hidden size): ``weight_ih (4H, E)``,
    ``weight_hh (4H, H)`` (the *raw* recurrent weight; DropConnect is applied to a copy
    at each training forward), and ``gate_biases`` (one ``(H,)`` vector per gate).

    Args:
        input_size: ``E``.
        hidden_size: ``H``.
        weight_drop: DropConnect probability on ``weight_hh`` in training.
        frozen_gates: names from :data:`GATE_NAMES` whose biases are fixed buffers.
        layer_index: position in the stack (used by the model's weight initialisation).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        weight_drop: float = 0.0,
        frozen_gates: tuple[str, ...] = (),
        layer_index: int = 0,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_drop = weight_drop
        self.layer_index = layer_index
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.gate_biases = GateBiases(hidden_size, GATE_NAMES, frozen_gates)

    def extra_repr(self) -> str:
        frozen = ",".join(self.gate_biases.frozen_gates) or "none"
        return f"{self.input_size}, {self.hidden_size}, weight_drop={self.weight_drop}, frozen_biases={frozen}"

    def recurrent_weight(self) -> torch.Tensor:
        """``weight_hh`` after DropConnect: a differentiable function of the raw weight."""
        return drop_connect(self.weight_hh, self.weight_drop, self.training)

    def forward(
        self,
        inputs: torch.Tensor,
        initial_hidden: torch.Tensor,
        initial_cell: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the layer over ``inputs (B, T, E)``; see :func:`recurrences.lstm_sequence`.

        Returns ``(outputs (B, T, H), final_hidden (B, H), final_cell (B, H))``.
        """
        return lstm_sequence(
            inputs,
            initial_hidden,
            initial_cell,
            self.weight_ih,
            self.recurrent_weight(),
            self.gate_biases.concatenated(inputs.dtype),
            lengths,
        )

    @torch.no_grad()
    def initial_values(self, forget_timescales: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Initial values for every tensor of the layer (used by the model's ``_init_weights``).

        Weights and free biases follow ``nn.LSTM``'s default, ``U(-1/sqrt(H), 1/sqrt(H))``
        (the free bias is the sum of two such draws, like PyTorch's two bias vectors).
        With ``forget_timescales (H,)`` given, ``b_f = forget_bias_from_timescale(T)`` and
        ``b_i = -b_f`` (Mahto et al. 2021, Sec. 3; chrono convention).
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        hidden = self.hidden_size

        def draw(*shape: int) -> torch.Tensor:
            return torch.empty(*shape, dtype=torch.float32).uniform_(-bound, bound)

        values = {"weight_ih": draw(4 * hidden, self.input_size), "weight_hh": draw(4 * hidden, hidden)}
        for gate in GATE_NAMES:
            values[f"gate_biases.{gate}"] = draw(hidden) + draw(hidden)
        if forget_timescales is not None:
            forget_bias = forget_bias_from_timescale(forget_timescales).to(torch.float32)
            values["gate_biases.forget_gate"] = forget_bias
            values["gate_biases.input_gate"] = -forget_bias
        return values
