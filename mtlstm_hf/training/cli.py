"""``mtlstm-train``: train a multi-timescale LSTM language model from the command line.

With no arguments it trains the ``small`` multi-timescale model (embedding 200, hidden
400/400/200, layer 1 half T=3 / half T=4, layer 2 inverse-gamma timescales, tied weights) on
the embedded WikiText-2 sample for 18 epochs (about 4 minutes on 2 CPU cores; the same
model on any load, since the amount of work and the seeds are fixed), prints validation and
test perplexity and leaves ``outputs/mtlstm-small/`` (``best_model/`` loads with
``AutoModelForCausalLM.from_pretrained``). ``--max-minutes`` adds a wall-clock budget; a run
it stops is reported as such, with the steps done and planned.

Examples::

    mtlstm-train                                     # the few-minute demo run
    mtlstm-train --data path/to/ptb --epochs 500 --output-dir outputs/ptb
    mtlstm-train --data wikitext --dataset-config wikitext-2-v1 --preset paper-wikitext2 --batch-size 80
    mtlstm-train --optimizer adamw --lr 2e-3 --lr-scheduler cosine --warmup-steps 100
    mtlstm-train --resume outputs/mtlstm-small       # continue exactly where it stopped
    torchrun --nproc_per_node 2 -m mtlstm_hf.training.cli --cpu --batch-size 20   # 2 CPU processes

Ctrl-C (SIGINT) or SIGTERM saves a checkpoint after the current step and exits; ``--resume``
continues bit-exactly.

Exit codes (:mod:`mtlstm_hf.exit_codes`, the same for every command): 0 done, 1 non-finite
loss (the last good checkpoint is kept), 2 bad input (arguments, data, checkpoint, config), 3
this machine cannot run the requested setting (e.g. ``--mixed-precision bf16`` on a CPU without
native bf16), 4 I/O failure (disk full, permission denied, read-only file system, a file where a
folder is needed or the reverse, a Hub dataset id without network or in offline mode; a failed
checkpoint write leaves the previous checkpoint as the latest, so ``--resume`` continues from
it), 130 interrupted. Errors are one line on stderr naming the path or value and the cause.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import exit_codes
from ..command_line import ProcessOptions, apply_threads, dataclass_parser, parse_given, read_config_file
from .checkpoint import (
    CHECKPOINTS_DIRNAME,
    TRAINING_CONFIG_FILENAME,
    repair_interrupted_replacement,
    resolve_resume_checkpoint,
)
from .config import TrainingSettings

if TYPE_CHECKING:
    from .state import TrainingResult

CLI_DEFAULT_EPOCHS = 18
"""``mtlstm-train`` trains this many epochs unless ``--epochs`` says otherwise (the library
default, :class:`TrainingSettings`'s, is the paper's 1000). A fixed amount of work with fixed
seeds, so the main job gives the same model however loaded the machine is: 18 epochs of
the ``small`` model on the embedded WikiText-2 sample take about 4 minutes on 2 quiet CPU
cores (docs/installation.md and BENCHMARKS.md give the measured time and perplexities)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one option per :class:`TrainingSettings` field (its help text), and
    ``--config FILE.json``."""
    parser = dataclass_parser(
        [TrainingSettings, ProcessOptions],
        prog="mtlstm-train",
        description=(
            "Train a multi-timescale LSTM language model (AWD-LSTM recipe) with accelerate. Every option "
            f"is a TrainingSettings field; the defaults are its own, except --epochs {CLI_DEFAULT_EPOCHS}."
        ),
        epilog=exit_codes.epilog(non_finite_loss=True)
        + " After 1, 4 or 130, --resume continues from the last checkpoint.",
    )
    for action in parser._actions:  # shown by --help; config_from_argv applies it (a parser default would look "given")
        if action.dest == "epochs":
            action.default = CLI_DEFAULT_EPOCHS
    return parser


def config_from_argv(argv: Sequence[str] | None) -> TrainingSettings:
    """The run's :class:`TrainingSettings`: the defaults (``--epochs`` 18) or the resumed run's
    settings, then ``--config``'s file, then the options given. ``--clip 0``, ``--max-minutes 0`` and
    ``--max-steps 0`` mean none.

    Raises:
        ValueError: a bad value (naming the field); FileNotFoundError: a missing file or run.
    """
    given, config_file = parse_given(build_parser(), argv)
    given.pop("threads", None)  # how this process runs (main applies it), not a training setting
    for name in ("clip_grad_norm", "max_minutes", "max_steps"):
        if given.get(name) == 0:
            given[name] = None
    if "resume_from" in given:
        checkpoint = resolve_resume_checkpoint(given["resume_from"])
        base = TrainingSettings.from_json_file(checkpoint / TRAINING_CONFIG_FILENAME).to_dict()
        if "output_dir" not in given and checkpoint.parent.name == CHECKPOINTS_DIRNAME:
            base["output_dir"] = str(checkpoint.parent.parent)  # the run folder, wherever it is now
    else:
        base = {"epochs": CLI_DEFAULT_EPOCHS}
    if config_file is not None:
        # On a resume too: the file's settings apply (a budget extends the run) or, where they would
        # change the trajectory, the resume is refused naming them; they are never ignored.
        base.update(read_config_file(config_file))
    base.update(given)
    return TrainingSettings.from_dict(base)


def _perplexity(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_summary(result: TrainingResult, config: TrainingSettings) -> str:
    """The end-of-run summary: how the run ended (a budget stop is said plainly, with the steps
    done and planned), validation and test perplexity with the batch size they were computed
    at, and where the model and the checkpoint are."""
    progress = result.progress
    done = f"{progress.global_step} of {result.planned_steps} planned steps"
    if result.status == "completed":
        ending = f"completed: {progress.epoch} epoch(s), {progress.global_step} steps"
    elif result.status == "max_steps":
        ending = f"stopped at --max-steps {config.max_steps}: {done} (epoch {progress.epoch} of {config.epochs})"
    elif result.status == "time_limit":
        ending = (
            f"STOPPED BY THE TIME LIMIT (--max-minutes {config.max_minutes:g}) after {done} "
            f"(epoch {progress.epoch} of {config.epochs}): the model is not what the full run gives, "
            "and how far a time limit gets depends on the machine and its load"
        )
    else:  # interrupted (a signal) or stopped (a callback)
        ending = f"{result.status} after {done}"
    lines = [f"{ending}; {progress.tokens_seen:,} training tokens"]
    best = (
        f"best at an epoch end {_perplexity(result.best_val_perplexity)}"
        if result.best_val_perplexity is not None
        else "no epoch end yet, so best_model/ holds the weights at this stop"
    )
    lines.append(
        f"validation perplexity: {_perplexity(result.last_val_perplexity)} ({best}; eval batch size {result.eval_batch_size})"
    )
    if result.test_perplexity is not None:
        lines.append(
            f"test perplexity (best model): {_perplexity(result.test_perplexity)} at eval batch size "
            f"{result.eval_batch_size} ({result.eval_batch_size} pieces, each from a zero state); "
            f"mtlstm-eval gives this with --batch-size {result.eval_batch_size}, and by default (batch size 1, "
            "the state carried over the whole split, the paper's setting) a slightly lower value"
        )
    if result.best_model_dir is not None:
        lines.append(f"best model: {result.best_model_dir}  (AutoModelForCausalLM.from_pretrained)")
    if result.status == "max_steps":  # the saved budget is reused on resume: it must be raised
        lines.append(
            f"checkpoint: {result.last_checkpoint}  (continue with: mtlstm-train --resume {result.output_dir} "
            f"--max-steps N, N > {config.max_steps}, or --max-steps 0 for the epochs' budget)"
        )
    elif result.status != "completed":
        lines.append(
            f"checkpoint: {result.last_checkpoint}  (continue with: mtlstm-train --resume {result.output_dir})"
        )
    else:
        lines.append(f"checkpoint: {result.last_checkpoint}")
    return "\n".join(lines)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-train``; returns the exit code (:mod:`mtlstm_hf.exit_codes`)."""
    build_parser().parse_args(argv)  # usage errors and --help exit here, before any import
    from .preparation import end_processes

    try:
        return _main(argv)
    finally:
        end_processes()  # the process group of a multi-process start, once everything is written


def _main(argv: Sequence[str] | None) -> int:
    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    from ..models.mtlstm import UnsupportedPrecisionError
    from .loop import train
    from .state import NonFiniteLossError

    def error(message: str, kind: str = "error") -> None:
        if _is_main_process():
            print(f"mtlstm-train: {kind}: {exit_codes.one_line(message)}", file=sys.stderr)

    config = None
    try:
        apply_threads(build_parser().parse_args(argv).threads)
        config = config_from_argv(argv)
        exit_codes.check_output_dir(config.output_dir, "--output-dir")
        for folder in (config.init_from, config.tokenizer):  # e.g. another run's best_model/
            if folder is not None:
                repair_interrupted_replacement(folder)  # safe on every process at once
        result = train(config)
    except NonFiniteLossError as failure:
        error(str(failure), "stopped")
        return exit_codes.NON_FINITE_LOSS
    except UnsupportedPrecisionError as failure:
        error(str(failure))
        return exit_codes.UNSUPPORTED_SETTING
    except OSError as failure:
        if not exit_codes.is_io_failure(failure):  # a missing input file or folder
            error(str(failure))
            return exit_codes.BAD_INPUT
        message = exit_codes.describe_io_failure(failure)
        if isinstance(failure, (ConnectionError, TimeoutError)) and config is not None and config.data is not None:
            # The only network access of a run: loading a Hub dataset.
            message = f"--data: {exit_codes.hub_dataset_hint(config.data)} ({failure})"
        error(message)
        return exit_codes.IO_FAILURE
    except ValueError as failure:
        error(str(failure))
        return exit_codes.BAD_INPUT
    except KeyboardInterrupt:
        where = f"; continue with: mtlstm-train --resume {config.output_dir}" if config is not None else ""
        error(f"interrupted without saving; the last complete checkpoint is kept{where}", "stopped")
        return exit_codes.INTERRUPTED
    if _is_main_process():
        print("\n" + format_summary(result, config))
    return exit_codes.INTERRUPTED if result.status == "interrupted" else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
