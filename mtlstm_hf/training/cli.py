"""``mtlstm-train``: train a multi-timescale LSTM language model from the command line.

With no arguments it trains the ``small`` multi-timescale model (embedding 200, hidden
400/400/200, layer 1 half T=3 / half T=4, layer 2 inverse-gamma timescales, tied weights) on
the embedded WikiText-2 sample for at most 4 minutes, prints validation perplexity and leaves
``outputs/mtlstm-small/`` (``best_model/`` loads with ``AutoModelForCausalLM.from_pretrained``).

Examples::

    mtlstm-train                                     # the few-minute demo run
    mtlstm-train --data path/to/ptb --epochs 500 --max-minutes 0 --output-dir outputs/ptb
    mtlstm-train --data wikitext --dataset-config wikitext-2-v1 --preset paper-wikitext2 --batch-size 80
    mtlstm-train --optimizer adamw --lr 2e-3 --lr-scheduler cosine --warmup-steps 100
    mtlstm-train --resume outputs/mtlstm-small       # continue exactly where it stopped
    torchrun --nproc_per_node 2 -m mtlstm_hf.training.cli --cpu --batch-size 20   # 2 CPU processes

Ctrl-C (SIGINT) or SIGTERM saves a checkpoint after the current step and exits; ``--resume``
continues bit-exactly. Exit codes: 0 done, 1 non-finite loss, 2 bad input, 3 this machine cannot
run the requested setting (e.g. ``--mixed-precision bf16`` on a CPU without native bf16), 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINTS_DIRNAME, TRAINING_CONFIG_FILENAME, resolve_checkpoint
from .config import LR_SCHEDULERS, MIXED_PRECISION, MODEL_PRESETS, OPTIMIZERS, TRACKERS, TrainingConfig
from ..models.mtlstm import UnsupportedPrecisionError
from .loop import NonFiniteLossError, train

CLI_DEFAULT_MAX_MINUTES = 4.0
"""``mtlstm-train`` stops after this many minutes unless ``--max-minutes`` says otherwise
(0 = no limit); the library default is no limit."""


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
        epilog="Exit codes: 0 done, 1 non-finite loss, 2 bad input, 3 this machine cannot run the requested "
        "setting (e.g. bf16 on a CPU without native bf16), 130 interrupted (resume with --resume).",
        argument_default=argparse.SUPPRESS,
    )
    add = parser.add_argument
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="corpus folder (train/valid/test.txt, wiki.*.tokens, ptb.*.txt) or Hub dataset id; default: the embedded WikiText-2 sample")
    data.add_argument("--dataset-config", dest="dataset_config_name", help="Hub dataset configuration, e.g. wikitext-2-v1")
    data.add_argument("--text-column", help="Hub dataset text column (default text, else sentence)")
    data.add_argument("--tokenizer", help="use this saved tokenizer instead of building a word-level one")
    data.add_argument("--max-vocab-size", type=int, help="cap of the built vocabulary")

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
    budget.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    budget.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    budget.add_argument("--max-minutes", type=float, help=f"stop after this many minutes (default {CLI_DEFAULT_MAX_MINUTES:g}; 0 = no limit)")

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", help=f"run folder (default {defaults.output_dir})")
    output.add_argument("--overwrite-output-dir", action="store_true", help="replace an earlier run in --output-dir")
    output.add_argument("--resume", dest="resume_from", help="resume a run folder or checkpoint; its settings are reused, options given here override budget/logging ones")
    output.add_argument("--save-every", dest="save_every_steps", type=int, help="also checkpoint every N steps")
    output.add_argument("--keep-checkpoints", type=int, help="complete checkpoints to keep (default 1)")
    output.add_argument("--log-every", dest="log_every_steps", type=int, help=f"default {defaults.log_every_steps}")
    output.add_argument("--tracker", choices=TRACKERS, help="metrics: auto (TensorBoard if installed + JSON lines), jsonl, tensorboard, none")
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
        base = TrainingConfig(max_minutes=CLI_DEFAULT_MAX_MINUTES).to_dict()
    base.update(given)
    return TrainingConfig.from_dict(base)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-train``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        result = train(config)
    except (ValueError, FileNotFoundError) as error:
        if _is_main_process():
            print(f"mtlstm-train: error: {error}", file=sys.stderr)
        return 2
    except UnsupportedPrecisionError as error:
        if _is_main_process():
            print(f"mtlstm-train: error: {error}", file=sys.stderr)
        return 3
    except NonFiniteLossError as error:
        if _is_main_process():
            print(f"mtlstm-train: stopped: {error}", file=sys.stderr)
        return 1
    if _is_main_process():
        progress = result.progress

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f}"

        print(
            f"\n{result.status}: {progress.epoch} epoch(s), {progress.global_step} steps, "
            f"{progress.tokens_seen:,} tokens"
        )
        print(f"validation perplexity: {fmt(result.last_val_perplexity)} (best {fmt(result.best_val_perplexity)})")
        if result.test_perplexity is not None:
            print(f"test perplexity (best model): {fmt(result.test_perplexity)}")
        if result.best_model_dir is not None:
            print(f"best model: {result.best_model_dir}  (AutoModelForCausalLM.from_pretrained)")
        print(f"checkpoint: {result.last_checkpoint}  (continue with: mtlstm-train --resume {result.output_dir})")
    return 130 if result.status == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
