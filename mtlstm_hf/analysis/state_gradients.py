"""State gradients: how strongly an LSTM's state remembers each direction of embedding space.

Verwimp, Van hamme, Wambacq, "State gradients for analyzing memory in LSTM language models",
Computer Speech & Language 61 (2020); docs/PAPERS.md, section 2.

The state gradient of a recurrent network is the ``H x E`` Jacobian::

    G(t, tau) = d s_t / d x_{t-tau}                         tau = 0 .. D-1

with ``s_t`` the cell state ``c_t`` (default) or hidden state ``h_t`` of one layer and ``x`` the
input embedding. It is computed in eval mode (no dropout) inside segments of ``segment_length``
tokens: each segment starts from the state the previous one ended in, but *detached*, so a
delay that reaches back across a segment start is not counted. The signed matrices are summed
per delay and per class of the *source* word ``w_{t-tau}`` (a frequency bin, a part of speech,
...), with a count per ``(delay, class)``; averages, SVDs and memory measures are computed from
those sums (:class:`StateGradientResult`). No individual matrix is ever stored.

How it is computed (and why it is fast). The whole stack is written as one per-step function of
plain torch ops built from the model's weights (:func:`model_layer_steps`), layer ``l`` mapping
its flat state ``[h_l, c_l]`` and its input to the new state. Per step, forward-mode AD
(:func:`torch.func.jacfwd`) gives each layer's small Jacobians ``A = d state_t / d state_{t-1}``
and ``B = d state_t / d input_t``; the tangents ``J(t, j) = d state_t / d x_j`` of the ``D`` most
recent source positions ``j`` are then pushed forward all at once,

    J(t, j) = A_t J(t-1, j)  (+ B_t J^{below}(t, j) for upper layers),     J(t, t) = B_t,

which is one batched matmul per layer and step over ``D * E`` tangent columns, instead of one
backward pass per output component and time step. The ``D`` sources live in a ring buffer:
each step overwrites the oldest slot with the new source. (The fused ``torch.lstm`` kernel has
no forward-mode AD, hence the explicit step function; it is checked against the model's forward
in the tests.)

Which cell equations are used is looked up per layer by its ``cell_type`` attribute (``"lstm"``
when the layer has none) in a registry (:func:`register_cell_step`), so other recurrent cells
only need to register their one-step function.

Normalisation (Verwimp et al. Sec. 3): with ``Sigma`` the covariance of the vocabulary's
embedding rows and ``D = cholesky(Sigma)``, ``G~ = G D`` measures memory per unit of natural
embedding variation (:func:`embedding_whitening`); singular values of ``G~`` do not depend on
the choice of square root (``D -> D Q``, ``Q`` orthogonal).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import jacfwd, vmap

from mtlstm_hf.evaluation.frequency import DEFAULT_BIN_EDGES, bin_labels, frequency_bin_of_token, token_counts

from ._progress import open_progress

__all__ = [
    "LayerLinearize",
    "LayerStep",
    "LayerWeights",
    "Linearization",
    "StateGradientAccumulator",
    "StateGradientResult",
    "accumulate_state_gradients",
    "embedding_whitening",
    "frequency_classes",
    "lstm_cell_step",
    "lstm_linearize",
    "model_layer_steps",
    "register_cell_step",
    "source_positions",
    "state_gradients",
    "unroll_layer_steps",
]

LayerStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""One layer, one step, one sequence: ``(state (S,), input (I,)) -> new state (S,)``.

Plain torch ops only (it is differentiated with :func:`torch.func.jacfwd` and batched with
:func:`torch.func.vmap`). The first ``output_size`` entries of the new state are the layer's
output, fed as input to the next layer."""

STATE_KINDS: tuple[str, ...] = ("cell", "hidden")
"""What ``s_t`` may be: the memory cell ``c_t`` or the hidden state ``h_t``."""


# ---------------------------------------------------------------------------
# Per-step cell functions (one per cell type)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerWeights:
    """The tensors one step of a layer needs, detached, in the compute dtype.

    Attributes:
        weight_ih: ``(G*H, I)`` input-to-gates weight (``G`` gate blocks).
        weight_hh: ``(G'*H, H)`` raw recurrent weight (no DropConnect: eval), or None.
        bias: ``(G*H,)`` the concatenated gate biases.
        hidden_size: ``H``.
    """

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor | None
    bias: torch.Tensor
    hidden_size: int


def lstm_cell_step(weights: LayerWeights, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """One step of the standard LSTM on a flat state (gate order i, f, g, o)::

        [i, f, g, o] = W_ih x_t + W_hh h_{t-1} + b
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    Args:
        weights: the layer's :class:`LayerWeights`.
        state: ``(2H,)`` = ``[h_{t-1}, c_{t-1}]``.
        inputs: ``(I,)`` the layer input ``x_t``.

    Returns:
        ``(2H,)`` = ``[h_t, c_t]``.
    """
    hidden_size = weights.hidden_size
    hidden, cell = state[:hidden_size], state[hidden_size:]
    preactivation = weights.weight_ih @ inputs + weights.weight_hh @ hidden + weights.bias
    input_gate, forget_gate, candidate, output_gate = preactivation.chunk(4)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
    hidden = torch.sigmoid(output_gate) * torch.tanh(cell)
    return torch.cat([hidden, cell])


class Linearization:
    """One step of one layer, linearised at ``(state, inputs)`` for ``B`` rows at once.

    Attributes:
        state: ``(B, S)`` the new state.

    :meth:`tangent` pushes tangent columns through the step: ``A T_s + B_x T_x`` with
    ``A = d state_t / d state_{t-1}`` ``(B, S, S)`` and ``B_x = d state_t / d input_t`` ``(B, S, I)``.
    This generic version holds both Jacobians (from :func:`torch.func.jacfwd`); cell types may
    register a structured one that never forms them (:func:`lstm_linearize`).
    """

    def __init__(self, state: torch.Tensor, state_jacobian: torch.Tensor, input_jacobian: torch.Tensor) -> None:
        self.state = state
        self.state_jacobian = state_jacobian
        self._input_jacobian = input_jacobian

    def tangent(self, state_tangents: torch.Tensor | None, input_tangents: torch.Tensor | None) -> torch.Tensor:
        """``(B, S, M)``: ``A state_tangents`` on the first ``M_s`` columns plus ``B_x input_tangents``.

        Args:
            state_tangents: ``(B, S, M_s)`` or None (zero).
            input_tangents: ``(B, I, M)`` with ``M >= M_s``, or None (zero; then ``M = M_s``). The
                columns past ``M_s`` are sources newer than the previous state (zero state tangent).
        """
        if input_tangents is None:
            return torch.bmm(self.state_jacobian, state_tangents)
        result = torch.bmm(self._input_jacobian, input_tangents)
        if state_tangents is not None and state_tangents.shape[-1]:
            result[..., : state_tangents.shape[-1]] += torch.bmm(self.state_jacobian, state_tangents)
        return result

    def input_jacobian(self) -> torch.Tensor:
        """``B_x = d state_t / d input_t`` ``(B, S, I)``."""
        return self._input_jacobian


class _LSTMLinearization(Linearization):
    """The standard LSTM step linearised without forming ``A`` (see :func:`lstm_linearize`)."""

    def __init__(self, weights: LayerWeights, state: torch.Tensor, inputs: torch.Tensor) -> None:
        size = weights.hidden_size
        hidden, cell = state[:, :size], state[:, size:]
        preactivation = torch.addmm(weights.bias, inputs, weights.weight_ih.T).addmm_(hidden, weights.weight_hh.T)
        input_pre, forget_pre, candidate_pre, output_pre = preactivation.chunk(4, dim=1)
        input_gate, forget_gate = torch.sigmoid(input_pre), torch.sigmoid(forget_pre)
        candidate, output_gate = torch.tanh(candidate_pre), torch.sigmoid(output_pre)
        new_cell = forget_gate * cell + input_gate * candidate
        cell_tanh = torch.tanh(new_cell)
        self.state = torch.cat([output_gate * cell_tanh, new_cell], dim=1)
        # d c_t = f dc + sum_gate a_gate * (W_gate dz);  d h_t = a_o * (W_o dz) + k * d c_t   (dz = dh or dx)
        self._scales = (
            (candidate * input_gate * (1 - input_gate))[..., None],  # a_i
            (cell * forget_gate * (1 - forget_gate))[..., None],  # a_f
            (input_gate * (1 - candidate * candidate))[..., None],  # a_g
            (cell_tanh * output_gate * (1 - output_gate))[..., None],  # a_o
        )
        self._forget = forget_gate[..., None]
        self._k = (output_gate * (1 - cell_tanh * cell_tanh))[..., None]
        self._weights = weights
        self._size = size
        self._products: dict[str, torch.Tensor] = {}

    def _product(self, which: str) -> torch.Tensor:
        """``P = [a_o W_o ; a_i W_i + a_f W_f + a_g W_g]`` ``(B, 2H, K)`` for ``W = weight_hh`` (``"hidden"``)
        or ``weight_ih`` (``"input"``): ``P dz`` gives ``[a_o W_o dz ; d c_t - f dc]``."""
        if which not in self._products:
            weight = self._weights.weight_hh if which == "hidden" else self._weights.weight_ih
            size = self._size
            blocks = weight.view(4, size, weight.shape[1])[:, None]  # (4, 1, H, K): i, f, g, o
            a_i, a_f, a_g, a_o = self._scales
            product = weight.new_empty(a_i.shape[0], 2 * size, weight.shape[1])
            torch.mul(blocks[3], a_o, out=product[:, :size])
            cell = product[:, size:]
            torch.mul(blocks[0], a_i, out=cell)
            cell.addcmul_(blocks[1], a_f).addcmul_(blocks[2], a_g)
            self._products[which] = product
        return self._products[which]

    def tangent(self, state_tangents: torch.Tensor | None, input_tangents: torch.Tensor | None) -> torch.Tensor:
        size = self._size
        known = 0 if state_tangents is None else state_tangents.shape[-1]
        if input_tangents is None:
            result = torch.bmm(self._product("hidden"), state_tangents[:, :size])
        else:
            result = torch.bmm(self._product("input"), input_tangents)
            if known == result.shape[-1]:
                result.baddbmm_(self._product("hidden"), state_tangents[:, :size])
            elif known:
                result[..., :known] += torch.bmm(self._product("hidden"), state_tangents[:, :size])
        cell = result[:, size:]
        if known:
            cell[..., :known].addcmul_(self._forget, state_tangents[:, size:])
        result[:, :size].addcmul_(self._k, cell)
        return result

    def input_jacobian(self) -> torch.Tensor:
        jacobian = self._product("input").clone()
        jacobian[:, : self._size].addcmul_(self._k, jacobian[:, self._size :])
        return jacobian


def lstm_linearize(weights: LayerWeights, state: torch.Tensor, inputs: torch.Tensor) -> Linearization:
    """:func:`lstm_cell_step` for ``B`` rows, linearised in closed form.

    With ``a_i = g i (1 - i)``, ``a_f = c_{t-1} f (1 - f)``, ``a_g = i (1 - g^2)``,
    ``a_o = tanh(c_t) o (1 - o)``, ``k = o (1 - tanh^2 c_t)`` and ``W_*`` the gate blocks of
    ``W_hh`` (or ``W_ih`` for input tangents)::

        d c_t = f * d c_{t-1} + (a_i W_i + a_f W_f + a_g W_g) d h_{t-1}
        d h_t = a_o W_o d h_{t-1} + k * d c_t

    So a tangent costs one ``(2H x H)`` matmul per column instead of ``(2H x 2H)`` with the full
    Jacobian, and no Jacobian is computed by automatic differentiation (the tests compare it
    with :func:`torch.func.jacfwd`).

    Args:
        weights: the layer's :class:`LayerWeights`.
        state: ``(B, 2H)`` = ``[h_{t-1}, c_{t-1}]``.
        inputs: ``(B, I)``.
    """
    return _LSTMLinearization(weights, state, inputs)


LayerLinearize = Callable[[LayerWeights, torch.Tensor, torch.Tensor], Linearization]
"""``(weights, state (B, S), inputs (B, I)) -> Linearization`` of one cell type (optional)."""


@dataclass(frozen=True)
class _CellStepSpec:
    step: Callable[[LayerWeights, torch.Tensor, torch.Tensor], torch.Tensor]
    has_cell: bool
    linearize: LayerLinearize | None = None


_CELL_STEPS: dict[str, _CellStepSpec] = {"lstm": _CellStepSpec(lstm_cell_step, has_cell=True, linearize=lstm_linearize)}


def register_cell_step(
    cell_type: str,
    step: Callable[[LayerWeights, torch.Tensor, torch.Tensor], torch.Tensor],
    has_cell: bool = True,
    linearize: LayerLinearize | None = None,
) -> None:
    """Register the one-step function used for layers whose ``cell_type`` attribute is ``cell_type``.

    Args:
        cell_type: the layer's ``cell_type`` (layers without the attribute count as ``"lstm"``).
        step: ``(weights, state, inputs) -> new state`` like :func:`lstm_cell_step`; the flat
            state is ``[h (H,), c (H,)]`` when ``has_cell`` else ``[h (H,)]``.
        has_cell: whether the state holds a memory cell after the hidden state.
        linearize: optional closed-form :class:`Linearization` of ``step`` (like
            :func:`lstm_linearize`); without it the Jacobians come from :func:`torch.func.jacfwd`.
    """
    _CELL_STEPS[cell_type] = _CellStepSpec(step, has_cell, linearize)


class _LayerStep:
    """A :data:`LayerStep` of a model layer (callable per sequence) that knows its linearisation."""

    def __init__(self, spec: _CellStepSpec, weights: LayerWeights) -> None:
        self._step = spec.step
        self.weights = weights
        self.linearize = None if spec.linearize is None else functools.partial(spec.linearize, weights)

    def __call__(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self._step(self.weights, state, inputs)


def _cell_spec(layer: torch.nn.Module, index: int) -> _CellStepSpec:
    cell_type = getattr(layer, "cell_type", "lstm")
    if cell_type not in _CELL_STEPS:
        known = ", ".join(sorted(_CELL_STEPS))
        raise ValueError(
            f"layer {index + 1} (index {index}) has cell_type {cell_type!r}, which has no registered step "
            f"function (known: {known}); add one with register_cell_step()."
        )
    return _CELL_STEPS[cell_type]


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module holding ``embeddings`` and ``layers`` (an MTLSTMModel or the causal LM around it)."""
    base = getattr(model, "model", model)
    if not (hasattr(base, "layers") and hasattr(base, "embeddings")):
        raise ValueError(
            f"{type(model).__name__} is not an MTLSTM model: expected .model.layers and .model.embeddings "
            "(MTLSTMForCausalLM) or .layers and .embeddings (MTLSTMModel)."
        )
    return base


def _compute_dtype(model: torch.nn.Module, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    weight = _base_model(model).embeddings.weight
    # Half precision would round the tangents of long delays away; compute in float32 at least.
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def model_layer_steps(
    model: torch.nn.Module, num_layers: int | None = None, dtype: torch.dtype | None = None
) -> tuple[list[LayerStep], list[int], list[bool]]:
    """The per-step functions of the model's first ``num_layers`` layers, from its weights.

    Eval semantics: the raw recurrent weight (no DropConnect), no dropout anywhere.

    Args:
        model: an ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        num_layers: how many layers from the bottom (default all).
        dtype: compute dtype (default float32, or float64 for a float64 model).

    Returns:
        ``(layer_steps, output_sizes, has_cell)``: per layer a :data:`LayerStep` on the flat state
        ``[h, c]`` (``[h]`` for a cell-less type), its hidden size ``H_l`` (the output fed upward)
        and whether the state holds a cell.
    """
    base = _base_model(model)
    layers = list(base.layers)[: len(base.layers) if num_layers is None else num_layers]
    dtype = _compute_dtype(model, dtype)
    steps, output_sizes, has_cell = [], [], []
    for index, layer in enumerate(layers):
        spec = _cell_spec(layer, index)
        weight_hh = getattr(layer, "weight_hh", None)
        weights = LayerWeights(
            weight_ih=layer.weight_ih.detach().to(dtype),
            weight_hh=None if weight_hh is None else weight_hh.detach().to(dtype),
            bias=layer.gate_biases.concatenated(dtype).detach(),
            hidden_size=layer.hidden_size,
        )
        steps.append(_LayerStep(spec, weights))
        output_sizes.append(layer.hidden_size)
        has_cell.append(spec.has_cell)
    return steps, output_sizes, has_cell


def unroll_layer_steps(
    layer_steps: Sequence[LayerStep],
    output_sizes: Sequence[int],
    initial_states: Sequence[torch.Tensor],
    inputs: torch.Tensor,
) -> list[torch.Tensor]:
    """Run the stack of step functions over a sequence (no gradients): the plain forward.

    Args:
        layer_steps, output_sizes: as returned by :func:`model_layer_steps`.
        initial_states: per layer ``(B, S_l)``.
        inputs: ``(B, T, E)``.

    Returns:
        Per layer the states after every step, ``(B, T, S_l)``.
    """
    batched = [vmap(step) for step in layer_steps]
    states = list(initial_states)
    per_step: list[list[torch.Tensor]] = [[] for _ in layer_steps]
    for step_index in range(inputs.shape[1]):
        layer_input = inputs[:, step_index]
        for index, step in enumerate(batched):
            states[index] = step(states[index], layer_input)
            per_step[index].append(states[index])
            layer_input = states[index][:, : output_sizes[index]]
    return [torch.stack(states_of_layer, 1) for states_of_layer in per_step]


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class StateGradientResult:
    """Sums of signed state gradients per delay and source-word class.

    Attributes:
        sums: ``(D, C, H, E)`` float64; ``sums[tau, k] = sum G(t, tau)`` over all ``t`` whose
            source word ``w_{t-tau}`` is in class ``k`` (and lies in the same segment as ``t``).
        counts: ``(D, C)`` int64, the number of matrices in each sum.
        layer: index of the layer whose state was differentiated (None for a custom stack).
        state: ``"cell"``, ``"hidden"`` or ``"custom"``.
        class_labels: optional names of the ``C`` classes.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    layer: int | None = None
    state: str = "custom"
    class_labels: list[str] | None = field(default=None)

    @property
    def max_delay(self) -> int:
        return self.sums.shape[0]

    @property
    def num_classes(self) -> int:
        return self.sums.shape[1]

    def mean(self) -> torch.Tensor:
        """Average signed state gradient ``(D, C, H, E)``; NaN where a ``(delay, class)`` has no count."""
        counts = self.counts.to(self.sums.dtype)[:, :, None, None]
        mean = self.sums / counts.clamp(min=1)
        return mean.masked_fill(counts == 0, float("nan"))

    def pooled(self) -> "StateGradientResult":
        """All classes merged into one (``C = 1``), e.g. the curve for "all words"."""
        return StateGradientResult(
            self.sums.sum(1, keepdim=True), self.counts.sum(1, keepdim=True), self.layer, self.state, ["all"]
        )

    def normalized(self, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """``G~ = mean(G) D`` ``(D, C, H, E)`` with ``D`` from :func:`embedding_whitening`.

        ``whitening=None`` returns the raw average (no normalisation).
        """
        mean = self.mean()
        if whitening is None:
            return mean
        return mean @ _check_whitening(whitening, self.sums.shape[-1]).to(mean)

    def summarize(
        self, summary: Callable[[torch.Tensor], torch.Tensor], whitening: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply a user measure to the normalised averages: ``summary(G~ (D, C, H, E))``.

        The hook for measures whose exact definition is not verified (the paper's "average
        memory" and "selectiveness", docs/PAPERS.md), e.g.
        ``result.summarize(lambda g: torch.linalg.svdvals(g).mean(-1), whitening)``.
        Entries without count are NaN matrices; the summary decides what to do with them.
        """
        return summary(self.normalized(whitening))

    def singular_values(self, k: int = 5, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """The ``k`` largest singular values of ``G~`` per delay and class, ``(D, C, k)`` (NaN: no count)."""
        normalized = self.normalized(whitening)
        limit = min(normalized.shape[-2:])
        if not 1 <= k <= limit:
            raise ValueError(f"k must lie in [1, min(H, E) = {limit}], got {k}.")
        empty = self.counts == 0
        # LAPACK rejects NaN input: decompose zeros for empty entries, then mark them NaN.
        values = torch.linalg.svdvals(torch.nan_to_num(normalized, nan=0.0))[..., :k]
        return values.masked_fill(empty[..., None], float("nan"))

    def memory(self, k: int = 5, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of the ``k`` largest singular values of ``G~``, ``(D, C)``: "memory" vs delay."""
        return self.singular_values(k, whitening).sum(-1)

    def relative_memory(self, direction: torch.Tensor, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """Relative memory of embedding directions: ``|G~ d~| / sigma_1(G~)``.

        ``d~ = D^-1 d / |D^-1 d|`` (the direction in whitened coordinates, unit length;
        ``D = I`` when ``whitening`` is None). The value lies in ``[0, 1]``: 1 when ``d`` is
        the best-remembered direction.

        Args:
            direction: ``(E,)`` or ``(P, E)``, e.g. mean noun embedding minus mean verb embedding.
            whitening: ``D`` from :func:`embedding_whitening`, or None.

        Returns:
            ``(D, C)`` for one direction, ``(D, C, P)`` for ``P``; NaN where there is no count.
        """
        num_features = self.sums.shape[-1]
        direction = torch.as_tensor(direction, dtype=torch.float64, device=self.sums.device)
        if direction.shape[-1] != num_features or direction.dim() not in (1, 2):
            raise ValueError(f"direction must be (E,) or (P, E) with E={num_features}, got {tuple(direction.shape)}.")
        directions = direction.reshape(-1, num_features)
        if whitening is not None:
            # A general solve, not a triangular one: any square root D Q of Sigma is allowed.
            square_root = _check_whitening(whitening, num_features).to(directions)
            directions = torch.linalg.solve(square_root, directions.T).T
        norms = directions.norm(dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("direction must be non-zero.")
        directions = directions / norms
        normalized = self.normalized(whitening)
        remembered = (normalized @ directions.T).norm(dim=-2)  # (D, C, P)
        top = self.singular_values(1, whitening)  # (D, C, 1)
        relative = remembered / top
        return relative[..., 0] if direction.dim() == 1 else relative


def _check_whitening(whitening: torch.Tensor, num_features: int) -> torch.Tensor:
    whitening = torch.as_tensor(whitening)
    if whitening.shape != (num_features, num_features):
        raise ValueError(
            f"whitening must be the (E, E) = ({num_features}, {num_features}) matrix from embedding_whitening(), "
            f"got shape {tuple(whitening.shape)}."
        )
    return whitening


def embedding_whitening(embedding_matrix: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """``D = cholesky(Sigma)``, Sigma the covariance of the vocabulary's embedding rows.

    ``Sigma = (X - mean)^T (X - mean) / (V - 1)`` over the ``V`` rows of ``X``; the normalised
    state gradient is ``G~ = G D`` (Verwimp et al. 2020): an input change of one standard
    deviation along any direction of embedding space then counts the same.

    Args:
        embedding_matrix: ``(V, E)``, e.g. ``model.get_input_embeddings().weight``.
        ridge: added to the diagonal of ``Sigma`` (for a rank-deficient embedding matrix).

    Returns:
        ``(E, E)`` float64 lower-triangular ``D`` with ``D D^T = Sigma``.
    """
    embeddings = torch.as_tensor(embedding_matrix).detach().to(torch.float64)
    if embeddings.dim() != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embedding_matrix must be (V, E) with V >= 2 rows, got {tuple(embeddings.shape)}.")
    centered = embeddings - embeddings.mean(0)
    covariance = centered.T @ centered / (embeddings.shape[0] - 1)
    covariance = covariance + ridge * torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
    lower, info = torch.linalg.cholesky_ex(covariance)
    if int(info) != 0:
        raise ValueError(
            "the embedding covariance is not positive definite (the rows do not span all E dimensions); "
            "pass ridge > 0."
        )
    return lower


# ---------------------------------------------------------------------------
# The accumulator (generic over the stack of step functions)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Readout:
    layer: int
    rows: slice


class StateGradientAccumulator:
    """Running sums of ``G(t, tau) = d s_t / d x_{t-tau}`` for a stack of step functions.

    Feed it segments with :meth:`run_segment`; each segment starts without tangents (the carried
    state is treated as a constant: "detached"). Works for any stack of :data:`LayerStep`
    functions, e.g. a linear recurrence ``h_t = W h_{t-1} + U x_t`` for which
    ``G(t, tau) = W^tau U`` exactly. A step with a ``linearize`` attribute (the model's steps of
    registered cell types, :func:`model_layer_steps`) is linearised in closed form; any other is
    differentiated with :func:`torch.func.jacfwd`.

    Args:
        layer_steps: per layer a :data:`LayerStep`; layer 0 reads the ``(E,)`` input.
        output_sizes: per layer, how many leading state entries feed the layer above.
        readouts: per result, ``(layer, rows)``: the state entries ``s_t = state_layer[rows]``
            (``layer`` is a 0-based index into ``layer_steps``).
        num_classes: ``C``, the number of source-word classes.
        max_delay: ``D``; delays ``0 .. D-1``.
        input_size: ``E``.
        state_sizes: per layer ``S_l`` (the flat state length).
        dtype, device: of the tangents (sums are float64).
    """

    def __init__(
        self,
        layer_steps: Sequence[LayerStep],
        output_sizes: Sequence[int],
        readouts: Sequence[tuple[int, slice]],
        num_classes: int,
        max_delay: int,
        input_size: int,
        state_sizes: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if not readouts:
            raise ValueError("give at least one readout (layer, rows).")
        self.readouts = [_Readout(int(layer), rows) for layer, rows in readouts]
        depth = max(readout.layer for readout in self.readouts) + 1
        if depth > len(layer_steps):
            raise ValueError(f"a readout asks for layer {depth - 1} of a {len(layer_steps)}-layer stack.")
        # Layers above the highest readout cannot influence it (no feedback): skip them.
        self.output_sizes = list(output_sizes)[:depth]
        self.state_sizes = list(state_sizes)[:depth]
        self.num_classes = num_classes
        self.max_delay = max_delay
        self.input_size = input_size
        self.dtype = dtype
        self.device = device
        self._plain_steps = [vmap(step) for step in layer_steps[:depth]]
        self._linearizers = [_linearizer(step) for step in layer_steps[:depth]]
        self.sums = []
        for readout in self.readouts:
            rows = len(range(self.state_sizes[readout.layer])[readout.rows])
            self.sums.append(torch.zeros(max_delay * num_classes, rows, input_size, dtype=torch.float64, device=device))
        self.counts = torch.zeros(max_delay * num_classes, dtype=torch.int64, device=device)

    def run_segment(
        self,
        states: Sequence[torch.Tensor],
        inputs: torch.Tensor,
        source_classes: torch.Tensor,
        sources: torch.Tensor | None = None,
        progress: Any = None,
    ) -> list[torch.Tensor]:
        """Process one segment and return the states after it (for the next segment).

        Only the tangents of *active* sources are propagated: positions ``j`` of ``sources`` within
        ``D - 1`` steps before the current one. A step with no active source advances the state only.

        Args:
            states: per layer ``(B, S_l)``, the carried state (treated as a constant).
            inputs: ``(B, L, E)`` the input embeddings of the segment.
            source_classes: ``(B, L)`` int64 class of each position as a *source* word, in
                ``[0, C)``, or -1 to leave its gradients out of the sums.
            sources: ``(L,)`` bool, the positions used as sources (None: all). A position whose
                class is -1 in every row is never a source.
            progress: an object with ``update(n)``, advanced by the number of ``G(t, tau)`` matrices
                (per row) computed at each step.

        Returns:
            Per computed layer, the state ``(B, S_l)`` after the last step.
        """
        batch, length, _ = inputs.shape
        width = self.input_size
        wanted = (source_classes >= 0).any(0)
        if sources is not None:
            wanted &= sources.to(wanted.device)
        wanted_list = wanted.tolist()
        with torch.no_grad():
            states = [state.to(self.dtype) for state in states[: len(self._linearizers)]]
            inputs = inputs.to(self.dtype)
            active: list[int] = []  # source positions whose tangents are alive, oldest first
            tangents: list[torch.Tensor | None] = [None] * len(self._linearizers)
            for step in range(length):
                while active and step - active[0] >= self.max_delay:  # the oldest reached delay D
                    active.pop(0)
                    tangents = [tangent[:, :, width:] for tangent in tangents]
                new_source = wanted_list[step]
                layer_input = inputs[:, step]
                if not active and not new_source:
                    for index, plain_step in enumerate(self._plain_steps):
                        states[index] = plain_step(states[index], layer_input)
                        layer_input = states[index][:, : self.output_sizes[index]]
                    continue
                below = None
                for index, linearize in enumerate(self._linearizers):
                    linear = linearize(states[index], layer_input)
                    states[index] = linear.state
                    previous = tangents[index] if active else None
                    if index == 0:
                        tangent = None if previous is None else linear.tangent(previous, None)
                        if new_source:
                            seed = linear.input_jacobian()
                            tangent = seed.clone() if tangent is None else torch.cat([tangent, seed], dim=-1)
                    else:
                        tangent = linear.tangent(previous, below[:, : self.output_sizes[index - 1]])
                    tangents[index] = below = tangent
                    layer_input = states[index][:, : self.output_sizes[index]]
                if new_source:
                    active.append(step)
                self._accumulate(tangents, step, active, source_classes)
                if progress is not None:
                    progress.update(len(active))
        return states

    def _accumulate(
        self, tangents: list[torch.Tensor], step: int, active: list[int], source_classes: torch.Tensor
    ) -> None:
        """Add ``J(step, j)`` of every active source ``j`` to ``sums[tau = step - j, class(w_j)]``."""
        positions = torch.tensor(active, device=source_classes.device)
        classes = source_classes[:, positions]  # (B, A)
        keep = classes >= 0
        flat_index = ((step - positions)[None, :] * self.num_classes + classes)[keep]
        if flat_index.numel() == 0:
            return
        # index_put_(accumulate=True) rather than index_add_: same result, and index_add_ on CPU
        # stalls badly (tens of ms per call) when its worker threads compete for busy cores.
        self.counts.index_put_((flat_index,), torch.ones_like(flat_index), accumulate=True)
        for readout, sums in zip(self.readouts, self.sums):
            tangent = tangents[readout.layer]
            selected = tangent.view(tangent.shape[0], tangent.shape[1], len(active), self.input_size)[:, readout.rows]
            contributions = selected.permute(0, 2, 1, 3)[keep]  # (kept, H, E)
            sums.index_put_((flat_index,), contributions.to(torch.float64), accumulate=True)

    def results(
        self, layers: Sequence[int | None] | None = None, state: str = "custom", class_labels: list[str] | None = None
    ) -> list[StateGradientResult]:
        """One :class:`StateGradientResult` per readout (copies of the running sums)."""
        layers = layers if layers is not None else [None] * len(self.readouts)
        counts = self.counts.view(self.max_delay, self.num_classes).clone()
        return [
            StateGradientResult(
                sums.view(self.max_delay, self.num_classes, *sums.shape[1:]).clone(),
                counts.clone(),
                layer,
                state,
                class_labels,
            )
            for sums, layer in zip(self.sums, layers)
        ]


def _linearizer(step: LayerStep) -> Callable[[torch.Tensor, torch.Tensor], Linearization]:
    """The step's closed-form linearisation, or one from :func:`torch.func.jacfwd` (batched with vmap)."""
    closed_form = getattr(step, "linearize", None)
    if closed_form is not None:
        return closed_form
    jacobians = vmap(jacfwd(_with_value(step), argnums=(0, 1), has_aux=True))

    def linearize(state: torch.Tensor, inputs: torch.Tensor) -> Linearization:
        (state_jacobian, input_jacobian), new_state = jacobians(state, inputs)
        return Linearization(new_state, state_jacobian, input_jacobian)

    return linearize


def _with_value(step: LayerStep) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``step`` returning its value twice: jacfwd(has_aux=True) then yields Jacobians and value at once."""

    def step_and_value(state: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_state = step(state, inputs)
        return new_state, new_state

    return step_and_value


def _check_schedule(num_steps: int, max_delay: int, segment_length: int) -> None:
    for name, value in (("max_delay", max_delay), ("segment_length", segment_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if segment_length < max_delay:
        raise ValueError(
            f"segment_length ({segment_length}) must be >= max_delay ({max_delay}): delays reaching across a "
            "segment start are never counted (the carried state is detached)."
        )
    if num_steps < max_delay:
        raise ValueError(
            f"the token stream is too short: {num_steps} tokens per batch row, but max_delay={max_delay} needs at "
            "least that many (use a longer stream, a smaller batch_size or a smaller max_delay)."
        )


def source_positions(row_length: int, positions: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The source positions (offsets within each batch row) whose state gradients are computed.

    Args:
        row_length: ``n``, tokens per batch row.
        positions: None: every position; an int ``K``: ``K`` evenly spaced positions
            ``floor(k n / K)``, ``k = 0 .. K-1`` (every position when ``K >= n``); or explicit offsets.

    Returns:
        ``(P,)`` int64, sorted and distinct, in ``[0, n)``.

    Raises:
        ValueError: ``K < 1``, or explicit offsets outside ``[0, n)`` or not integers.
    """
    if positions is None:
        return torch.arange(row_length)
    if isinstance(positions, numbers.Integral) and not isinstance(positions, bool):
        if positions < 1:
            raise ValueError(f"positions must be a positive number of source positions (or None = all), got {positions}.")
        if positions >= row_length:
            return torch.arange(row_length)
        return torch.arange(int(positions)) * row_length // int(positions)
    offsets = torch.as_tensor(positions)
    if offsets.dim() != 1 or offsets.is_floating_point() or offsets.dtype == torch.bool or offsets.numel() == 0:
        raise ValueError(f"positions must be an int, None, or a non-empty 1-D sequence of ints, got {positions!r}.")
    if int(offsets.min()) < 0 or int(offsets.max()) >= row_length:
        raise ValueError(
            f"positions must lie in [0, {row_length}) (offsets within a batch row), got values from "
            f"{int(offsets.min())} to {int(offsets.max())}."
        )
    return torch.unique(offsets.long())


def _matrix_count(sources: torch.Tensor, row_length: int, max_delay: int, segment_length: int) -> int:
    """``G(t, tau)`` matrices per row for the source positions ``sources``: each source ``j`` counts
    the delays that stay inside its segment and the row."""
    ends = torch.clamp((sources // segment_length + 1) * segment_length, max=row_length)
    return int(torch.clamp(ends - sources, max=max_delay).sum())


def accumulate_state_gradients(
    layer_steps: Sequence[LayerStep],
    initial_states: Sequence[torch.Tensor],
    inputs: torch.Tensor,
    source_classes: torch.Tensor | None = None,
    num_classes: int | None = None,
    max_delay: int = 50,
    segment_length: int = 200,
    readouts: Sequence[tuple[int, slice]] | None = None,
    output_sizes: Sequence[int] | None = None,
    positions: int | Sequence[int] | torch.Tensor | None = None,
) -> list[StateGradientResult]:
    """State-gradient sums for an arbitrary stack of step functions on given input vectors.

    The core of :func:`state_gradients`, usable with any recurrence, e.g. the linear test
    oracle ``h_t = W h_{t-1} + U x_t`` (``G(t, tau) = W^tau U``).

    Args:
        layer_steps: per layer a :data:`LayerStep`.
        initial_states: per layer ``(B, S_l)``, the state before the first segment.
        inputs: ``(B, N, E)`` input vectors; each row is an independent stream.
        source_classes: ``(B, N)`` class of each position as source word (-1 = leave out);
            default one class.
        num_classes: ``C`` (default ``max(source_classes) + 1``).
        max_delay: ``D``.
        segment_length: tokens per segment; delays crossing a segment start are not counted.
        readouts: per result ``(layer, rows)``; default the whole state of the last layer.
        output_sizes: per layer the number of leading state entries fed upward (default all).
        positions: source positions (offsets in each row), see :func:`source_positions`; None = all.

    Returns:
        One :class:`StateGradientResult` per readout.
    """
    batch, num_steps, input_size = inputs.shape
    _check_schedule(num_steps, max_delay, segment_length)
    if source_classes is None:
        source_classes = torch.zeros(batch, num_steps, dtype=torch.int64, device=inputs.device)
    if source_classes.shape != (batch, num_steps):
        raise ValueError(f"source_classes must be (B, N) = {(batch, num_steps)}, got {tuple(source_classes.shape)}.")
    source_classes = source_classes.long()
    num_classes = _check_num_classes(source_classes, num_classes)
    is_source = torch.zeros(num_steps, dtype=torch.bool)
    is_source[source_positions(num_steps, positions)] = True
    state_sizes = [state.shape[-1] for state in initial_states]
    readouts = readouts if readouts is not None else [(len(layer_steps) - 1, slice(None))]
    output_sizes = output_sizes if output_sizes is not None else state_sizes
    accumulator = StateGradientAccumulator(
        layer_steps, output_sizes, readouts, num_classes, max_delay, input_size, state_sizes,
        dtype=inputs.dtype, device=inputs.device,
    )
    states = list(initial_states)
    for start in range(0, num_steps, segment_length):
        stop = min(start + segment_length, num_steps)
        states = accumulator.run_segment(
            states, inputs[:, start:stop], source_classes[:, start:stop], is_source[start:stop]
        )
    return accumulator.results()


def _check_num_classes(classes: torch.Tensor, num_classes: int | None) -> int:
    """Validate class ids (>= -1) against ``num_classes`` (default ``max + 1``)."""
    if classes.numel() and int(classes.min()) < -1:
        raise ValueError(f"class ids must be >= 0 (or -1 = leave out), got {int(classes.min())}.")
    largest = int(classes.max()) if classes.numel() else -1
    if num_classes is None:
        return max(largest + 1, 1)
    if num_classes < 1 or largest >= num_classes:
        raise ValueError(f"num_classes={num_classes} but class ids go up to {largest}.")
    return num_classes


# ---------------------------------------------------------------------------
# Model-level API
# ---------------------------------------------------------------------------


def frequency_classes(
    counting_streams: torch.Tensor | Sequence[torch.Tensor], vocab_size: int, edges: Sequence[int] = DEFAULT_BIN_EDGES
) -> tuple[torch.Tensor, list[str]]:
    """Frequency-bin class of every vocabulary id (0 = most frequent bin) and the bin labels.

    Uses :mod:`mtlstm_hf.evaluation.frequency` (same bins as the per-bin perplexity): count words in
    ``counting_streams`` (train only recommended), bin by ``edges``. Pass the result as
    ``token_classes=..., class_labels=...`` to :func:`state_gradients`.

    Returns:
        ``(classes (V,) int64, labels)``.
    """
    return frequency_bin_of_token(token_counts(counting_streams, vocab_size), edges), bin_labels(edges)


def _class_table(
    token_classes: torch.Tensor | Sequence[int] | Mapping[int, int] | None, vocab_size: int
) -> torch.Tensor:
    """``(V,)`` int64 class per token id (-1 = leave out); None -> one class for every word."""
    if token_classes is None:
        return torch.zeros(vocab_size, dtype=torch.int64)
    if isinstance(token_classes, Mapping):
        table = torch.full((vocab_size,), -1, dtype=torch.int64)
        for token, token_class in token_classes.items():
            if not 0 <= int(token) < vocab_size:
                raise ValueError(f"token_classes maps token id {token}, outside [0, {vocab_size}).")
            table[int(token)] = int(token_class)
        return table
    table = torch.as_tensor(token_classes)
    if table.dim() != 1 or table.shape[0] != vocab_size or table.is_floating_point():
        raise ValueError(
            f"token_classes must be an integer tensor (V,) = ({vocab_size},) or a {{token id: class}} map, "
            f"got {table.dtype} of shape {tuple(table.shape)}."
        )
    return table.long().cpu()


def _token_rows(token_stream: Any, vocab_size: int, batch_size: int) -> torch.Tensor:
    """The stream cut into ``batch_size`` contiguous rows ``(B, N // B)`` (the tail is dropped)."""
    stream = torch.as_tensor(token_stream)
    if stream.dim() != 1 or stream.is_floating_point() or stream.dtype == torch.bool:
        raise ValueError(
            f"token_stream must be a 1-D integer tensor (N,), got {stream.dtype} of shape {tuple(stream.shape)}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    stream = stream.long()
    if stream.numel() and (int(stream.min()) < 0 or int(stream.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}) (the vocabulary size), got values from "
            f"{int(stream.min())} to {int(stream.max())}."
        )
    row_length = stream.numel() // batch_size
    return stream[: row_length * batch_size].view(batch_size, row_length)


def state_gradients(
    model: torch.nn.Module,
    token_stream: torch.Tensor,
    max_delay: int = 50,
    segment_length: int = 200,
    layer: int | Sequence[int] = -1,
    state: str = "cell",
    token_classes: torch.Tensor | Sequence[int] | Mapping[int, int] | None = None,
    num_classes: int | None = None,
    class_labels: Sequence[str] | None = None,
    batch_size: int = 1,
    dtype: torch.dtype | None = None,
    progress: Any = False,
    positions: int | Sequence[int] | torch.Tensor | None = None,
) -> StateGradientResult | list[StateGradientResult]:
    """Average state gradients ``G(t, tau) = d s_t / d x_{t-tau}`` of an MTLSTM over a token stream.

    Eval semantics whatever ``model.training`` says: raw recurrent weights, no dropout. The
    stream is cut into ``batch_size`` contiguous rows (the last ``N mod B`` tokens are dropped),
    each row into segments of ``segment_length`` tokens; the first segment starts from the zero
    state, each later one from the previous segment's final state, detached. ``G(t, tau)`` is
    summed for every ``t`` and ``tau < max_delay`` with ``t - tau`` in ``t``'s segment, into the
    class of the source word ``w_{t-tau}``, for the source positions ``t - tau`` chosen by
    ``positions`` (all by default).

    Args:
        model: ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        token_stream: ``(N,)`` token ids in ``[0, V)``.
        max_delay: ``D``, delays ``0 .. D-1`` (paper: 50).
        segment_length: tokens per segment (paper: 200); must be ``>= max_delay``.
        layer: 0-based index into ``model.model.layers`` of the layer whose state is differentiated
            (default ``-1``, the last). A sequence of indices returns one result per layer from a
            single pass (e.g. ``range(num_layers)`` for every layer).
        state: ``"cell"`` (``c_t``, default, as in the paper) or ``"hidden"`` (``h_t``).
        token_classes: class of each vocabulary id as source word: a ``(V,)`` int tensor, a
            ``{token id: class}`` map (ids not in it are left out), or None (one class). -1
            leaves a word out. For frequency bins use :func:`frequency_classes`.
        num_classes: ``C`` (default ``max class + 1``).
        class_labels: names of the classes (kept in the result, used by the plots).
        batch_size: rows processed in parallel.
        dtype: compute dtype of the tangents (default float32; sums are float64).
        progress: True for a progress bar (units: ``G(t, tau)`` matrices per row), or an object
            with ``total`` and ``update(n)`` (see :func:`mtlstm_hf.analysis.report.run_analyses`).
        positions: which source positions ``j = t - tau`` (offsets within each row) to use:
            None = all; an int ``K`` = ``K`` evenly spaced positions ``floor(k n / K)``; or explicit
            offsets (see :func:`source_positions`). Each chosen source contributes every delay
            that stays in its segment; the averages are then over those sources only.

    Cost: ``B`` times, per chosen source and delay, one ``(2 H_l x H_l) x (H_l x E)`` matmul per
    layer (standard LSTM, closed-form linearisation; ``(S_l x S_l)`` with ``jacfwd`` for other cells)
    plus the input matmul of the layers above the first, and per step with a live source the
    linearisation of each layer; steps without a live source only advance the state. Memory: the
    tangents ``B * S_l * D * E`` per layer at most (dtype) and the sums ``D * C * H * E`` float64
    per result. Only layers up to the highest requested one are computed.

    Returns:
        A :class:`StateGradientResult` (``sums (D, C, H, E)``, ``counts (D, C)``), or a list of
        them when ``layer`` is a sequence.

    Raises:
        ValueError: stream shorter than ``max_delay`` per row, ``segment_length < max_delay``,
            no such layer, ids outside the vocabulary, unknown ``state``, a cell-less layer with
            ``state="cell"``, malformed classes.
    """
    base = _base_model(model)
    num_layers = len(base.layers)
    requested = [layer] if isinstance(layer, int) else list(layer)
    if not requested:
        raise ValueError("layer must be a 0-based layer index or a non-empty sequence of them.")
    layer_indices = []
    for value in requested:
        if isinstance(value, bool) or not isinstance(value, int) or not -num_layers <= value < num_layers:
            raise ValueError(
                f"layer must be a 0-based layer index in [{-num_layers}, {num_layers}) for this {num_layers}-layer model, "
                f"got {value!r}."
            )
        layer_indices.append(value % num_layers)
    if state not in STATE_KINDS:
        raise ValueError(f"state must be one of {STATE_KINDS}, got {state!r}.")

    vocab_size = base.embeddings.num_embeddings
    rows = _token_rows(token_stream, vocab_size, batch_size)
    _check_schedule(rows.shape[1], max_delay, segment_length)
    class_table = _class_table(token_classes, vocab_size)
    num_classes = _check_num_classes(class_table, num_classes)
    if class_labels is not None and len(class_labels) != num_classes:
        raise ValueError(f"got {len(class_labels)} class_labels for {num_classes} classes.")

    sources = source_positions(rows.shape[1], positions)
    is_source = torch.zeros(rows.shape[1], dtype=torch.bool)
    is_source[sources] = True
    is_source &= (class_table[rows] >= 0).any(0)  # a position no row counts is never a source
    depth = max(layer_indices) + 1
    steps, output_sizes, has_cell = model_layer_steps(model, depth, dtype)
    readouts = []
    for index in layer_indices:
        if state == "cell" and not has_cell[index]:
            raise ValueError(f"layer index {index} (layer {index + 1}) has no memory cell; use state='hidden'.")
        size = output_sizes[index]
        readouts.append((index, slice(size, 2 * size) if state == "cell" else slice(0, size)))

    weight = base.embeddings.weight.detach()
    compute_dtype = _compute_dtype(model, dtype)
    device = weight.device
    state_sizes = [size * (2 if cell else 1) for size, cell in zip(output_sizes, has_cell)]
    accumulator = StateGradientAccumulator(
        steps, output_sizes, readouts, num_classes, max_delay, weight.shape[1], state_sizes,
        dtype=compute_dtype, device=device,
    )
    states = [torch.zeros(batch_size, size, dtype=compute_dtype, device=device) for size in state_sizes]
    total = _matrix_count(is_source.nonzero().reshape(-1), rows.shape[1], max_delay, segment_length)
    with open_progress(progress, total=total, desc="state gradients", unit="G") as bar:
        for start in range(0, rows.shape[1], segment_length):
            segment = rows[:, start : start + segment_length]
            # Embed one segment at a time: the whole stream's embeddings need not fit in memory.
            inputs = weight[segment.to(device)].to(compute_dtype)
            states = accumulator.run_segment(
                states, inputs, class_table[segment].to(device), is_source[start : start + segment_length], bar
            )
    labels = list(class_labels) if class_labels is not None else None
    results = accumulator.results(layer_indices, state, labels)
    return results[0] if isinstance(layer, int) else results
