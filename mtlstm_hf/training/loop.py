"""The library training loop: AWD-LSTM recipe (or AdamW) on ``accelerate``, exactly resumable.

One optimizer step (:meth:`LanguageModelTrainer.train_step`; Merity et al. 2018, as in Mahto
et al. 2021's reference code):

1. the next ``gradient_accumulation_steps`` BPTT windows ``(B, L)`` of this process's rows of
   the training stream (AWD ``batchify`` + variable window lengths);
2. each window forward from the carried recurrent state (detached: truncated BPTT); the model's
   ``loss`` is the cross-entropy plus AR and TAR in training mode; backward ``loss / windows``
   (gradients all-reduced across processes on the last window);
3. clip the global gradient norm (0.25); a non-finite norm or loss stops training here,
   before the parameters change, with :class:`NonFiniteLossError` (under ``fp16`` mixed
   precision a non-finite norm with a finite loss is the gradient scaler's overflow step,
   which the scaler skips, as it is meant to);
4. SGD (or AdamW) step with the learning rate scaled by ``mean(L) / bptt``;
5. under averaged SGD, update the running mean of the parameters.

**Host reads.** A step reads the device once: the loss and the gradient norm together, which
decide whether the step is taken and are what is logged (with several processes, the stop
decision's all-reduce adds one; under ``fp16`` the gradient scaler's own check of the gradients
adds one). The token ids are checked once per stream, not per window
(``check_values=False``), the averaged model counts on the CPU, nothing else waits for the GPU.

**Precision.** ``mixed_precision`` (``bf16``, or ``fp16`` with a gradient scaler on CUDA) runs
the output layer and the loss under autocast; the recurrences always run in float32
(:func:`mtlstm_hf.models.mtlstm.layers.recurrence_precision`). ``matmul_precision`` sets
TensorFloat-32 for the run (:func:`mtlstm_hf.devices.float32_precision`).

After each epoch: validation loss with the state carried over the whole stream
(:func:`mtlstm_hf.evaluation.token_log_probs`), the non-monotone trigger, the best model saved
with ``save_pretrained``, and a checkpoint.

**NT-ASGD.** The running mean is :class:`~.averaging.ParameterAverage` (PyTorch's
``AveragedModel`` without host reads: equal weights over the steps after the switch) while SGD keeps running: with ``lambd=0`` the update of AWD's
``torch.optim.ASGD`` *is* plain SGD, without two of its quirks (its step applies the previous
step's learning rate, breaking the ``seq_len / bptt`` scaling, and its average restarts at the
second step). Evaluation and the saved best model use the averaged parameters, as in AWD.

**Processes.** Process ``r`` of ``P`` takes rows ``[r B/P, (r+1) B/P)`` of the global batch and
the same window lengths (same seed); DDP averages the per-process mean gradients, so the update
is that of one process on all rows up to the order of the all-reduce (dropout masks differ).

**Exact resume.** Checkpoints between steps hold everything the next step depends on
(:mod:`.checkpoint`): what accelerate holds (parameters, optimizer, RNGs, and the registered
iterator, averaged model and schedule) and each process's carried state; the trainer keeps all of
it in one record, ``trainer.state`` (:class:`~.state.TrainerState`), which the checkpoint
functions save and restore. A run stopped anywhere
and resumed ends with the same weights and ``best_model/`` as one never stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.profiler import record_function

from ..data.batching import BPTTIterator
from ..devices import float32_precision
from ..evaluation import token_log_probs
from ..model_folder import load_model_strictly
from ..models.mtlstm import MTLSTMForCausalLM, MTLSTMState
from ..progress import no_transformers_progress_bar
from ..progress import progress as progress_bar
from . import checkpoint as ckpt
from .averaging import ParameterAverage
from .config import TrainingSettings
from .preparation import (
    build_model,
    build_optimizer,
    check_init_from,
    check_resume_and_output,
    check_token_streams,
    finish_accelerator,
    make_accelerator,
    planned_steps,
    prepare_data,
    require_precision_support,
)
from .state import (
    NonFiniteLossError,
    StepResult,
    TrainerState,
    TrainingProgress,
    TrainingResult,
    nonmonotone_trigger,
    perplexity,
)
from .stopping import StopRequests
from .tracking import TrainingMeter

StepCallback = Callable[["LanguageModelTrainer"], "bool | None"]
"""Called on every process after each optimizer step; returning True asks the run to stop
(checkpoint, then return with status ``"stopped"``), like SIGINT does. Benchmarks time steps
from here; ``torch.profiler`` sees the phases ``forward``, ``backward`` and ``optimizer``."""


@contextlib.contextmanager
def scaled_learning_rate(optimizer: torch.optim.Optimizer, scale: float) -> Iterator[None]:
    """Multiply every group's learning rate by ``scale`` for one ``optimizer.step()``."""
    base = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, base):
        group["lr"] = lr * scale
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, base):
            group["lr"] = lr


_Field = TypeVar("_Field")


class _InState(Generic[_Field]):
    """A trainer attribute that is the field of the same name of the trainer's ``state``
    (:class:`~.state.TrainerState`): one value, kept in one place. ``_InState[T]``: the field
    holds a ``T``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, trainer: None, owner: type | None = None) -> _InState[_Field]: ...
    @overload
    def __get__(self, trainer: LanguageModelTrainer, owner: type | None = None) -> _Field: ...
    def __get__(self, trainer: LanguageModelTrainer | None, owner: type | None = None) -> Any:
        return self if trainer is None else getattr(trainer.state, self.name)

    def __set__(self, trainer: LanguageModelTrainer, value: _Field) -> None:
        setattr(trainer.state, self.name, value)


class LanguageModelTrainer:
    """Trains an :class:`~mtlstm_hf.MTLSTMForCausalLM` on a token stream; see the module docstring.

    Construction loads and checks everything (data, tokenizer, model, checkpoint to resume)
    and writes nothing, so bad input fails before any file exists. :meth:`run` trains.

    Args:
        config: the run's settings.
        accelerator: default :func:`make_accelerator(config) <make_accelerator>`. Either way,
            call :func:`~.preparation.finish_accelerator` when done (closes the trackers, releases
            the prepared objects; the process group of a multi-process start stays up for the
            next run, see :func:`~.preparation.end_processes`); :func:`train` does it for the
            accelerator it makes.
        callbacks: see :data:`StepCallback`.

    Attributes:
        state: the run's state, everything a checkpoint saves and restores (:class:`~.state.TrainerState`,
            whose fields list which file of a checkpoint holds what); the trainer's attributes of the
            same names (``progress``, ``carried_state``, ``last_checkpoint``, ``unwrapped_model``,
            ``optimizer``, ...) are its fields. ``model`` is the model as the accelerator wrapped it.
    """

    def __init__(
        self, config: TrainingSettings, accelerator: Accelerator | None = None, callbacks: Sequence[StepCallback] = ()
    ) -> None:
        config.validate()
        accelerator = make_accelerator(config) if accelerator is None else accelerator
        self.callbacks = list(callbacks)
        self.test_loss: float | None = None
        self.last_grad_norm = math.nan
        self.drawn_lengths: list[int] = []  # of the windows next_windows() gave last
        self._dirty = True  # progress not yet in a checkpoint
        self._clock: float  # time.monotonic() when run() started or last counted the training time

        resume_dir = check_resume_and_output(config, accelerator.num_processes)
        check_init_from(config)  # before its tokenizer is read with the data
        data = prepare_data(config, accelerator, resume_dir)
        self.rows, self.valid_part, self.test_part = data.rows, data.valid_part, data.test_part
        set_seed(config.seed)  # model initialisation; a resumed run restores every RNG afterwards
        model = build_model(config, data.tokenizer, resume_dir)
        check_token_streams(model, {"training": self.rows, "validation": self.valid_part, "test": self.test_part})
        require_precision_support(model, config, accelerator)
        model.train()
        # Dropout from here on: one stream per process, or rows on different processes would
        # share masks (the model itself is the same everywhere: DDP broadcasts rank 0's weights).
        set_seed(config.seed + accelerator.process_index)
        optimizer, scheduler = build_optimizer(config, model, planned_steps(config, data.iterator))
        self.model, optimizer = accelerator.prepare(model, optimizer)  # self.model: the wrapped (e.g. DDP) model
        unwrapped_model: MTLSTMForCausalLM = accelerator.unwrap_model(self.model)
        output_dir = Path(config.output_dir).expanduser()
        # The run's state: everything a checkpoint saves and restores (TrainerState lists which file holds what).
        self.state = TrainerState(
            config=config,
            accelerator=accelerator,
            unwrapped_model=unwrapped_model,
            optimizer=optimizer,
            scaler=accelerator.scaler,
            iterator=data.iterator,
            averaged_model=ParameterAverage(unwrapped_model) if config.optimizer == "awd" else None,
            scheduler=scheduler,
            tokenizer=data.tokenizer,
            carried_state=None,
            progress=TrainingProgress(),
            output_dir=output_dir,
            last_checkpoint=None,
        )
        self.best_model_dir = output_dir / ckpt.BEST_MODEL_DIRNAME
        # What accelerate can hold survives a resume through it (a fixed order: the files are numbered).
        for registered in self.state.checkpointed_objects:
            accelerator.register_for_checkpointing(registered)
        if resume_dir is not None:
            ckpt.restore_from_checkpoint(self.state, resume_dir)
            self._dirty = False

    # The run's state lives in self.state; these names read and write its fields.
    config: _InState[TrainingSettings] = _InState()
    accelerator: _InState[Accelerator] = _InState()
    unwrapped_model: _InState[MTLSTMForCausalLM] = _InState()
    optimizer: _InState[torch.optim.Optimizer] = _InState()
    scaler: _InState[Any] = _InState()
    iterator: _InState[BPTTIterator] = _InState()
    averaged_model: _InState[ParameterAverage | None] = _InState()
    scheduler: _InState[Any] = _InState()
    tokenizer: _InState[Any] = _InState()
    carried_state: _InState[MTLSTMState | None] = _InState()
    progress: _InState[TrainingProgress] = _InState()
    output_dir: _InState[Path] = _InState()
    last_checkpoint: _InState[Path | None] = _InState()

    @property
    def checkpointed_objects(self) -> list[Any]:
        """The objects registered with the accelerator for checkpointing (:attr:`TrainerState.checkpointed_objects`)."""
        return self.state.checkpointed_objects

    def planned_steps(self) -> int:
        """Optimizer steps of the whole run: ``max_steps`` or epochs x (nominal) steps per epoch."""
        return planned_steps(self.config, self.iterator)

    # --- one optimizer step -----------------------------------------------------------------------

    def next_windows(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
        """Up to ``gradient_accumulation_steps`` windows ``(inputs, targets)``, and whether the epoch
        ended; the lengths drawn for them are in :attr:`drawn_lengths`."""
        windows, self.drawn_lengths = [], []
        for _ in range(self.config.gradient_accumulation_steps):
            try:
                windows.append(next(self.iterator))
            except StopIteration:  # the iterator rewound to position 0 for the next epoch
                return windows, True
            drawn = self.iterator.last_seq_len
            assert drawn is not None  # set by the next() that gave this window
            self.drawn_lengths.append(drawn)
        if self.iterator.position >= self.iterator.end:
            # The epoch's last window: let the iterator rewind now (it reads no random numbers), so
            # that a checkpoint taken at the epoch end resumes at position 0.
            for _ in self.iterator:
                raise AssertionError("the BPTT iterator yielded a window past the end of the data")
            return windows, True
        return windows, False

    def load_parameters(self, tensors: dict[str, torch.Tensor]) -> None:
        """Set the model's parameters and buffers to ``tensors`` (a state dict of the model, every
        name), in place, so that the optimizer keeps them: with :attr:`carried_state` (set it to an
        ``MTLSTMState`` or ``None``) and :meth:`train_step` on windows of one's own, a training can
        be followed step by step from outside, e.g. against another implementation.

        Raises:
            ValueError: names missing or unexpected, or a tensor of another shape.
        """
        own = self.unwrapped_model.state_dict(keep_vars=True)
        missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        wrong = sorted(name for name in set(own) & set(tensors) if own[name].shape != tensors[name].shape)
        tied = (
            set(self.unwrapped_model._tied_weights_keys or ())
            if self.unwrapped_model.config.tie_word_embeddings
            else set()
        )
        missing = [name for name in missing if name not in tied]
        if missing or unexpected or wrong:
            raise ValueError(f"load_parameters: missing {missing}, unexpected {unexpected}, of another shape {wrong}.")
        with torch.no_grad():
            for name, tensor in tensors.items():
                own[name].copy_(tensor)

    def train_step(
        self, windows: list[tuple[torch.Tensor, torch.Tensor]], drawn_lengths: list[int] | None = None
    ) -> StepResult:
        """One optimizer step over ``windows`` (AWD-LSTM's ``train()`` body), from :attr:`carried_state`
        (which it advances).

        Args:
            windows: ``(inputs, targets)`` pairs of ``(B / P, L)`` token ids (:meth:`next_windows`, or one's own).
            drawn_lengths: the lengths drawn for them (default: their lengths); the reference's
                loop scales the learning rate by these (``replay_reference_loop``).

        Returns:
            A :class:`StepResult` (losses with their parts, window lengths, learning rate, gradient
            norm); ``progress.global_step`` and ``progress.tokens_seen`` count the step.

        Raises:
            NonFiniteLossError: a non-finite loss or gradient norm (the parameters were not changed).
        """
        accelerator, config = self.accelerator, self.config
        lengths = [inputs.shape[1] for inputs, _ in windows]
        drawn = list(lengths if drawn_lengths is None else drawn_lengths)
        parts = []  # per window: loss, cross-entropy, AR, TAR
        for index, (inputs, targets) in enumerate(windows):
            # Gradients are all-reduced only on the last window of the step.
            all_reduce = index == len(windows) - 1
            with contextlib.nullcontext() if all_reduce else accelerator.no_sync(self.model):
                with record_function("forward"):  # loss = cross-entropy + AR + TAR (the model adds them)
                    output = self.model(
                        input_ids=inputs, shift_labels=targets, cache=self.carried_state, use_cache=True,
                        check_values=False,  # the streams were checked once (check_token_streams)
                    )  # fmt: skip
                with record_function("backward"):
                    accelerator.backward(output.loss / len(windows))
            self.carried_state = output.cache.detach()  # truncated BPTT: keep the state, drop the graph
            zero = output.lm_loss.new_zeros(())
            parts.append(torch.stack([output.loss, output.lm_loss, output.ar_loss if output.ar_loss is not None else zero,
                                      output.tar_loss if output.tar_loss is not None else zero]).detach())  # fmt: skip

        with record_function("optimizer"):
            max_norm = config.clip_grad_norm if config.clip_grad_norm is not None else math.inf
            grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
            # The step's one host read: what decides whether the step is taken, and what is logged.
            loss, lm_loss, ar_loss, tar_loss, norm = torch.cat(
                [torch.stack(parts).double().mean(0), grad_norm.double().reshape(1)]
            ).tolist()
            self._require_finite(loss, norm)
            scale = self._learning_rate_scale(lengths, drawn)
            with scaled_learning_rate(self.optimizer, scale):
                learning_rate = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            skipped = accelerator.scaler is not None and accelerator.optimizer_step_was_skipped
            if skipped:
                self._skipped_by_scaler(norm)  # nothing changed: no schedule step, nothing averaged
            else:
                if self.scheduler is not None:
                    self.scheduler.step()
                # The reference's ASGD leaves the first iterate after the switch out of its average.
                first_after_switch = self.progress.global_step == self.progress.asgd_start_step
                if self.progress.asgd_active and not (config.replay_reference_loop and first_after_switch):
                    averaged = self.averaged_model
                    if averaged is None:  # start_averaging refuses this; only a hand-set progress gets here
                        raise RuntimeError("averaged SGD is active but the run has no averaged model (optimizer 'awd')")
                    averaged.update_parameters(self.unwrapped_model)
        self.last_grad_norm = norm
        self.progress.global_step += 1
        self.progress.tokens_seen += sum(lengths) * config.batch_size  # all rows, all processes
        return StepResult(loss, lm_loss, ar_loss, tar_loss, lengths, drawn, learning_rate, norm, skipped)

    def _learning_rate_scale(self, lengths: list[int], drawn: list[int]) -> float:
        """The factor of the step's learning rate: AWD's ``seq_len / bptt`` (the mean over the
        windows). The reference's loop scales by the drawn lengths, and under its ASGD a step uses
        the factor of the step before (``torch.optim.ASGD``'s ``eta``, which it sets after each step;
        the first step after the switch, which creates it, its own)."""
        config = self.config
        if not config.scale_lr_by_seq_len:
            scale = 1.0
        else:
            used = drawn if config.replay_reference_loop else lengths
            scale = sum(used) / (len(used) * config.bptt)
        if config.replay_reference_loop and self.progress.asgd_active:
            late, self.progress.replay_previous_lr_scale = self.progress.replay_previous_lr_scale, scale
            return scale if late is None else late
        return scale

    def _require_finite(self, local_loss: float, grad_norm: float) -> None:
        # The gradient norm comes from all-reduced gradients, so every process decides alike (a
        # NaN loss anywhere makes it NaN); one process alone may also look at its own loss.
        loss_ok = self.accelerator.num_processes > 1 or math.isfinite(local_loss)
        if math.isfinite(grad_norm) and loss_ok:
            return
        if self.accelerator.scaler is not None and loss_ok:
            return  # fp16: the scaler's overflow step; optimizer.step() skips it and lowers the scale
        self.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"non-finite training loss at optimizer step {self.progress.global_step + 1} "
            f"(epoch {self.progress.epoch + 1}): loss={local_loss}, gradient norm={grad_norm}. "
            "Training stopped before updating the parameters; the last good checkpoint is "
            f"{str(self.last_checkpoint) if self.last_checkpoint else '(none written yet)'}. "
            "Lower the learning rate or enable gradient clipping."
        )

    def _skipped_by_scaler(self, grad_norm: float) -> None:
        """Count a step the fp16 gradient scaler skipped (its gradients overflowed float16); stop
        when they overflow even without scaling, which no lower scale can fix."""
        self.progress.scaler_skipped_steps += 1
        scale = self.accelerator.scaler.get_scale()
        if scale < 1.0:
            raise NonFiniteLossError(
                f"fp16: the gradients overflow float16 even without loss scaling (scale {scale:g} after "
                f"{self.progress.scaler_skipped_steps} skipped steps, gradient norm {grad_norm}) at optimizer step "
                f"{self.progress.global_step + 1}; train with --mixed-precision bf16 or no. The last good checkpoint "
                f"is {str(self.last_checkpoint) if self.last_checkpoint else '(none written yet)'}."
            )

    def start_averaging(self) -> None:
        """Average the parameters from the next step on (the non-monotone trigger calls this; a
        callback may, to force the switch)."""
        if self.averaged_model is None:
            raise ValueError(f"optimizer: averaged SGD applies to 'awd' only, this run uses {self.config.optimizer!r}.")
        if self.progress.asgd_active:
            return
        self.progress.asgd_active = True
        self.progress.asgd_start_step = self.progress.global_step
        self.progress.replay_previous_lr_scale = None  # the reference's new ASGD: no previous rate yet
        self.accelerator.print(
            f"Switching to averaged SGD at step {self.progress.global_step} (epoch {self.progress.epoch})."
        )

    # --- evaluation ---------------------------------------------------------------------------------

    def evaluation_model(self) -> MTLSTMForCausalLM:
        """The weights evaluated and saved: the running average under averaged SGD, else the model."""
        averaged = self.averaged_model
        return averaged.module if averaged is not None and int(averaged.n_averaged) > 0 else self.unwrapped_model

    def evaluate(self, stream: torch.Tensor | None = None, model: torch.nn.Module | None = None) -> float:
        """Mean next-token cross-entropy (nats) over an evaluation stream, state carried.

        Each process scores its share (``stream``, default ``self.valid_part``) of the
        ``eval_batch_size`` rows with ``model`` (default :meth:`evaluation_model`); the sums are
        added across processes, as if one process scored every row.
        """
        stream = self.valid_part if stream is None else stream
        model = self.evaluation_model() if model is None else model
        rows = self.config.eval_batch_size // self.accelerator.num_processes
        # Full float32 whatever matmul_precision trains with: reported numbers never use TensorFloat-32.
        with self.accelerator.autocast(), float32_precision("highest"):
            log_probs = token_log_probs(model, stream, batch_size=rows, window=self.config.bptt)
        totals = torch.tensor([-log_probs.double().sum().item(), float(log_probs.numel())], dtype=torch.float64)
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals.to(self.accelerator.device), reduction="sum").cpu()
        return float(totals[0] / totals[1])

    def validate(self, epoch_end: bool) -> float:
        """Validation loss. At an epoch end it feeds the non-monotone trigger and may become the
        best model; at a budget stop it is a score only, saved as ``best_model/`` only while no
        epoch end has given one (so a resumed run keeps the best model it would have had)."""
        config, progress = self.config, self.progress
        val_loss = self.evaluate()
        if epoch_end:
            if config.use_asgd and self.averaged_model is not None and not progress.asgd_active:
                if nonmonotone_trigger(progress.val_history, val_loss, config.nonmono):
                    self.start_averaging()
            progress.val_history.append(val_loss)
        progress.last_val_loss, progress.last_val_step = val_loss, progress.global_step
        self._steps_since_eval, self._dirty = 0, True
        best = progress.best_val_loss
        first = best is None
        if epoch_end and (best is None or val_loss < best):
            progress.best_val_loss, progress.best_val_step = val_loss, progress.global_step
        if (epoch_end and progress.best_val_step == progress.global_step) or first:
            metrics = {
                "val_loss": val_loss, "val_perplexity": perplexity(val_loss), "global_step": progress.global_step,
                "epoch": progress.epoch, "epoch_end": epoch_end, "asgd_active": progress.asgd_active,
            }  # fmt: skip
            ckpt.save_best_model(self.state, self.evaluation_model(), metrics)
        self.accelerator.log(
            {"eval/loss": val_loss, "eval/perplexity": perplexity(val_loss), "epoch": progress.epoch,
             "asgd_active": int(progress.asgd_active)},
            step=progress.global_step,
        )  # fmt: skip
        return val_loss

    # --- the run --------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Add this session's training time to the counters and write a checkpoint (:func:`.checkpoint.save_checkpoint`)."""
        now = time.monotonic()
        self.progress.train_seconds += now - self._clock
        self._clock = now
        path = ckpt.save_checkpoint(self.state)
        self._dirty = False
        return path

    def run(self) -> TrainingResult:
        """Train until the epochs, ``max_steps`` or ``max_minutes`` run out, or a stop request.

        Raises:
            NonFiniteLossError: the loss or gradient became NaN/inf (nothing written after the last good checkpoint).
            OutputWriteError: writing into the run folder failed; the last complete checkpoint stays the latest.
        """
        config = self.config
        try:
            with float32_precision(config.matmul_precision):
                return self._run()
        except OSError as error:
            failure = ckpt.run_folder_error(error, self.output_dir)
            if failure is error:
                raise
            raise failure from error

    def _run(self) -> TrainingResult:
        config, progress = self.config, self.progress
        ckpt.start_run_folder(self.state)
        status: str | None = None
        self._clock, self._steps_since_eval = time.monotonic(), 0
        with StopRequests(config.max_minutes, config.max_steps) as stops:
            if config.max_steps is not None and progress.global_step >= config.max_steps:
                status = "max_steps"  # a resumed run that has nothing left to do
            while status is None and progress.epoch < config.epochs:
                status, epoch_done = self.run_epoch(stops)
                if epoch_done:
                    progress.epoch += 1
                    val_loss = self.validate(epoch_end=True)
                    self.accelerator.print(
                        f"epoch {progress.epoch}: step {progress.global_step}, validation loss {val_loss:.4f}, "
                        f"perplexity {perplexity(val_loss):.2f}"
                    )
                    if progress.epoch % config.save_every_epochs == 0 or progress.epoch == config.epochs:
                        self.save_checkpoint()
            status = status or "completed"
            finished = status in ("completed", "max_steps", "time_limit")
            if finished and self._steps_since_eval > 0:
                self.validate(epoch_end=False)  # a score of the last weights
            if self._dirty or self.last_checkpoint is None:
                self.save_checkpoint()
            if finished and self.test_part is not None and self.best_model_dir.is_dir():
                with no_transformers_progress_bar():  # scored as a user of best_model/ gets it
                    best = load_model_strictly(self.best_model_dir, MTLSTMForCausalLM).to(self.accelerator.device)
                self.test_loss = self.evaluate(self.test_part, model=best)
                self.accelerator.log(
                    {"test/loss": self.test_loss, "test/perplexity": perplexity(self.test_loss)},
                    step=progress.global_step,
                )
        return TrainingResult(
            status=status, progress=progress, output_dir=self.output_dir,
            best_model_dir=self.best_model_dir if self.best_model_dir.is_dir() else None,
            last_checkpoint=self.last_checkpoint, best_val_perplexity=perplexity(progress.best_val_loss),
            last_val_perplexity=perplexity(progress.last_val_loss), test_perplexity=perplexity(self.test_loss),
            planned_steps=self.planned_steps(), eval_batch_size=config.eval_batch_size,
        )  # fmt: skip

    def run_epoch(self, stops: StopRequests) -> tuple[str | None, bool]:
        """Optimizer steps until the epoch ends or a stop is requested.

        Returns:
            ``(stop reason or None, whether the epoch's data is used up)``.
        """
        config, accelerator, progress = self.config, self.accelerator, self.progress
        if self.iterator.position == 0:
            self.carried_state = None  # AWD: every epoch starts from the zero state
        bar = progress_bar(
            total=math.ceil(self.iterator.nominal_num_windows / config.gradient_accumulation_steps),
            desc=f"epoch {progress.epoch + 1}/{config.epochs}", unit="step", leave=False,
            disable=not (config.progress_bar and accelerator.is_local_main_process),
        )  # fmt: skip
        meter, status, epoch_done = TrainingMeter(), None, False
        with contextlib.closing(bar):
            while status is None and not epoch_done:
                windows, epoch_done = self.next_windows()
                if not windows:
                    break
                loss = self.train_step(windows, self.drawn_lengths).lm_loss
                tokens = sum(inputs.shape[1] for inputs, _ in windows) * config.batch_size  # all rows, all processes
                self._steps_since_eval += 1
                self._dirty = True
                callback_stop = any([bool(callback(self)) for callback in self.callbacks])
                status, mean_loss = stops.decide(accelerator, progress.global_step, callback_stop, loss)
                meter.add(mean_loss, tokens)
                if bar.total is not None and bar.n + 1 >= bar.total and not epoch_done:
                    bar.total = bar.n + 2  # variable-length windows: the count was an estimate
                bar.update(1)
                if progress.global_step % config.log_every_steps == 0 or status is not None or epoch_done:
                    fraction = 1.0 if epoch_done else self.iterator.position / self.rows.shape[1]
                    metrics = meter.flush(
                        self.optimizer.param_groups[0]["lr"], self.last_grad_norm, progress.epoch + fraction
                    )
                    accelerator.log(metrics, step=progress.global_step)
                    bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", ppl=f"{metrics['train/perplexity']:.1f}",
                                    tok_s=f"{metrics['train/tokens_per_second']:.0f}")  # fmt: skip
                periodic = config.save_every_steps is not None and progress.global_step % config.save_every_steps == 0
                if periodic and status is None and not epoch_done:  # the epoch end / exit save anyway
                    self.save_checkpoint()
        return status, epoch_done


def train(
    config: TrainingSettings, *, accelerator: Accelerator | None = None, callbacks: Sequence[StepCallback] = ()
) -> TrainingResult:
    """Train as ``config`` says (:class:`LanguageModelTrainer`); an accelerator made here
    (``accelerator=None``) is finished before returning, even on error
    (:func:`~.preparation.finish_accelerator`). The process group of a multi-process start
    stays up, so that one process can train several runs (``mtlstm-reproduce`` does);
    :func:`~.preparation.end_processes` ends it (the commands call it at exit)."""
    owns = accelerator is None
    accelerator = make_accelerator(config) if owns else accelerator
    trainer = None
    try:
        trainer = LanguageModelTrainer(config, accelerator=accelerator, callbacks=callbacks)
        return trainer.run()
    finally:
        if owns:
            # Release the DDP wrapper (and its reducer) while the process group still exists.
            del trainer
            finish_accelerator(accelerator)
