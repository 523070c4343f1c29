"""Training multi-timescale LSTM language models with ``accelerate``.

The library loop (:func:`train`, :class:`LanguageModelTrainer`) implements the AWD-LSTM
recipe used by Mahto et al. (2021): SGD with the non-monotonically triggered switch to
averaged SGD, gradient clipping, weight decay, AR/TAR (from the model config), variable-length
BPTT windows with the learning rate scaled by ``seq_len / bptt``, and the recurrent state
carried across windows. AdamW with a ``transformers`` schedule is the alternative. Runs are
exactly resumable from atomic checkpoints and run unchanged on several processes.

Typical use::

    from mtlstm_hf.training import TrainingConfig, train

    result = train(TrainingConfig(preset="small", max_minutes=4, output_dir="outputs/run"))
    print(result.best_val_perplexity, result.best_model_dir)   # AutoModelForCausalLM-loadable

The command line is ``mtlstm-train`` (:mod:`mtlstm_hf.training.cli`).
"""

from .checkpoint import CHECKPOINT_FORMAT, resolve_checkpoint
from .config import MODEL_PRESETS, OPTIMIZERS, TrainingConfig
from .loop import (
    LanguageModelTrainer,
    NonFiniteLossError,
    PhaseTimer,
    TrainingProgress,
    TrainingResult,
    build_model_config,
    make_accelerator,
    nonmonotone_trigger,
    perplexity,
    train,
)
from .tracking import JSONLinesTracker, read_metrics

__all__ = [
    "CHECKPOINT_FORMAT",
    "JSONLinesTracker",
    "LanguageModelTrainer",
    "MODEL_PRESETS",
    "NonFiniteLossError",
    "OPTIMIZERS",
    "PhaseTimer",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "build_model_config",
    "make_accelerator",
    "nonmonotone_trigger",
    "perplexity",
    "read_metrics",
    "resolve_checkpoint",
    "train",
]
