"""Converting an AWD-LSTM-family checkpoint into an mtlstm model folder.

:func:`convert_model` does the work in memory (read the weights safely, map them, recognise
assigned timescales, build the tokenizer, check that everything fits); :func:`convert_checkpoint`
also writes the folder, in one piece: into a temporary folder beside it that is renamed at the
end, so on any error nothing is written (``OUTPUT_DIR`` stays as it was, or absent).

The folder holds what ``model.save_pretrained`` and ``tokenizer.save_pretrained`` write
(``config.json``, ``model.safetensors``, the modelling ``.py`` files for
``trust_remote_code=True``, ``tokenizer.json``, ``tokenizer_config.json``) and
``conversion.json``: the source, the SHA-256 of the weights file, the vocabulary's source and
what was recognised. ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``
load it, and ``mtlstm-eval`` / ``mtlstm-analyze`` run on it.

Mapping (PyTorch's gate order i, f, g, o is the model's too):

======================================  ===============================================
source                                  mtlstm
======================================  ===============================================
embedding ``(V, E)``                    ``model.embeddings.weight``
layer k ``weight_ih (4H, In)``          ``model.layers.k.weight_ih``
layer k ``weight_hh(_raw) (4H, H)``     ``model.layers.k.weight_hh`` (the raw matrix; the
                                        model applies DropConnect itself when training)
layer k ``bias_ih (4H,)``              ``model.layers.k.gate_biases.{input_gate, forget_gate,
                                        cell_candidate, output_gate}``, ``(H,)`` each; a frozen
                                        gate (timescales) ``bias_ih + bias_hh``
layer k ``bias_hh (4H,)``              ``model.layers.k.gate_biases.{gate}_hh`` of the gates
                                        that train (none for a frozen gate)
decoder ``(V, H_L)``, bias ``(V,)``     ``lm_head.weight`` (tied: the embedding), ``lm_head.bias``
                                        (zeros when the source has none)
(no source row)                         the pad token's row ``V`` when the tokenizer adds
                                        ``<pad>``: zero embedding and output weight, output
                                        bias :data:`PAD_LOGIT` (probability 0)
======================================  ===============================================

Timescales (:mod:`.assigned`): ``huthlab-mts`` requires the reference code's bias layout in every
layer but the last and converts those layers to explicit schedules with ``frozen_biases="all"``
(the reference freezes the whole bias vectors of those layers); for the other families any
layer whose summed biases have ``b_i = -b_f`` exactly gets an explicit schedule with
``frozen_biases="forget_input"``; other layers are standard LSTMs (``none``).

Dropouts and AR/TAR in the config are the source family's published defaults; they matter only
for further training (a converted model is in eval mode for scoring).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtlstm_hf.files import PathOrStr
from mtlstm_hf.models.mtlstm.layouts import layer_number

from ..data import unknown_word_id, vocabulary_fingerprint
from ..models.mtlstm import MTLSTMConfig, MTLSTMForCausalLM
from ..progress import no_transformers_progress_bar
from .assigned import (
    LayerTimescales,
    describe_assigned,
    detect_layer_timescales,
    exact_explicit_timescales,
    reference_layout_problem,
)
from .families import FAMILIES, LSTMLanguageModelWeights, parse_state_dict
from .vocabulary import Vocabulary, read_vocabulary, tokenizer_for_vocabulary
from .weights import read_state_dict

__all__ = [
    "CONVERSION_FILE",
    "FAMILY_TRAINING_DEFAULTS",
    "Conversion",
    "convert_checkpoint",
    "convert_model",
    "state_dict_for_model",
]


CONVERSION_FILE = "conversion.json"
"""Name of the record of the conversion in the output folder."""

FAMILY_TRAINING_DEFAULTS: dict[str, dict[str, float]] = {
    # salesforce/awd-lstm-lm and HuthLab defaults (PTB): MTLSTMConfig's own defaults.
    "awd-lstm": {},
    "huthlab-mts": {},
    # fastai awd_lstm_lm_config (embed_p, input_p, hidden_p, output_p, weight_p); RNNRegularizer alpha=2, beta=1.
    "fastai-awd-lstm": {
        "embedding_dropout": 0.02,
        "input_dropout": 0.25,
        "hidden_dropout": 0.15,
        "output_dropout": 0.1,
        "weight_drop": 0.2,
    },
    # word_language_model: nn.Dropout(0.2) on the embedding, between layers and on the output; no
    # weight drop, embedding dropout or AR/TAR.
    "word-language-model": {
        "embedding_dropout": 0.0,
        "input_dropout": 0.2,
        "hidden_dropout": 0.2,
        "output_dropout": 0.2,
        "weight_drop": 0.0,
        "activation_regularization": 0.0,
        "temporal_activation_regularization": 0.0,
    },
}
"""Per family, the training settings put into the converted config (over ``MTLSTMConfig``'s defaults)."""

_GATES = ("input_gate", "forget_gate", "cell_candidate", "output_gate")  # PyTorch's row blocks i, f, g, o


@dataclass
class Conversion:
    """The result of :func:`convert_model`.

    Attributes:
        model: the converted ``MTLSTMForCausalLM``, in eval mode.
        tokenizer: the word-level tokenizer (id of every word as in the original).
        record: what ``conversion.json`` holds (source, sizes, timescales, vocabulary, notes).
    """

    model: MTLSTMForCausalLM
    tokenizer: Any
    record: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few readable lines about the conversion."""
        record = self.record
        sizes = "/".join(str(size) for size in record["hidden_sizes"])
        lines = [
            f"{record['source']} checkpoint {record['weights']} ({record['num_parameters']:,} parameters): "
            f"embedding {record['embedding_size']}, LSTM {sizes}, {record['vocab_size']:,} words, "
            f"{'tied' if record['tie_word_embeddings'] else 'untied'} output weights",
        ]
        for index, layer in enumerate(record["layers"], start=1):
            if layer["assigned_timescales"]:
                lines.append(
                    f"layer {index}: assigned timescales ({layer['description']}; from {layer['min_timescale']:g} to "
                    f"{layer['max_timescale']:g} tokens), frozen biases: {record['frozen_biases']}"
                )
            else:
                lines.append(f"layer {index}: standard LSTM (no assigned timescales)")
        vocab = record["vocabulary"]
        lines.append(
            f"vocabulary: {vocab['source']}; unknown word {vocab['unk_token']!r} = id {vocab['unk_token_id']}, "
            f"end of line {vocab['eos_token']!r} = id {vocab['eos_token_id']}, "
            f"padding {vocab['pad_token']!r} = id {vocab['pad_token_id']}"
        )
        lines += [f"note: {note}" for note in record["notes"]]
        return "\n".join(lines)


PAD_LOGIT = -1.0e4
"""The output bias of a pad row the converter adds: ``exp(-1e4)`` is below the smallest float64, so
the pad token's probability is exactly 0 and the source's words keep their distribution, while the
logit stays finite (a label-smoothed loss, which reads every class, stays finite)."""


def state_dict_for_model(weights: LSTMLanguageModelWeights, config: MTLSTMConfig) -> dict[str, torch.Tensor]:
    """The ``MTLSTMForCausalLM`` state dict of converted ``weights`` (see the module docstring): a
    gate that trains gets the source's two bias vectors one to one (``<gate>`` = ``bias_ih``,
    ``<gate>_hh`` = ``bias_hh``, so that training goes on as in the source); a frozen gate
    (``config.frozen_gates``) their sum, its one fixed vector. ``config.vocab_size`` may exceed
    the source's rows by one, the pad row the tokenizer added (zeros; output bias :data:`PAD_LOGIT`).

    Raises:
        ValueError: ``config.vocab_size`` is neither the source's rows nor one more.
    """
    added = config.vocab_size - weights.vocab_size
    if added not in (0, 1):
        raise ValueError(
            f"config.vocab_size {config.vocab_size} must be the source's {weights.vocab_size} rows or one more (a pad row)"
        )

    def with_pad_row(tensor: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        return torch.cat([tensor, tensor.new_full((added, *tensor.shape[1:]), value)]) if added else tensor

    embedding = with_pad_row(weights.embedding)
    state = {"model.embeddings.weight": embedding}
    for index, layer in enumerate(weights.layers):
        prefix = f"model.layers.{index}."
        state[prefix + "weight_ih"] = layer.weight_ih
        state[prefix + "weight_hh"] = layer.weight_hh
        bias = layer.summed_bias()
        if bool(torch.isnan(bias).any()):
            raise ValueError(
                f"layer {layer_number(index)}: bias_ih + bias_hh is NaN in {int(torch.isnan(bias).sum())} entries "
                "(+inf and -inf added): the checkpoint is damaged"
            )
        frozen = config.frozen_gates(index)
        blocks = zip(
            _GATES,
            bias.split(layer.hidden_size),
            layer.bias_ih.split(layer.hidden_size),
            layer.bias_hh.split(layer.hidden_size),
        )
        for gate, total, input_side, recurrent_side in blocks:
            if gate in frozen:
                state[f"{prefix}gate_biases.{gate}"] = total.clone()
            else:
                state[f"{prefix}gate_biases.{gate}"] = input_side.clone()
                state[f"{prefix}gate_biases.{gate}_hh"] = recurrent_side.clone()
    decoder_weight = weights.decoder_weight  # None: tied (weights.tied)
    state["lm_head.weight"] = embedding if decoder_weight is None else with_pad_row(decoder_weight)
    bias = (
        weights.decoder_bias
        if weights.decoder_bias is not None
        else torch.zeros(weights.vocab_size, dtype=torch.float32)
    )
    state["lm_head.bias"] = with_pad_row(bias, PAD_LOGIT)
    return state


def _timescales(weights: LSTMLanguageModelWeights) -> tuple[list[LayerTimescales], str]:
    """Per layer, the schedule; and ``frozen_biases``."""
    layers = weights.layers
    if weights.family == "huthlab-mts":
        if len(layers) < 2:
            raise ValueError(
                f"--from huthlab-mts: the reference model assigns timescales to every layer but the last; "
                f"this checkpoint has {len(layers)} layer"
            )
        result = []
        for index, layer in enumerate(layers[:-1]):
            problem = reference_layout_problem(layer)
            if problem is not None:
                raise ValueError(
                    f"--from huthlab-mts: layer {layer_number(index)}'s biases are not assigned timescales as the reference code "
                    f"sets them ({problem}); a checkpoint without them converts with --from awd-lstm"
                )
            forget = layer.summed_bias()[layer.hidden_size : 2 * layer.hidden_size]
            timescales = exact_explicit_timescales(forget)
            result.append(LayerTimescales({"type": "explicit", "timescales": timescales}, describe_assigned(forget)))
        result.append(detect_layer_timescales(layers[-1]))
        return result, "all"
    result = [detect_layer_timescales(layer) for layer in layers]
    return result, "forget_input"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**22), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def convert_model(
    weights: PathOrStr,
    vocab: PathOrStr | Vocabulary,
    source: str,
    *,
    unk_token: str | None = None,
    eos_token: str | None = None,
    tokenizer_convention: str = "whitespace",
    config_overrides: dict[str, Any] | None = None,
) -> Conversion:
    """Convert a checkpoint in memory (nothing is written).

    Args:
        weights: the source's ``state_dict`` file or safetensors (:func:`.weights.read_state_dict`).
        vocab: a corpus folder, a word-list file (:func:`.vocabulary.read_vocabulary`) or a
            :class:`.vocabulary.Vocabulary`.
        source: the family, a key of :data:`.families.FAMILIES`: ``awd-lstm``, ``huthlab-mts``,
            ``fastai-awd-lstm``, ``word-language-model``.
        unk_token, eos_token: the words for unknown words and line ends (default: detected,
            :func:`.vocabulary.tokenizer_for_vocabulary`).
        tokenizer_convention: how the tokenizer splits raw text (``whitespace``, the default,
            is exactly the originals' ``line.split()``; ``wikitext``/``ptb`` also split raw text
            the way those corpora were made).
        config_overrides: ``MTLSTMConfig`` fields to set (e.g. dropouts for further training);
            the architecture fields come from the weights and cannot be overridden.

    Returns:
        A :class:`Conversion`: the model (eval mode, float32), the tokenizer and the record.

    Raises:
        FileNotFoundError: the weights file or the vocabulary is missing.
        ValueError: a full pickle (:class:`.weights.FullPickleError`), another architecture, a
            missing tensor (e.g. the decoder), sizes that do not fit together, a vocabulary whose
            size differs from the embedding's rows, missing special tokens, a bad override.
    """
    if source not in FAMILIES:
        raise ValueError(f"--from must be one of {sorted(FAMILIES)}, got {source!r}")
    weights_path = Path(weights).expanduser()
    parsed = parse_state_dict(read_state_dict(weights_path, source), source)
    where = f"{str(weights_path)!r}"
    vocabulary = vocab if isinstance(vocab, Vocabulary) else read_vocabulary(vocab)
    if len(vocabulary) != parsed.vocab_size:
        raise ValueError(
            f"vocabulary size mismatch: {vocabulary.source} has {len(vocabulary):,} words but the embedding in {where} has "
            f"{parsed.vocab_size:,} rows; expected the word list the model was trained with ({parsed.vocab_size:,} words)"
        )
    tokenizer = tokenizer_for_vocabulary(vocabulary, unk_token, eos_token, tokenizer_convention)
    if len(tokenizer) not in (parsed.vocab_size, parsed.vocab_size + 1):  # cannot happen: one id per word (+ <pad>)
        raise ValueError(f"the tokenizer has {len(tokenizer)} entries, the embedding {parsed.vocab_size} rows")
    pad_added = len(tokenizer) == parsed.vocab_size + 1
    layer_timescales, frozen = _timescales(parsed)

    overrides = dict(config_overrides or {})
    architecture = {
        "vocab_size",
        "embedding_size",
        "hidden_sizes",
        "tie_word_embeddings",
        "timescale_schedules",
        "cell_types",
    }
    clash = sorted(architecture & set(overrides))
    if clash:
        raise ValueError(f"config overrides {clash} are read from the weights and cannot be set")
    settings = {
        **FAMILY_TRAINING_DEFAULTS[source],
        "frozen_biases": frozen,
        **overrides,
    }
    config = MTLSTMConfig(
        vocab_size=len(tokenizer),
        embedding_size=parsed.embedding_size,
        hidden_sizes=parsed.hidden_sizes,
        tie_word_embeddings=parsed.tied,
        timescale_schedules=[layer.schedule for layer in layer_timescales],
        vocab_fingerprint=vocabulary_fingerprint(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **settings,
    )
    state = state_dict_for_model(parsed, config)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the checkpoint
        model = MTLSTMForCausalLM(config)
    model.load_state_dict(state, strict=True, assign=True)
    if parsed.tied:
        model.tie_weights()
    unset = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    untied = parsed.tied and model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    if unset or untied:  # a bug, not bad input
        raise RuntimeError(
            f"conversion left tensors {unset} unset" if unset else "the converted output weights are not tied"
        )
    model.eval()

    unk_id = unknown_word_id(tokenizer)
    assert unk_id is not None  # tokenizer_for_vocabulary always has an unknown word (or raises)
    notes: list[str] = [*parsed.notes, *vocabulary.notes] + (
        [
            f"the tokenizer pads with {tokenizer.pad_token!r}, added as id {tokenizer.pad_token_id} (the source has no "
            f"pad token): the model has one row more than the source, whose probability is 0"
        ]
        if pad_added
        else []
    )
    record = {
        "format": "mtlstm_hf.convert/1",
        "source": source,
        "source_description": FAMILIES[source].description,
        "weights": str(weights_path),
        "weights_sha256": _sha256(weights_path),
        "num_parameters": parsed.num_parameters(),
        "vocab_size": parsed.vocab_size,
        "embedding_size": parsed.embedding_size,
        "hidden_sizes": parsed.hidden_sizes,
        "tie_word_embeddings": parsed.tied,
        "frozen_biases": frozen,
        "layers": [
            {
                "assigned_timescales": layer.assigned,
                "description": layer.description,
                **(
                    {
                        "min_timescale": min(layer.schedule["timescales"]),
                        "max_timescale": max(layer.schedule["timescales"]),
                    }
                    if layer.assigned
                    else {}
                ),
            }
            for layer in layer_timescales
        ],
        "vocabulary": {
            "source": vocabulary.source,
            "size": len(vocabulary),
            "unk_token": tokenizer.convert_ids_to_tokens(unk_id),
            "unk_token_id": unk_id,
            "eos_token": tokenizer.eos_token,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id,
            "pad_token_added": pad_added,
            "fingerprint": config.vocab_fingerprint,
        },
        "notes": notes,
    }
    if source in ("awd-lstm", "huthlab-mts") and parsed.vocab_size > 75_000:
        notes.append(
            "awd-lstm-lm trains vocabularies above 75,000 words with a split softmax whose tail clusters live in the "
            "criterion, not in the model: if this one was, the converted full softmax gives other probabilities"
        )
    return Conversion(model, tokenizer, record)


def convert_checkpoint(
    weights: PathOrStr,
    vocab: PathOrStr | Vocabulary,
    output_dir: PathOrStr,
    source: str,
    *,
    overwrite: bool = False,
    **options: Any,
) -> Conversion:
    """Convert a checkpoint and write the model folder ``output_dir`` in one piece.

    Args:
        weights, vocab, source, options: as :func:`convert_model` (``unk_token``, ``eos_token``,
            ``tokenizer_convention``, ``config_overrides``).
        output_dir: the folder to write; it must not exist or be empty, unless ``overwrite``
            (then a complete old folder is replaced only once the new one is complete).

    Returns:
        The :class:`Conversion` (its model and tokenizer are what was saved).

    Raises:
        FileExistsError: ``output_dir`` holds files and ``overwrite`` is false.
        NotADirectoryError: ``output_dir`` is a file.
        FileNotFoundError, ValueError: as :func:`convert_model`; nothing is written then.
        OSError: writing failed (disk full, permissions); the temporary folder is removed.
    """
    from ..data.tokenizer_files import save_tokenizer
    from ..files import replace_directory, write_failure_cause
    from ..weight_digests import record_weight_digests

    output = Path(output_dir).expanduser()
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"OUTPUT_DIR {str(output)!r} is a file; a folder is needed")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(
            f"OUTPUT_DIR {str(output)!r} exists and is not empty; choose another folder or pass --overwrite"
        )
    conversion = convert_model(weights, vocab, source, **options)

    def build(folder: Path) -> None:
        with no_transformers_progress_bar():
            conversion.model.save_pretrained(str(folder))
        record_weight_digests(folder)  # checked when the library's commands read the folder
        save_tokenizer(conversion.tokenizer, folder)
        (folder / CONVERSION_FILE).write_text(json.dumps(conversion.record, indent=2) + "\n", encoding="utf-8")

    existing = next(parent for parent in (output, *output.parents) if parent.exists())
    try:
        try:
            replace_directory(build, output)
        except Exception as error:  # torch's / safetensors' own write errors: an OSError naming the cause
            cause = None if isinstance(error, OSError) else write_failure_cause(error, output)
            if cause is None:
                raise
            raise OSError(
                cause[1] or errno.EIO, f"writing the converted model failed: {cause[0]}", str(output)
            ) from error
    except BaseException:
        for parent in output.parents:  # folders created above OUTPUT_DIR for it: removed when empty
            if len(parent.parts) <= len(existing.parts):
                break
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    return conversion
