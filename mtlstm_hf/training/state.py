"""What a training run counts, decides from its validation history, and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


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
