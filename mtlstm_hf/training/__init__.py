"""Training multi-timescale LSTM language models with ``accelerate``.

The library loop (:func:`train`, :class:`LanguageModelTrainer`) implements the AWD-LSTM
recipe used by Mahto et al. (2021): SGD with the non-monotonically triggered switch to
averaged SGD, gradient clipping, weight decay, AR/TAR (from the model config), variable-length
BPTT windows with the learning rate scaled by ``seq_len / bptt``, and the recurrent state
carried across windows. AdamW with a ``transformers`` schedule is the alternative. Runs are
exactly resumable from atomic checkpoints and run unchanged on several processes.

Typical use::

    from mtlstm_hf.training import TrainingSettings, train

    result = train(TrainingSettings(preset="small", epochs=18, output_dir="outputs/run"))
    print(result.best_val_perplexity, result.best_model_dir)   # AutoModelForCausalLM-loadable

The command line is ``mtlstm-train`` (:mod:`mtlstm_hf.training.cli`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "CHECKPOINT_FORMAT": ".checkpoint",
    "OutputWriteError": ".checkpoint",
    "repair_interrupted_replacement": ".checkpoint",
    "resolve_checkpoint": ".checkpoint",  # deprecated name of resolve_resume_checkpoint
    "resolve_resume_checkpoint": ".checkpoint",
    "training_corpus": ".checkpoint",
    "BOOKKEEPING_FIELDS": ".config",
    "DEFAULT_LEARNING_RATES": ".config",
    "MODEL_PRESETS": ".config",
    "OPTIMIZER_ONLY_FIELDS": ".config",
    "OPTIMIZERS": ".config",
    "TrainingSettings": ".config",
    "TrainingConfig": ".config",  # deprecated name of TrainingSettings
    "LanguageModelTrainer": ".loop",
    "StepCallback": ".loop",
    "train": ".loop",
    "build_model_config": ".preparation",
    "end_processes": ".preparation",
    "finish_accelerator": ".preparation",
    "make_accelerator": ".preparation",
    "ParameterAverage": ".averaging",
    "parameter_groups": ".optimizer_groups",
    "timescale_bias_names": ".optimizer_groups",
    "trainer_optimizer_cls_and_kwargs": ".optimizer_groups",
    "NonFiniteLossError": ".state",
    "TrainingProgress": ".state",
    "TrainingResult": ".state",
    "nonmonotone_trigger": ".state",
    "perplexity": ".state",
    "JSONLinesTracker": ".tracking",
    "logged_test_perplexity": ".tracking",
    "read_metrics": ".tracking",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
