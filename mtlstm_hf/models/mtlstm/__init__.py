"""The multi-timescale LSTM language model.

Layout, from pure math up to the Hugging Face wrapper (every file here travels to the
Hub as remote code and imports only torch, transformers and its neighbours):

- ``timescales.py``: timescale <-> forget-bias theory, inverse gamma, per-layer schedules;
- ``kernel_lstm.py``, ``kernel_variants.py``, ``kernel_scan.py``: the fast kernels, pure functions (fused LSTM and
  padding alignment, the cell variants, the parallel linear scan); their naive references, which do
  not travel to the Hub, are in ``naive.py``;
- ``layers.py``: torch modules (the LSTM layer with frozen timescale biases, AWD dropouts);
- ``state.py``: the recurrent state passed as ``cache`` (``past_key_values`` before transformers 5.24);
- ``presets.py``: named architectures, plain data;
- ``configuration_mtlstm.py`` / ``modeling_mtlstm.py``: the transformers config and models.

Attributes are imported when first read, so ``mtlstm_hf.models.mtlstm.presets`` costs nothing
more than itself; importing ``modeling_mtlstm`` as part of the installed package registers
``model_type="mtlstm"`` with the Auto classes.
"""

from ...lazy import lazy_exports

_EXPORTS = {
    "PRESETS": ".presets",
    "REGULARIZATION_OFF": ".presets",
    "MTLSTMConfig": ".configuration_mtlstm",
    "MTLSTMCausalLMOutput": ".modeling_mtlstm",
    "MTLSTMForCausalLM": ".modeling_mtlstm",
    "MTLSTMForTokenClassification": ".modeling_mtlstm",
    "MTLSTMModel": ".modeling_mtlstm",
    "MTLSTMModelOutput": ".modeling_mtlstm",
    "MTLSTMPreTrainedModel": ".modeling_mtlstm",
    "UnsupportedPrecisionError": ".kernel_lstm",
    "MTLSTMState": ".state",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
