"""The multi-timescale LSTM language model.

Layout, from pure math up to the Hugging Face wrapper (every file here travels to the
Hub as remote code and imports only torch, transformers and its neighbours):

- ``timescales.py``: timescale <-> forget-bias theory, inverse gamma, per-layer schedules;
- ``recurrences.py``: sequence recurrences as pure functions (fused LSTM, padding alignment);
- ``layers.py``: torch modules (the LSTM layer with frozen timescale biases, AWD dropouts);
- ``state.py``: the recurrent state passed as ``cache`` (``past_key_values`` before transformers 5.24);
- ``configuration_mtlstm.py`` / ``modeling_mtlstm.py``: the transformers config and models.
"""

from .configuration_mtlstm import PRESETS, REGULARIZATION_OFF, MTLSTMConfig
from .modeling_mtlstm import (
    MTLSTMCausalLMOutput,
    MTLSTMForCausalLM,
    MTLSTMModel,
    MTLSTMModelOutput,
    MTLSTMPreTrainedModel,
)
from .recurrences import UnsupportedPrecisionError
from .state import MTLSTMState

__all__ = [
    "PRESETS",
    "REGULARIZATION_OFF",
    "MTLSTMCausalLMOutput",
    "MTLSTMConfig",
    "MTLSTMForCausalLM",
    "MTLSTMModel",
    "MTLSTMModelOutput",
    "MTLSTMPreTrainedModel",
    "MTLSTMState",
    "UnsupportedPrecisionError",
]
