"""Parameter layouts of the AWD-LSTM family, and reading one into a neutral form.

Every source is an embedding ``(V, E)``, a stack of PyTorch LSTM layers and a linear decoder
``(V, H_L)`` (tied to the embedding or not, with a bias). What differs is the key names
(``state_dict`` of the original model, after :func:`.weights.read_state_dict` dropped a
``module.`` prefix):

=======================  ==========================================================================
family                   keys (layer ``k`` counted from 0)
=======================  ==========================================================================
``awd-lstm``             ``encoder.weight``; ``rnns.k.module.weight_ih_l0``, ``..weight_hh_l0_raw``
                         (the raw matrix under DropConnect; ``rnns.k.weight_hh_l0`` without
                         weight drop), ``..bias_ih_l0``, ``..bias_hh_l0``; ``decoder.weight``,
                         ``decoder.bias`` (salesforce/awd-lstm-lm ``model.py``)
``huthlab-mts``          as ``awd-lstm`` (HuthLab/multi-timescale-LSTM-LMs ``model_mts.py``, a fork);
                         its ``WeightDrop`` also saves the last *dropped* copy ``weight_hh_l0``
                         next to ``weight_hh_l0_raw``: the raw matrix is what evaluation uses
``fastai-awd-lstm``      ``0.encoder.weight`` (and the same matrix as ``0.encoder_dp.emb.weight``);
                         ``0.rnns.k.weight_hh_l0_raw`` (fastai's ``WeightDropout`` keeps the raw
                         matrix on itself), ``0.rnns.k.module.weight_ih_l0``, ``..bias_ih_l0``,
                         ``..bias_hh_l0``; ``1.decoder.weight``, ``1.decoder.bias`` (absent with
                         ``out_bias=False``) (fastai ``text/models/awdlstm.py``, ``core.py``)
``word-language-model``  ``encoder.weight``; one multi-layer ``nn.LSTM``: ``rnn.weight_ih_lk``,
                         ``rnn.weight_hh_lk``, ``rnn.bias_ih_lk``, ``rnn.bias_hh_lk``;
                         ``decoder.weight``, ``decoder.bias`` (pytorch/examples ``model.py``)
=======================  ==========================================================================

Where each layer's tensors sit tells the families apart when the shapes fit several: the raw
recurrent matrix is ``rnns.k.module.weight_hh_l0_raw`` for ``awd-lstm`` / ``huthlab-mts`` (or a bare
``rnns.k.weight_hh_l0`` without weight drop) but ``rnns.k.weight_hh_l0_raw`` for fastai. Every layer
must be laid out as the chosen family's code saves it (:attr:`SourceFamily.layer_layouts`); a file
of another family is refused naming the ``--from`` that fits, instead of being converted with the
wrong family's training defaults.

PyTorch stacks the LSTM's row blocks as ``i, f, g, o`` (input gate, forget gate, cell
candidate, output gate) in ``weight_ih (4H, In)``, ``weight_hh (4H, H)`` and both bias
vectors ``(4H,)``; the gates add ``b_ih + b_hh``.

A decoder weight equal to the embedding is *tied* (a ``torch.save`` file stores the shared
matrix under both names); a file with ``decoder.bias`` but no ``decoder.weight`` is taken as
tied too (safetensors stores a shared matrix once). Hidden sizes, the number of layers and
the vocabulary size are read from the shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from mtlstm_hf.models.mtlstm.layouts import layer_number

__all__ = [
    "FAMILIES",
    "LSTMLayerWeights",
    "LSTMLanguageModelWeights",
    "LayerLayout",
    "SourceFamily",
    "parse_state_dict",
]


@dataclass(frozen=True)
class LayerLayout:
    """The tensors of one LSTM layer as one family's code saves them, named after the layer's
    prefix (``module.weight_hh_l0_raw`` for the key ``rnns.0.module.weight_hh_l0_raw``).

    Attributes:
        description: which code (and setting) gives this layout, for messages.
        required: the names every such layer has.
        optional: names it may have besides (a dropped copy of the recurrent matrix).
    """

    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def fits(self, names: Collection[str]) -> bool:
        """Whether a layer holding exactly ``names`` is laid out this way."""
        return set(self.required) <= set(names) <= set(self.required) | set(self.optional)


@dataclass(frozen=True)
class SourceFamily:
    """Where one family keeps its tensors.

    Attributes:
        name: the ``--from`` value.
        description: one line naming the original code.
        embedding_keys: candidate keys of the embedding matrix ``(V, E)``.
        layer_pattern: regular expression with groups ``layer`` (index from 0), ``kind``
            (``weight_ih``, ``weight_hh``, ``weight_hh_raw``, ``bias_ih``, ``bias_hh``, with or
            without the ``_l0`` suffix of a one-layer ``nn.LSTM``) and ``name`` (the tensor's
            name within its layer, as :class:`LayerLayout` lists it) matching a full key.
        decoder_weight_keys, decoder_bias_keys: candidate keys of the decoder.
        layer_layouts: how this family's code lays out one layer; every layer must fit one
            (the layouts tell the families apart where the shapes cannot).
        duplicate_embedding_keys: keys that must hold the embedding again (fastai's dropout wrapper).
        example_keys: what to show when a file has other keys.
    """

    name: str
    description: str
    embedding_keys: tuple[str, ...]
    layer_pattern: str
    decoder_weight_keys: tuple[str, ...]
    decoder_bias_keys: tuple[str, ...]
    layer_layouts: tuple[LayerLayout, ...] = ()
    duplicate_embedding_keys: tuple[str, ...] = ()
    example_keys: tuple[str, ...] = ()


_L0_KINDS = r"(?P<kind>weight_ih_l0|weight_hh_l0_raw|weight_hh_l0|bias_ih_l0|bias_hh_l0)"
_AWD_LAYER = rf"rnns\.(?P<layer>\d+)\.(?P<name>(?:module\.)?{_L0_KINDS})"
_AWD_LAYOUTS = (
    # salesforce's WeightDrop moves weight_hh_l0 to weight_hh_l0_raw on the wrapped nn.LSTM (module.)
    # and, after a forward pass, registers the dropped matrix there again as weight_hh_l0.
    LayerLayout(
        "salesforce WeightDrop (wdrop > 0): every tensor under module., the recurrent matrix as module.weight_hh_l0_raw",
        ("module.weight_ih_l0", "module.weight_hh_l0_raw", "module.bias_ih_l0", "module.bias_hh_l0"),
        ("module.weight_hh_l0",),
    ),
    LayerLayout(
        "no weight drop (wdrop = 0): a bare nn.LSTM", ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    ),
)
_FASTAI_LAYOUTS = (
    # fastai's WeightDropout keeps the raw matrix on itself (weight_hh_l0_raw beside module.);
    # fastai v1 also kept the dropped copy as module.weight_hh_l0.
    LayerLayout(
        "fastai WeightDropout: weight_hh_l0_raw on the wrapper, the other tensors under module.",
        ("weight_hh_l0_raw", "module.weight_ih_l0", "module.bias_ih_l0", "module.bias_hh_l0"),
        ("module.weight_hh_l0",),
    ),
)
_AWD_EXAMPLES = ("encoder.weight", "rnns.0.module.weight_ih_l0", "rnns.0.module.weight_hh_l0_raw", "decoder.weight")

FAMILIES: dict[str, SourceFamily] = {
    "awd-lstm": SourceFamily(
        "awd-lstm",
        "salesforce/awd-lstm-lm RNNModel (one nn.LSTM per layer, WeightDrop on weight_hh_l0)",
        ("encoder.weight",),
        _AWD_LAYER,
        ("decoder.weight",),
        ("decoder.bias",),
        layer_layouts=_AWD_LAYOUTS,
        example_keys=_AWD_EXAMPLES,
    ),
    "huthlab-mts": SourceFamily(
        "huthlab-mts",
        "HuthLab/multi-timescale-LSTM-LMs RNNModel (model_mts.py: AWD-LSTM with assigned, frozen biases)",
        ("encoder.weight",),
        _AWD_LAYER,
        ("decoder.weight",),
        ("decoder.bias",),
        layer_layouts=_AWD_LAYOUTS,
        example_keys=_AWD_EXAMPLES,
    ),
    "fastai-awd-lstm": SourceFamily(
        "fastai-awd-lstm",
        "fastai get_language_model(AWD_LSTM, ...) (SequentialRNN of AWD_LSTM and LinearDecoder)",
        ("0.encoder.weight", "encoder.weight"),
        rf"(?:0\.)?{_AWD_LAYER}",
        ("1.decoder.weight", "decoder.weight"),
        ("1.decoder.bias", "decoder.bias"),
        layer_layouts=_FASTAI_LAYOUTS,
        duplicate_embedding_keys=("0.encoder_dp.emb.weight", "encoder_dp.emb.weight"),
        example_keys=(
            "0.encoder.weight",
            "0.rnns.0.weight_hh_l0_raw",
            "0.rnns.0.module.weight_ih_l0",
            "1.decoder.weight",
        ),
    ),
    "word-language-model": SourceFamily(
        "word-language-model",
        "pytorch/examples word_language_model RNNModel with rnn_type LSTM (one multi-layer nn.LSTM)",
        ("encoder.weight",),
        r"rnn\.(?P<name>(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh))_l(?P<layer>\d+)",
        ("decoder.weight",),
        ("decoder.bias",),
        layer_layouts=(LayerLayout("one multi-layer nn.LSTM", ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),),
        example_keys=("encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight"),
    ),
}
"""The source families ``mtlstm-convert --from`` accepts."""


@dataclass
class LSTMLayerWeights:
    """One PyTorch LSTM layer: rows in blocks ``i, f, g, o`` of ``H`` rows each.

    Attributes:
        weight_ih: ``(4H, In)``. weight_hh: ``(4H, H)`` (the raw matrix under DropConnect).
        bias_ih, bias_hh: ``(4H,)`` each; the gates use their sum.
    """

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: torch.Tensor
    bias_hh: torch.Tensor

    @property
    def hidden_size(self) -> int:
        return self.weight_hh.shape[1]

    @property
    def input_size(self) -> int:
        return self.weight_ih.shape[1]

    def summed_bias(self) -> torch.Tensor:
        """``b_ih + b_hh`` ``(4H,)``, float32, what the gates add (``0 + -inf = -inf``)."""
        return self.bias_ih.float() + self.bias_hh.float()


@dataclass
class LSTMLanguageModelWeights:
    """An LSTM language model read from a source ``state_dict``, in PyTorch's layout.

    Attributes:
        family: the source family name.
        embedding: ``(V, E)``.
        layers: the LSTM layers, first (reading the embedding) first.
        decoder_weight: ``(V, H_L)``; ``None`` when tied to the embedding.
        decoder_bias: ``(V,)`` or ``None`` (no bias: zeros in the converted model).
        notes: what the reading decided (ignored duplicate tensors, tying), for the summary.
    """

    family: str
    embedding: torch.Tensor
    layers: list[LSTMLayerWeights]
    decoder_weight: torch.Tensor | None
    decoder_bias: torch.Tensor | None
    notes: list[str] = field(default_factory=list)

    @property
    def tied(self) -> bool:
        return self.decoder_weight is None

    @property
    def vocab_size(self) -> int:
        return self.embedding.shape[0]

    @property
    def embedding_size(self) -> int:
        return self.embedding.shape[1]

    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.hidden_size for layer in self.layers]

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied matrix counted once)."""
        tensors = [self.embedding, self.decoder_weight, self.decoder_bias]
        for layer in self.layers:
            tensors += [layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh]
        return sum(t.numel() for t in tensors if t is not None)


def _layer_names(family: SourceFamily, keys: Iterable[str]) -> dict[int, dict[str, str]]:
    """``{layer index: {name within the layer: key}}`` for the keys ``family.layer_pattern`` matches."""
    layers: dict[int, dict[str, str]] = {}
    for key in keys:
        match = re.fullmatch(family.layer_pattern, key)
        if match:
            layers.setdefault(int(match.group("layer")), {})[match.group("name")] = key
    return layers


def _fitting_families(keys: Collection[str]) -> list[str]:
    """The families whose embedding key the keys hold and whose layer layouts every layer fits."""
    fitting = []
    for name, family in FAMILIES.items():
        layers = _layer_names(family, keys)
        if (
            layers
            and any(key in keys for key in family.embedding_keys)
            and all(any(layout.fits(names) for layout in family.layer_layouts) for names in layers.values())
        ):
            fitting.append(name)
    return fitting


def _use_instead(keys: Collection[str], family: str) -> str:
    """``"; it looks like a NAME state dict (use --from NAME)"`` for the other families the keys fit."""
    others = [name for name in _fitting_families(keys) if name != family]
    if not others:
        return ""
    return (
        f"; it looks like a {' or '.join(others)} state dict (use {' or '.join(f'--from {name}' for name in others)})"
    )


def _looks_like(keys: list[str], family: str) -> str:
    """A short guess of what a foreign state dict is, from its key names."""
    text = " ".join(keys).lower()
    if any(word in text for word in ("self_attn", "attention", "attn.", "transformer", "pos_encoder", "in_proj")):
        return "; it looks like a transformer (attention weights)"
    if "gru" in text:
        return "; it looks like a GRU"
    if "linear.module.weight_raw" in text or "qrnn" in text:
        return "; it looks like a QRNN, which has no LSTM gates"
    return _use_instead(keys, family)


def _layout_error(
    spec: SourceFamily, index: int, keys: Collection[str], tensors: Mapping[str, torch.Tensor]
) -> ValueError:
    """A layer whose tensor names are not one of ``spec``'s layouts (another family's, as a rule)."""
    layouts = " or ".join(f"{layout.description} ({', '.join(layout.required)})" for layout in spec.layer_layouts)
    return ValueError(
        f"layer {layer_number(index)} is not laid out as {spec.name} saves a layer: found {', '.join(map(repr, sorted(keys)))}; "
        f"{spec.name} has {layouts}{_use_instead(list(tensors), spec.name)}"
    )


def _foreign(family: SourceFamily, tensors: Mapping[str, torch.Tensor], missing: str) -> ValueError:
    keys = list(tensors)
    shown = ", ".join(repr(k) for k in keys[:6]) + (" ..." if len(keys) > 6 else "")
    return ValueError(
        f"not a {family.name} LSTM language model: {missing}; expected keys like "
        f"{', '.join(repr(k) for k in family.example_keys)}, found {len(keys)} keys: {shown}{_looks_like(keys, family.name)}"
    )


def _gate_blocks_error(index: int, name: str, rows: int, hidden: int) -> ValueError:
    blocks = rows / hidden if hidden else float("nan")
    what = {3: "a GRU's 3 gate blocks (r, z, n)", 1: "a plain RNN's single block"}.get(
        int(blocks) if blocks == int(blocks) else -1
    )
    found = f"{rows} rows = {blocks:g} x H={hidden}" + (f", {what}" if what else "")
    return ValueError(
        f"layer {layer_number(index)}: {name} has {found}; an LSTM layer has 4 x H = {4 * hidden} rows (gates i, f, g, o), "
        "so this is not an LSTM"
    )


def parse_state_dict(tensors: Mapping[str, torch.Tensor], family: str) -> LSTMLanguageModelWeights:
    """Read an LSTM language model of ``family`` out of a ``state_dict``.

    Args:
        tensors: ``{key: tensor}`` as :func:`.weights.read_state_dict` returns.
        family: a key of :data:`FAMILIES`.

    Returns:
        The weights, cast to float32, checked for shape consistency.

    Raises:
        ValueError: unknown family; the keys are not this family's (another architecture,
            e.g. a GRU or a transformer, or another family: the message says which when it can
            tell); a layer's tensors are not laid out as this family's code saves them (every
            layer must fit one of ``layer_layouts``: an awd-lstm file is refused as
            fastai-awd-lstm and the reverse, though the shapes fit both); a tensor is missing
            (e.g. the decoder); an LSTM layer has another number of
            gate blocks than 4; the sizes of consecutive layers, the embedding or the decoder
            do not fit together; a key is left over (e.g. a bidirectional or projected LSTM);
            a tensor holds NaN, or +-inf outside the bias vectors.
    """
    if family not in FAMILIES:
        raise ValueError(f"--from must be one of {sorted(FAMILIES)}, got {family!r}")
    spec = FAMILIES[family]
    used: set[str] = set()
    notes: list[str] = []

    embedding_key = next((key for key in spec.embedding_keys if key in tensors), None)
    parts: dict[int, dict[str, tuple[str, torch.Tensor]]] = {}
    layer_keys: dict[int, dict[str, str]] = {}  # name within the layer -> key, for the layout check
    for key, value in tensors.items():
        match = re.fullmatch(spec.layer_pattern, key)
        if match:
            kind = match.group("kind").replace("_l0", "")  # weight_hh_l0_raw -> weight_hh_raw
            parts.setdefault(int(match.group("layer")), {})[kind] = (key, value)
            layer_keys.setdefault(int(match.group("layer")), {})[match.group("name")] = key
    if embedding_key is None or not parts:
        missing = "no embedding matrix" if embedding_key is None else "no LSTM layer"
        raise _foreign(spec, tensors, missing)
    used.add(embedding_key)
    embedding = tensors[embedding_key]
    if embedding.dim() != 2:
        raise ValueError(
            f"{embedding_key} must be a (vocabulary, embedding) matrix, found shape {tuple(embedding.shape)}"
        )
    for key in spec.duplicate_embedding_keys:
        if key in tensors:
            if not torch.equal(tensors[key], embedding):
                raise ValueError(
                    f"{key} should hold the embedding again (the same matrix as {embedding_key}) but differs"
                )
            used.add(key)

    indices = sorted(parts)
    if indices != list(range(len(indices))):
        raise ValueError(f"the LSTM layers are numbered {indices}; expected 0..{len(indices) - 1} with none missing")
    layers: list[LSTMLayerWeights] = []
    for index in indices:
        found = parts[index]
        if "weight_hh_raw" in found:
            if "weight_hh" in found:  # HuthLab's WeightDrop saves the last dropped copy too
                used.add(found["weight_hh"][0])
                notes.append(
                    f"layer {layer_number(index)}: used the raw recurrent matrix {found['weight_hh_raw'][0]} "
                    f"(the dropped copy {found['weight_hh'][0]} is ignored)"
                )
            found["weight_hh"] = found.pop("weight_hh_raw")
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if kind not in found:
                raise ValueError(
                    f"layer {layer_number(index)} lacks its {kind} tensor (found {sorted(key for key, _ in found.values())}); "
                    "an LSTM layer needs weight_ih, weight_hh (or weight_hh_l0_raw), bias_ih and bias_hh"
                )
        if not any(layout.fits(layer_keys[index]) for layout in spec.layer_layouts):
            raise _layout_error(spec, index, layer_keys[index].values(), tensors)
        names = {kind: key for kind, (key, _) in found.items()}
        used.update(names.values())
        weight_ih, weight_hh, bias_ih, bias_hh = (
            found[kind][1] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        if weight_hh.dim() != 2 or weight_ih.dim() != 2:
            raise ValueError(
                f"layer {layer_number(index)}: {names['weight_ih']} and {names['weight_hh']} must be matrices, found shapes "
                f"{tuple(weight_ih.shape)} and {tuple(weight_hh.shape)}"
            )
        hidden = weight_hh.shape[1]
        for kind, tensor in (("weight_hh", weight_hh), ("weight_ih", weight_ih)):
            if tensor.shape[0] != 4 * hidden:
                raise _gate_blocks_error(index, names[kind], tensor.shape[0], hidden)
        for kind, tensor in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
            if tuple(tensor.shape) != (4 * hidden,):
                raise ValueError(
                    f"layer {layer_number(index)}: {names[kind]} has shape {tuple(tensor.shape)}, expected ({4 * hidden},) "
                    f"(4 gates x H={hidden})"
                )
        layers.append(LSTMLayerWeights(weight_ih, weight_hh, bias_ih, bias_hh))

    vocab_size, embedding_size = embedding.shape
    expected_input = embedding_size
    for index, layer in enumerate(layers):
        if layer.input_size != expected_input:
            source = "the embedding" if index == 0 else f"layer {index} (hidden size {expected_input})"
            raise ValueError(
                f"inconsistent layer sizes: layer {layer_number(index)} reads inputs of width {layer.input_size} but "
                f"{source} gives width {expected_input}"
            )
        expected_input = layer.hidden_size

    weight_key = next((key for key in spec.decoder_weight_keys if key in tensors), None)
    bias_key = next((key for key in spec.decoder_bias_keys if key in tensors), None)
    if weight_key is None and bias_key is None:
        raise ValueError(
            f"missing decoder: found neither {' nor '.join(spec.decoder_weight_keys + spec.decoder_bias_keys)} "
            f"(expected a ({vocab_size}, {layers[-1].hidden_size}) output matrix; an encoder saved alone, e.g. "
            "fastai's save_encoder, is not a language model)"
        )
    decoder_weight: torch.Tensor | None = None
    decoder_bias: torch.Tensor | None = None
    last = layers[-1].hidden_size
    if weight_key is not None:
        decoder_weight = tensors[weight_key]
        used.add(weight_key)
        if tuple(decoder_weight.shape) != (vocab_size, last):
            raise ValueError(
                f"inconsistent sizes: {weight_key} has shape {tuple(decoder_weight.shape)}, expected ({vocab_size}, {last}) "
                f"(the embedding's {vocab_size} words x the last layer's hidden size {last})"
            )
        if decoder_weight.data_ptr() == embedding.data_ptr() or torch.equal(decoder_weight, embedding):
            decoder_weight = None
            notes.append(f"{weight_key} is the embedding matrix: tied weights")
    elif last == embedding_size:
        notes.append(f"no {spec.decoder_weight_keys[0]}: taken as tied to the embedding (a shared matrix stored once)")
    else:
        raise ValueError(
            f"missing decoder weight {spec.decoder_weight_keys[0]} (only {bias_key} found), and it cannot be tied to the "
            f"embedding: the last layer's hidden size {last} differs from the embedding size {embedding_size}"
        )
    if bias_key is not None:
        decoder_bias = tensors[bias_key]
        used.add(bias_key)
        if tuple(decoder_bias.shape) != (vocab_size,):
            raise ValueError(f"{bias_key} has shape {tuple(decoder_bias.shape)}, expected ({vocab_size},)")
    else:
        notes.append("the decoder has no bias: the converted output layer's bias is zero")

    left_over = [key for key in tensors if key not in used]
    if left_over:
        hint = ""
        if any("_reverse" in key for key in left_over):
            hint = " (a bidirectional LSTM, which a language model cannot be)"
        elif any("weight_hr" in key for key in left_over):
            hint = " (an LSTM with projections, proj_size > 0, which is not supported)"
        raise ValueError(
            f"the {family} layout does not account for {len(left_over)} tensor(s): "
            f"{', '.join(repr(k) for k in left_over[:8])}{' ...' if len(left_over) > 8 else ''}{hint}; "
            "nothing is dropped silently"
        )

    def as_float(tensor: torch.Tensor, name: str, allow_inf: bool = False) -> torch.Tensor:
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must hold floating-point numbers, found dtype {tensor.dtype}")
        tensor = tensor.detach().to(torch.float32)
        if not allow_inf and math.isfinite(float(tensor.sum(dtype=torch.float64))):
            return tensor  # one pass: a NaN or an infinity would make the sum non-finite
        bad = torch.isnan(tensor) if allow_inf else ~torch.isfinite(tensor)
        if bool(bad.any()):
            what = "NaN" if allow_inf else "NaN or infinite values"
            raise ValueError(f"{name} holds {what} ({int(bad.sum())} entries): the checkpoint is damaged")
        return tensor

    dtypes = {str(t.dtype) for t in tensors.values()}
    if dtypes != {"torch.float32"}:
        notes.append(f"tensors of dtype {', '.join(sorted(dtypes))} converted to float32")
    return LSTMLanguageModelWeights(
        family=family,
        embedding=as_float(embedding, embedding_key),
        layers=[
            LSTMLayerWeights(
                as_float(layer.weight_ih, f"layer {i + 1} weight_ih"),
                as_float(layer.weight_hh, f"layer {i + 1} weight_hh"),
                # Biases may be +-inf: an assigned timescale of 0 or infinity (b_f = -inf / +inf).
                as_float(layer.bias_ih, f"layer {i + 1} bias_ih", allow_inf=True),
                as_float(layer.bias_hh, f"layer {i + 1} bias_hh", allow_inf=True),
            )
            for i, layer in enumerate(layers)
        ],
        decoder_weight=as_float(decoder_weight, str(weight_key)) if decoder_weight is not None else None,
        decoder_bias=as_float(decoder_bias, str(bias_key)) if decoder_bias is not None else None,
        notes=notes,
    )
