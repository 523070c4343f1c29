"""Named architectures of the multi-timescale LSTM LM (``MTLSTMConfig.from_preset``), as plain data.

Kept apart from the configuration class so that command lines can list the presets without
importing torch (``mtlstm-train --help`` in about a second, most of it transformers' lazy import for its argument parser). Each preset
is a dict of :class:`~configuration_mtlstm.MTLSTMConfig` fields; this file imports nothing.
"""

from __future__ import annotations

from typing import Any

DROPOUT_FIELDS: tuple[str, ...] = (
    "embedding_dropout",
    "input_dropout",
    "hidden_dropout",
    "output_dropout",
    "weight_drop",
)

REGULARIZATION_OFF: dict[str, float] = {
    field: 0.0 for field in (*DROPOUT_FIELDS, "activation_regularization", "temporal_activation_regularization")
}
"""Field overrides that switch every AWD-LSTM regulariser off (dropouts, DropConnect, AR, TAR)."""

# The reference architecture (Mahto et al. 2021; HuthLab/multi-timescale-LSTM-LMs).
_PAPER_ARCHITECTURE: dict[str, Any] = {
    "vocab_size": 10000,
    "embedding_size": 400,
    "hidden_sizes": [1150, 1150, 400],
    "tie_word_embeddings": True,
    "timescale_schedules": [
        {"type": "fixed", "values": [3.0, 4.0]},
        {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "endpoint_free"},
        {"type": "none"},
    ],
    "frozen_biases": "forget_input",
    "embedding_dropout": 0.1,
    "weight_drop": 0.5,
    "output_dropout": 0.4,
    "activation_regularization": 2.0,
    "temporal_activation_regularization": 1.0,
}
_PTB_DROPOUTS = {"input_dropout": 0.4, "hidden_dropout": 0.25}
_WIKITEXT2_DROPOUTS = {"input_dropout": 0.65, "hidden_dropout": 0.2, "vocab_size": 33278}
_NO_TIMESCALES = {"timescale_schedules": None}
# Exactly the reference code's multi-timescale language model (HuthLab/multi-timescale-LSTM-LMs):
# its layer-2 grid includes q = 1, so the last unit has T = 0, and it freezes all four gate
# biases of layers 1-2 (cell and output biases stay at their random initialisation).
_REFERENCE_TIMESCALES = {
    "timescale_schedules": [
        {"type": "fixed", "values": [3.0, 4.0]},
        {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "reference"},
        {"type": "none"},
    ],
    "frozen_biases": "all",
}

# A CPU-sized version of the paper's network (the ``mtlstm-train`` default): the same
# schedules and tying, smaller layers, WikiText-2 style dropouts made a little lighter.
_SMALL_ARCHITECTURE: dict[str, Any] = {
    **{key: value for key, value in _PAPER_ARCHITECTURE.items() if key != "vocab_size"},
    "embedding_size": 200,
    "hidden_sizes": [400, 400, 200],
    "input_dropout": 0.4,
    "hidden_dropout": 0.2,
    "output_dropout": 0.3,
    "weight_drop": 0.3,
}

PRESETS: dict[str, dict[str, Any]] = {
    # The ``mtlstm-train`` default: trains on the embedded WikiText-2 sample in minutes.
    "small": _SMALL_ARCHITECTURE,
    "small-baseline": {**_SMALL_ARCHITECTURE, "timescale_schedules": None},
    # Seconds-scale smoke tests.
    "tiny": {
        "embedding_size": 16,
        "hidden_sizes": [32, 16],
        "tie_word_embeddings": True,
        "timescale_schedules": [{"type": "fixed", "values": [3.0, 4.0]}, {"type": "none"}],
        "embedding_dropout": 0.0,
        "input_dropout": 0.1,
        "hidden_dropout": 0.1,
        "output_dropout": 0.1,
        "weight_drop": 0.0,
        "activation_regularization": 2.0,
        "temporal_activation_regularization": 1.0,
    },
    # Multi-timescale model with the PTB recipe's dropouts (the class defaults).
    "paper": {**_PAPER_ARCHITECTURE, **_PTB_DROPOUTS},
    # The same network with no timescales imposed: the AWD-LSTM baseline.
    "paper-baseline": {**_PAPER_ARCHITECTURE, **_PTB_DROPOUTS, **_NO_TIMESCALES},
    "paper-wikitext2": {**_PAPER_ARCHITECTURE, **_WIKITEXT2_DROPOUTS},
    "paper-wikitext2-baseline": {**_PAPER_ARCHITECTURE, **_WIKITEXT2_DROPOUTS, **_NO_TIMESCALES},
    # The reference code's model exactly (see _REFERENCE_TIMESCALES and MTLSTMConfig.from_preset).
    "paper-reference": {**_PAPER_ARCHITECTURE, **_PTB_DROPOUTS, **_REFERENCE_TIMESCALES},
    "paper-wikitext2-reference": {**_PAPER_ARCHITECTURE, **_WIKITEXT2_DROPOUTS, **_REFERENCE_TIMESCALES},
}
"""Named configurations; see :meth:`MTLSTMConfig.from_preset`."""
