"""What a training run counts, decides from its validation history, and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the record names them; importing them here would import torch and accelerate
    from accelerate import Accelerator

    from ..data.batching import BPTTIterator
    from ..models.mtlstm import MTLSTMForCausalLM, MTLSTMState
    from .averaging import ParameterAverage
    from .config import TrainingSettings


class NonFiniteLossError(RuntimeError):
    """The training loss or gradient norm became NaN or infinite; the parameters were not updated."""


@dataclass
class TrainingProgress:
    """Counters and history of a run (JSON in every checkpoint's ``training_state.json``).

    Attributes:
        epoch: completed epochs.
        global_step: optimizer steps taken.
        tokens_seen: target tokens trained on, all processes together.
        val_history: epoch-end validation losses (nats/token), the non-monotone trigger's input.
        best_val_loss / best_val_step: the best epoch-end validation loss and when
            (``best_model/``); a validation at a step or time budget stop does not count, so a
            run stopped by a budget and resumed ends like one that was never stopped.
        last_val_loss / last_val_step: the latest validation (epoch end or budget stop).
        asgd_active / asgd_start_step: averaged SGD switched on, and at which step.
        train_seconds: wall time spent training, summed over resumed sessions.
        scaler_skipped_steps: steps the fp16 gradient scaler skipped (their gradients overflowed
            float16; the parameters did not change); 0 without fp16.
        replay_previous_lr_scale: with ``replay_reference_loop`` under averaged SGD, the learning
            rate scale of the last step, which the next one uses (``torch.optim.ASGD``'s ``eta``).
    """

    epoch: int = 0
    global_step: int = 0
    tokens_seen: int = 0
    val_history: list[float] = field(default_factory=list)
    best_val_loss: float | None = None
    best_val_step: int | None = None
    last_val_loss: float | None = None
    last_val_step: int | None = None
    asgd_active: bool = False
    asgd_start_step: int | None = None
    train_seconds: float = 0.0
    scaler_skipped_steps: int = 0
    replay_previous_lr_scale: float | None = None


def _saved_in(*files: str) -> Any:
    """A :class:`TrainerState` field held by ``files`` of a checkpoint folder (patterns: ``<rank>``
    is the process index, ``*`` any text, ``NAME#key`` a key of the JSON file ``NAME``)."""
    return field(metadata={"files": files})


@dataclass(eq=False)
class TrainerState:
    """Everything a checkpoint of a run saves and restores, in one place: the fields are the
    run's state, and each one's ``metadata["files"]`` names the files of a checkpoint folder
    (``checkpoints/step-XXXXXXXX/``, :mod:`.checkpoint`) that hold it. The trainer
    (:class:`~mtlstm_hf.training.LanguageModelTrainer`) keeps it as ``trainer.state`` (its
    attributes of the same names read and write these fields); the checkpoint functions
    (``save_checkpoint``, ``restore_from_checkpoint``, ``save_best_model``, ``start_run_folder``)
    take it and touch nothing else of the trainer.

    Saved by ``accelerator.save_state`` (restored, in place, by ``accelerator.load_state``):
    ``unwrapped_model``, ``optimizer``, ``scaler``, the three registered objects (``iterator``,
    ``averaged_model``, ``scheduler``: :attr:`checkpointed_objects`) and the process-wide random
    number generators. Saved and restored by :mod:`.checkpoint` itself: ``carried_state``,
    ``progress``. Saved for the reader, not read back on resume: ``config`` (a resumed run's
    own configuration must agree with it), the model's configuration and modelling files; the
    ``tokenizer`` is read back by the data preparation (:func:`~.preparation.prepare_data`).

    Attributes:
        config: the run's settings; ``training_config.json``.
        accelerator: runs the processes and saves and loads what it prepared. Holds the process-wide
            random number generators (Python's, NumPy's, torch's and CUDA's), in
            ``random_states_<rank>.pkl`` (one per process), and the number of processes
            (``training_state.json``'s ``num_processes``, which a resume must match).
        unwrapped_model: the model trained (without the accelerator's wrapper, e.g. DDP):
            ``model.safetensors`` (parameters, with ``weights_sha256.json``, the digests of every
            tensor file of the folder), ``config.json`` and the modelling files (``*.py``), as
            ``save_pretrained`` writes them.
        optimizer: the optimizer as the accelerator prepared it (SGD or AdamW); ``optimizer.bin``.
        scaler: the fp16 gradient scaler (the accelerator's, ``None`` without fp16); ``scaler.pt``.
        iterator: the BPTT windows of the training stream: position in the epoch and the random
            generator of the window lengths; ``custom_checkpoint_0.pkl``.
        averaged_model: averaged SGD's running mean of the parameters (``awd`` only, else ``None``);
            ``custom_checkpoint_1.pkl``.
        scheduler: AdamW's learning-rate schedule (``adamw`` only, else ``None``);
            ``custom_checkpoint_1.pkl``.
        tokenizer: the run's tokenizer; the files its ``save_pretrained`` writes.
        carried_state: this process's recurrent state carried into the next window (``None`` at an
            epoch start); ``rank_state_<rank>.pt`` (one per process).
        progress: the counters and validation history (:class:`TrainingProgress`);
            ``training_state.json``'s ``progress``.
        output_dir: the run folder; checkpoints go into its ``checkpoints/`` (not saved: where).
        last_checkpoint: the newest checkpoint this run wrote or resumed from (not saved: set
            by :func:`~.checkpoint.save_checkpoint` and :func:`~.checkpoint.restore_from_checkpoint`).
    """

    config: TrainingSettings = _saved_in("training_config.json")
    accelerator: Accelerator = _saved_in("random_states_<rank>.pkl", "training_state.json#num_processes")
    unwrapped_model: MTLSTMForCausalLM = _saved_in("model.safetensors", "weights_sha256.json", "config.json", "*.py")
    optimizer: Any = _saved_in("optimizer.bin")
    scaler: Any = _saved_in("scaler.pt")
    iterator: BPTTIterator = _saved_in("custom_checkpoint_0.pkl")
    averaged_model: ParameterAverage | None = _saved_in("custom_checkpoint_1.pkl")
    scheduler: Any = _saved_in("custom_checkpoint_1.pkl")
    tokenizer: Any = _saved_in("tokenizer*.json", "special_tokens_map.json", "vocab*", "merges.txt")
    carried_state: MTLSTMState | None = _saved_in("rank_state_<rank>.pt")
    progress: TrainingProgress = _saved_in("training_state.json#progress")
    output_dir: Path = _saved_in()
    last_checkpoint: Path | None = _saved_in()

    @property
    def checkpointed_objects(self) -> list[Any]:
        """The objects registered with the accelerator for checkpointing, in the order of their
        files (``custom_checkpoint_<i>.pkl``): the iterator, then the averaged model or the schedule."""
        return [state for state in (self.iterator, self.averaged_model, self.scheduler) if state is not None]


@dataclass
class StepResult:
    """What one optimizer step did (:meth:`~mtlstm_hf.training.LanguageModelTrainer.train_step`),
    read from the device once, after the step.

    Attributes:
        loss: the training objective, mean over the step's windows (nats/token, this process):
            ``lm_loss + ar_loss + tar_loss``.
        lm_loss: its cross-entropy part (what the training perplexity is computed from).
        ar_loss, tar_loss: its activation and temporal activation regularisation parts (0.0 when off).
        window_lengths: tokens in each window.
        drawn_lengths: the lengths drawn for the windows; they differ from ``window_lengths`` only
            for the last window of an epoch, cut at the end of the data.
        learning_rate: the learning rate the step used (the first parameter group's, after the
            ``seq_len / bptt`` scaling).
        grad_norm: the global gradient norm before clipping.
        skipped: the fp16 gradient scaler skipped the step (its gradients overflowed; nothing changed).
    """

    loss: float
    lm_loss: float
    ar_loss: float
    tar_loss: float
    window_lengths: list[int]
    drawn_lengths: list[int]
    learning_rate: float
    grad_norm: float
    skipped: bool = False


@dataclass
class TrainingResult:
    """What :func:`~mtlstm_hf.training.train` returns.

    Attributes:
        status: ``completed`` (all epochs), ``max_steps``, ``time_limit``, ``interrupted``
            (SIGINT/SIGTERM) or ``stopped`` (a callback asked).
        best_val_perplexity / last_val_perplexity / test_perplexity: ``exp`` of the mean
            token cross-entropy (``None`` when not evaluated).
        best_model_dir: loadable with ``AutoModelForCausalLM.from_pretrained`` (``None`` if
            no evaluation happened yet).
        last_checkpoint: resume from here (or from ``output_dir``).
        planned_steps: optimizer steps the budget of epochs / ``max_steps`` asks for (a
            ``time_limit`` or ``interrupted`` run did fewer: ``progress.global_step``).
        eval_batch_size: rows of the validation and test evaluations (each row scored from
            a zero state; ``mtlstm-eval`` defaults to 1 row, the state carried throughout).
    """

    status: str
    progress: TrainingProgress
    output_dir: Path
    best_model_dir: Path | None
    last_checkpoint: Path | None
    best_val_perplexity: float | None
    last_val_perplexity: float | None
    test_perplexity: float | None
    planned_steps: int | None = None
    eval_batch_size: int | None = None


from ..evaluation.perplexity import perplexity  # noqa: E402,F401 (one formula, importable here too)


def nonmonotone_trigger(history: Sequence[float], val_loss: float, nonmono: int) -> bool:
    """AWD-LSTM's non-monotone trigger for the switch to averaged SGD (Merity et al. 2018).

    True when there are more than ``nonmono`` earlier checks and ``val_loss`` is worse than the
    best of them all except the last ``nonmono``: the loss has not beaten that old best within
    ``nonmono`` checks. (``len(history) > nonmono and val_loss > min(history[:-nonmono])``.)

    Args:
        history: earlier validation losses, oldest first (not including ``val_loss``).
        val_loss: the new validation loss.
        nonmono: the window, ``>= 1``.
    """
    return len(history) > nonmono and val_loss > min(history[:-nonmono])
