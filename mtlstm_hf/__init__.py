"""mtlstm_hf: multi-timescale LSTM language models for Hugging Face transformers.

Importing the package registers the model with the Auto classes, so
``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` resolve ``model_type="mtlstm"``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .models.mtlstm import (
    PRESETS,
    REGULARIZATION_OFF,
    MTLSTMCausalLMOutput,
    MTLSTMConfig,
    MTLSTMForCausalLM,
    MTLSTMModel,
    MTLSTMModelOutput,
    MTLSTMPreTrainedModel,
    MTLSTMState,
)

AutoConfig.register(MTLSTMConfig.model_type, MTLSTMConfig, exist_ok=True)
AutoModel.register(MTLSTMConfig, MTLSTMModel, exist_ok=True)
AutoModelForCausalLM.register(MTLSTMConfig, MTLSTMForCausalLM, exist_ok=True)

__version__ = "0.1.0"

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
    "__version__",
]
