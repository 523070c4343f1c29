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
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import exit_codes
from .checkpoint import CHECKPOINTS_DIRNAME, TRAINING_CONFIG_FILENAME, repair_interrupted_replacement, resolve_checkpoint
from .config import LR_SCHEDULERS, MIXED_PRECISION, MODEL_PRESETS, OPTIMIZERS, TRACKERS, TrainingConfig

if TYPE_CHECKING:
    from .state import TrainingResult

CLI_DEFAULT_EPOCHS = 18
"""``mtlstm-train`` trains this many epochs unless ``--epochs`` says otherwise (the library
default, :class:`TrainingConfig`'s, is the paper's 1000). A fixed amount of work with fixed
seeds, so the main job gives the same model however loaded the machine is: 18 epochs of
the ``small`` model on the embedded WikiText-2 sample take about 4 minutes on 2 quiet CPU
cores (README and BENCHMARKS.md give the measured time and perplexities)."""


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"hidden_sizes\": [300, 300, 200]}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser. Every option defaults to "not given" so that ``--resume`` can tell
    which settings the user changes; the effective defaults are :class:`TrainingConfig`'s."""
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(
        prog="mtlstm-train",
        description="Train a multi-timescale LSTM language model (AWD-LSTM recipe) with accelerate.",
        epilog=exit_codes.epilog(non_finite_loss=True) + " After 1, 4 or 130, --resume continues from the last checkpoint.",
        argument_default=argparse.SUPPRESS,
    )
    add = parser.add_argument
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="corpus folder (train/valid/test.txt, wiki.*.tokens, ptb.*.txt) or Hub dataset id; default: the embedded WikiText-2 sample")
    data.add_argument("--dataset-config", dest="dataset_config_name", help="Hub dataset configuration, e.g. wikitext-2-v1")
    data.add_argument("--text-column", help="Hub dataset text column (default text, else sentence)")
    data.add_argument("--tokenizer", help="use this saved tokenizer instead of building a word-level one")
    data.add_argument("--max-vocab-size", type=int, help="cap of the built vocabulary")
    data.add_argument("--tokenizer-convention", help="how raw text becomes words: auto (default: detected from the training text), wikitext, ptb or whitespace (mtlstm_hf.data.CONVENTIONS)")

    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=sorted(MODEL_PRESETS), help=f"architecture (default {defaults.preset})")
    model.add_argument("--model-overrides", type=_json_object, help="JSON object of MTLSTMConfig fields, e.g. '{\"weight_drop\": 0.5}'")
    model.add_argument("--init-from", help="start from this saved model instead of a fresh one")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help="awd: SGD + NT-ASGD (default); adamw: AdamW + schedule")
    optim.add_argument("--lr", dest="learning_rate", type=float, help="learning rate (default 30 for awd, 1e-3 for adamw)")
    optim.add_argument("--weight-decay", type=float, help=f"default {defaults.weight_decay}")
    optim.add_argument("--clip", dest="clip_grad_norm", type=float, help=f"gradient norm clip, 0 = off (default {defaults.clip_grad_norm})")
    optim.add_argument("--nonmono", type=int, help=f"non-monotone trigger window (default {defaults.nonmono})")
    optim.add_argument("--no-asgd", dest="use_asgd", action="store_false", help="never switch to averaged SGD")
    optim.add_argument("--lr-scheduler", choices=LR_SCHEDULERS, help="AdamW schedule (default linear)")
    optim.add_argument("--warmup-steps", type=int, help="AdamW warm-up steps (default 0)")
    optim.add_argument("--no-lr-scaling", dest="scale_lr_by_seq_len", action="store_false", help="do not scale the learning rate by seq_len/bptt")
    optim.add_argument("--gradient-accumulation-steps", type=int, help="windows per optimizer step (default 1)")
    optim.add_argument("--mixed-precision", choices=MIXED_PRECISION, help="bf16 autocast (default no); on a CPU it needs native bf16 (AVX512_BF16/AMX), else exit 3")

    batching = parser.add_argument_group("batching")
    batching.add_argument("--batch-size", type=int, help=f"global rows of the training stream (default {defaults.batch_size})")
    batching.add_argument("--eval-batch-size", type=int, help=f"rows of the validation/test streams (default {defaults.eval_batch_size})")
    batching.add_argument("--bptt", type=int, help=f"BPTT window length (default {defaults.bptt})")
    batching.add_argument("--fixed-bptt", dest="variable_bptt", action="store_false", help="fixed window length (AWD draws it at random)")

    budget = parser.add_argument_group("budget")
    budget.add_argument("--epochs", type=int, help=f"default {CLI_DEFAULT_EPOCHS} (the library's: {defaults.epochs})")
    budget.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    budget.add_argument("--max-minutes", type=float, help="also stop after this many minutes of wall time (default: no limit; the result then depends on the machine's speed)")

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", help=f"run folder (default {defaults.output_dir})")
    output.add_argument("--overwrite-output-dir", action="store_true", help="replace an earlier run in --output-dir")
    output.add_argument("--resume", dest="resume_from", help="resume a run folder or checkpoint; its settings are reused, options given here override budget/logging ones")
    output.add_argument("--save-every", dest="save_every_steps", type=int, help="also checkpoint every N steps")
    output.add_argument("--keep-checkpoints", type=int, help="complete checkpoints to keep (default 1)")
    output.add_argument("--log-every", dest="log_every_steps", type=int, help=f"default {defaults.log_every_steps}")
    output.add_argument("--tracker", choices=TRACKERS, help="metrics: auto (TensorBoard if installed + JSON lines), jsonl, tensorboard, trackio (each with the JSON lines), none")
    output.add_argument("--no-progress", dest="progress_bar", action="store_false", help="no progress bar")
    output.add_argument("--no-test", dest="evaluate_test", action="store_false", help="do not score the best model on the test split")
    output.add_argument("--config", dest="config_file", help="start from a TrainingConfig JSON file (e.g. a run's training_config.json)")

    add("--seed", type=int, help=f"default {defaults.seed}")
    add("--cpu", action="store_true", help="run on CPU (needed for several CPU processes: gloo)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    """The run's :class:`TrainingConfig`: defaults (or ``--config`` / the resumed run's), then the options given."""
    given = vars(args).copy()
    config_file = given.pop("config_file", None)
    if given.get("clip_grad_norm") == 0:
        given["clip_grad_norm"] = None
    if given.get("max_minutes") == 0:
        given["max_minutes"] = None
    if "resume_from" in given:
        checkpoint = resolve_checkpoint(given["resume_from"])
        base = TrainingConfig.from_json_file(checkpoint / TRAINING_CONFIG_FILENAME).to_dict()
        if "output_dir" not in given and checkpoint.parent.name == CHECKPOINTS_DIRNAME:
            base["output_dir"] = str(checkpoint.parent.parent)  # the run folder, wherever it is now
    elif config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"--config: {config_file!r} does not exist.")
        base = TrainingConfig.from_json_file(path).to_dict()
    else:
        base = TrainingConfig(epochs=CLI_DEFAULT_EPOCHS).to_dict()
    base.update(given)
    return TrainingConfig.from_dict(base)


def _perplexity(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_summary(result: TrainingResult, config: TrainingConfig) -> str:
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
    lines.append(
        f"validation perplexity: {_perplexity(result.last_val_perplexity)} "
        f"(best {_perplexity(result.best_val_perplexity)}; eval batch size {result.eval_batch_size})"
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
    if result.status != "completed":
        lines.append(f"checkpoint: {result.last_checkpoint}  (continue with: mtlstm-train --resume {result.output_dir})")
    else:
        lines.append(f"checkpoint: {result.last_checkpoint}")
    return "\n".join(lines)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-train``; returns the exit code (:mod:`mtlstm_hf.exit_codes`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    from ..models.mtlstm import UnsupportedPrecisionError
    from .loop import train
    from .state import NonFiniteLossError

    def error(message: str, kind: str = "error") -> None:
        if _is_main_process():
            print(f"mtlstm-train: {kind}: {exit_codes.one_line(message)}", file=sys.stderr)

    config = None
    try:
        config = config_from_args(args)
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
