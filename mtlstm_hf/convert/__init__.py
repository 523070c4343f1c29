"""Bringing existing LSTM language models in: the AWD-LSTM family as mtlstm checkpoints.

Sources (``--from``): salesforce/awd-lstm-lm (``awd-lstm``), the multi-timescale models of
HuthLab/multi-timescale-LSTM-LMs (``huthlab-mts``), fastai's ``AWD_LSTM`` language models
(``fastai-awd-lstm``, ULMFiT) and PyTorch's ``word_language_model`` example with an LSTM
(``word-language-model``). A converted folder loads with ``AutoModelForCausalLM`` /
``AutoTokenizer`` (with this package, or ``trust_remote_code=True`` without it), and
``mtlstm-eval`` / ``mtlstm-analyze`` run on it.

* :func:`convert_checkpoint` (command line ``mtlstm-convert --from FAMILY WEIGHTS --vocab VOCAB
  OUTPUT_DIR``) writes the folder; :func:`convert_model` converts in memory.
* :mod:`.weights`: safe reading (state_dict or safetensors; a full pickle is refused with the
  one-line export, :data:`.sources.EXPORT_HINTS`). :mod:`.families`: key layouts and shape checks.
  :mod:`.assigned`: assigned timescales in the biases. :mod:`.vocabulary`: word lists and the
  tokenizer. :mod:`.cli`: the command.

Sources of the layouts: salesforce/awd-lstm-lm ``model.py``/``weight_drop.py``/``data.py``,
HuthLab/multi-timescale-LSTM-LMs ``model_mts.py``, fastai ``text/models/awdlstm.py`` and
``core.py``, pytorch/examples ``word_language_model/model.py``/``data.py``.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "CONVERSION_FILE": ".converter",
    "Conversion": ".converter",
    "convert_checkpoint": ".converter",
    "convert_model": ".converter",
    "state_dict_for_model": ".converter",
    "FAMILIES": ".families",
    "LSTMLanguageModelWeights": ".families",
    "parse_state_dict": ".families",
    "EXPORT_HINTS": ".sources",
    "SOURCES": ".sources",
    "FullPickleError": ".weights",
    "read_state_dict": ".weights",
    "Vocabulary": ".vocabulary",
    "corpus_vocabulary": ".vocabulary",
    "read_vocabulary": ".vocabulary",
    "read_word_list": ".vocabulary",
    "tokenizer_for_vocabulary": ".vocabulary",
    "detect_layer_timescales": ".assigned",
    "exact_explicit_timescales": ".assigned",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
