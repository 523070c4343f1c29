"""Timescale analyses of other recurrent language models: one small adapter per architecture.

Every analysis that reads timescales (the estimate ``T = -1 / ln mean(a)``, its fits, the ablation
of channels by timescale with per-frequency-bin ratios, the mutual-information comparison) reaches
the model through a :class:`~.base.RecurrentAdapter`, which reads the per-step retention ``a_t`` of
every unit from the model's own parameters and from the inputs of its own modules (forward hooks),
carries the state across windows, and zeroes channels for an ablation:

============================== =============== ==================================================
class                          model_type      unit and retention ``a_t``
============================== =============== ==================================================
``MTLSTMForCausalLM``          mtlstm          LSTM unit: the forget gate ``f_t``
``MambaForCausalLM``           mamba           (channel, state): ``exp(dt_t[d] A[d, n])``
``Mamba2ForCausalLM``          mamba2          head: ``exp(dt_t[h] A_h)``
``RwkvForCausalLM``            rwkv            channel: ``exp(-exp(time_decay[c]))``
``RecurrentGemmaForCausalLM``  recurrent_gemma RG-LRU channel: ``sigmoid(-recurrent_param[c])^(8 r_t[c])``
``xLSTMForCausalLM``           xlstm           mLSTM head: the forget gate ``sigmoid(f_t)``
============================== =============== ==================================================

(each module's docstring gives the formula with its transformers source). :mod:`.registry` maps
``config.model_type`` to the adapter (a new architecture is one module and one
:func:`~.registry.register_architecture` call); :mod:`.loading` loads a folder or Hub id of any of
them with its own tokenizer. Attributes are imported on first use (PEP 562): ``mtlstm-analyze
--help`` imports no torch.
"""

from __future__ import annotations

from ...lazy import lazy_exports

_EXPORTS = {
    "ChannelAblation": ".base",
    "RecurrentAdapter": ".base",
    "RecurrentLayer": ".base",
    "ARCHITECTURE_REGISTRY": ".registry",
    "Architecture": ".registry",
    "adapter_for": ".registry",
    "architecture_of": ".registry",
    "register_architecture": ".registry",
    "supported_architectures": ".registry",
    "unregister_architecture": ".registry",
    "load_recurrent_checkpoint": ".loading",
    "local_folder": ".loading",
    "MTLSTMAdapter": ".mtlstm",
    "MambaAdapter": ".mamba",
    "Mamba2Adapter": ".mamba2",
    "RwkvAdapter": ".rwkv",
    "RecurrentGemmaAdapter": ".recurrent_gemma",
    "XlstmAdapter": ".xlstm",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
