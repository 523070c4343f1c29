"""Training and evaluation throughput of the library loop (a script, not a test).

For each model it runs the real loop (:class:`mtlstm_hf.training.LanguageModelTrainer`, AWD
recipe: SGD lr 30, clip 0.25, variable BPTT around 70, batch 20, AR/TAR, all dropouts of the
preset) for ``--steps`` optimizer steps after ``--warmup`` uncounted ones, timed from outside
the step by a step callback, then two more steps under ``torch.profiler`` for the split into the
loop's annotated phases (``forward``, ``backward``, ``optimizer``), then times the validation
pass.

Models:
  * ``paper``: ``MTLSTMConfig.from_preset("paper")`` (embedding 400, hidden 1150/1150/400,
    PTB dropouts) with a 10,000-word vocabulary, on a synthetic corpus of 9,998 distinct
    words (PTB's vocabulary size; token ids do not change the cost).
  * ``small``: the ``mtlstm-train`` default (preset ``small``: 200, 400/400/200) on the
    embedded WikiText-2 sample, as the command trains it.

Reported: training tokens/s (target tokens of all rows, per second of step time), minutes per
PTB epoch (929,589 tokens) at that speed, evaluation tokens/s (validation stream, batch 10,
state carried, eval mode, no autograd), and the loop overhead: the fraction of the profiled
steps' time outside forward / backward / optimizer (clip + step + zero_grad + averaging).
With ``--time-checkpoint`` also the seconds of one checkpoint and one ``best_model/`` write, and
the minutes of a whole PTB epoch (training + validation of PTB's 73,760 tokens + a checkpoint
every epoch or every 10th) with the projected time of ``mtlstm-reproduce lm-ptb --scale paper``
(6 runs x 1,000 epochs; one at a time, and with ``--processes 6``). ``--device cuda`` trains on a
GPU (each step is timed after the device finished it).

    python benchmarks/bench_training.py                    # both models
    python benchmarks/bench_training.py --models small --steps 20 --json results.json
    python benchmarks/bench_training.py --device cuda --models paper --warmup 10 --steps 60 --time-checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import cpu_name, load_averages  # benchmarks/machine.py

from mtlstm_hf.training import LanguageModelTrainer, TrainingSettings, finish_accelerator
from mtlstm_hf.training import checkpoint as ckpt

PTB_TRAIN_TOKENS = 929_589
PTB_VALID_TOKENS = 73_760
PAPER_RUNS, PAPER_EPOCHS = 6, 1000


def synthetic_ptb_like_corpus(directory: Path, vocab_words: int = 9_998, train_tokens: int = 120_000) -> Path:
    """A corpus whose word-level vocabulary is exactly ``vocab_words + 2`` (``<unk>``, ``<eos>``):
    every word occurs in the training split, the rest is Zipf-distributed."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(vocab_words)]
    weights = [1.0 / (rank + 1) for rank in range(vocab_words)]

    def lines(num_tokens: int, cover_all: bool) -> str:
        tokens = list(words) if cover_all else []
        tokens += rng.choices(words, weights=weights, k=max(0, num_tokens - len(tokens)))
        rng.shuffle(tokens)
        out, position = [], 0
        while position < len(tokens):
            length = rng.randint(10, 30)
            out.append(" ".join(tokens[position : position + length]))
            position += length
        return "\n".join(out) + "\n"

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.txt").write_text(lines(train_tokens, True), encoding="utf-8")
    (directory / "valid.txt").write_text(lines(20_000, False), encoding="utf-8")
    return directory


PHASES = ("forward", "backward", "optimizer")
PROFILED_STEPS = 2


class StepClock:
    """A step callback: the time and token count after every optimizer step; after the counted
    steps, ``torch.profiler`` records ``PROFILED_STEPS`` more for the phase split."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.profiler: Any = None
        self.profiled_seconds = 0.0

    def __call__(self, trainer: LanguageModelTrainer) -> None:
        if trainer.accelerator.device.type == "cuda":
            torch.cuda.synchronize(trainer.accelerator.device)  # the step's time, not its launch's
        now = time.perf_counter()
        self.times.append(now)
        self.tokens.append(trainer.progress.tokens_seen)
        done = len(self.times)
        if done == self.warmup + self.steps:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if trainer.accelerator.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()
            self._profile_start = time.perf_counter()
        elif done == self.warmup + self.steps + PROFILED_STEPS:
            self.profiled_seconds = now - self._profile_start
            self.profiler.stop()

    def seconds_per_step(self) -> float:
        counted = self.times[self.warmup - 1 : self.warmup + self.steps]
        return (counted[-1] - counted[0]) / self.steps

    def tokens_per_second(self) -> float:
        counted = self.tokens[self.warmup - 1 : self.warmup + self.steps]
        return (counted[-1] - counted[0]) / (self.seconds_per_step() * self.steps)

    def phase_seconds(self) -> dict[str, float]:
        """Wall seconds of each annotated phase over the profiled steps (``record_function`` events)."""
        totals = dict.fromkeys(PHASES, 0.0)
        for event in self.profiler.events():
            if event.name in totals:
                totals[event.name] += event.time_range.elapsed_us() / 1e6
        return totals


def bench_model(
    name: str,
    data: str | None,
    preset: str,
    steps: int,
    warmup: int,
    workdir: Path,
    mixed_precision: str = "no",
    device: str = "cpu",
    time_checkpoint: bool = False,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if warmup < 1:
        raise ValueError("--warmup must be at least 1 (the clock starts after a step)")
    config = TrainingSettings(
        data=data,
        preset=preset,
        output_dir=str(workdir / f"run-{name}"),
        overwrite_output_dir=True,
        batch_size=20,
        eval_batch_size=10,
        bptt=70,
        epochs=1,
        max_steps=warmup + steps + PROFILED_STEPS,
        log_every_steps=10,
        progress_bar=False,
        tracker="jsonl",
        evaluate_test=False,
        mixed_precision=mixed_precision,
        seed=141,
        cpu=device == "cpu",
        model_overrides=model_overrides or {},
    )
    clock = StepClock(warmup, steps)
    trainer = LanguageModelTrainer(config, callbacks=[clock])
    trainer.run()
    eval_tokens = trainer.valid_part.numel()
    start = time.perf_counter()
    trainer.evaluate()
    eval_seconds = time.perf_counter() - start
    checkpoint = {}
    if time_checkpoint:
        start = time.perf_counter()
        trainer.save_checkpoint()
        checkpoint["checkpoint_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        ckpt.save_best_model(trainer.state, trainer.evaluation_model(), {"benchmark": True})
        checkpoint["best_model_seconds"] = time.perf_counter() - start
        checkpoint["checkpoint_bytes"] = sum(
            f.stat().st_size for f in trainer.last_checkpoint.rglob("*") if f.is_file()
        )
    device_name = str(trainer.accelerator.device)
    finish_accelerator(trainer.accelerator)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)  # the next model gets a fresh Accelerator
    GradientState._reset_state()
    model = trainer.unwrapped_model
    train_tps = clock.tokens_per_second()
    phases = clock.phase_seconds()
    epoch = {}
    if time_checkpoint and train_tps:
        train_minutes = PTB_TRAIN_TOKENS / train_tps / 60
        validation_minutes = eval_seconds * PTB_VALID_TOKENS / eval_tokens / 60
        # best_model/ is written at every improving epoch end (most of a run), whatever the checkpoint interval.
        checkpoint_minutes, best_model_minutes = (
            checkpoint["checkpoint_seconds"] / 60,
            checkpoint["best_model_seconds"] / 60,
        )
        for every in (1, 10):
            minutes = train_minutes + validation_minutes + best_model_minutes + checkpoint_minutes / every
            epoch[f"ptb_epoch_minutes_checkpoint_every_{every}"] = minutes
            epoch[f"lm_ptb_paper_hours_one_at_a_time_checkpoint_every_{every}"] = (
                PAPER_RUNS * PAPER_EPOCHS * minutes / 60
            )
            epoch[f"lm_ptb_paper_hours_processes_6_checkpoint_every_{every}"] = PAPER_EPOCHS * minutes / 60
    return {
        **checkpoint,
        **epoch,
        "device": device_name,
        "model": name,
        "preset": preset,
        "mixed_precision": mixed_precision,
        "vocab_size": model.config.vocab_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "counted_steps": steps,
        "seconds_per_step": clock.seconds_per_step(),
        "train_tokens_per_second": train_tps,
        "minutes_per_ptb_epoch": PTB_TRAIN_TOKENS / train_tps / 60 if train_tps else None,
        "profiled_phase_seconds": {k: round(v, 4) for k, v in phases.items()},
        "profiled_seconds": round(clock.profiled_seconds, 4),
        "loop_overhead_fraction": 1.0 - sum(phases.values()) / clock.profiled_seconds,
        "eval_tokens": eval_tokens,
        "eval_tokens_per_second": eval_tokens / eval_seconds,
    }


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_averages(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="paper,small", help="comma-separated: paper, small")
    parser.add_argument("--steps", type=int, default=None, help="counted steps per model (default: paper 5, small 20)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also measure the small model with bf16 autocast")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--time-checkpoint",
        action="store_true",
        help="also time a checkpoint and a best_model/ write; project a PTB epoch and lm-ptb --scale paper",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny layers and corpus (a dry run of the script, seconds)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "models": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            if name == "paper":
                vocabulary, tokens = (200, 20_000) if args.tiny else (9_998, 120_000)
                data = str(synthetic_ptb_like_corpus(workdir / "ptb_like", vocabulary, tokens))
                runs = [("paper", data, "paper", args.steps or 5, "no")]
            elif name == "small":
                runs = [("small", None, "small", args.steps or 20, "no")]
                if args.bf16:
                    runs.append(("small-bf16", None, "small", args.steps or 20, "bf16"))
            else:
                parser.error(f"unknown model {name!r}; choose from paper, small")
            for label, data, preset, steps, precision in runs:
                print(
                    f"benchmarking {label} ({steps} steps after {args.warmup} warm-up)...", file=sys.stderr, flush=True
                )
                overrides = {"embedding_size": 16, "hidden_sizes": [32, 32, 16]} if args.tiny else None
                results["models"].append(
                    bench_model(
                        label,
                        data,
                        preset,
                        steps,
                        args.warmup,
                        workdir,
                        precision,
                        args.device,
                        args.time_checkpoint,
                        overrides,
                    )
                )

    print("| model | params | s/step | train tok/s | min per PTB epoch | eval tok/s | loop overhead |")
    print("|---|---|---|---|---|---|---|")
    for r in results["models"]:
        print(
            f"| {r['model']} | {r['parameters'] / 1e6:.1f} M | {r['seconds_per_step']:.2f} | "
            f"{r['train_tokens_per_second']:.0f} | {r['minutes_per_ptb_epoch']:.1f} | "
            f"{r['eval_tokens_per_second']:.0f} | {100 * r['loop_overhead_fraction']:.2f}% |"
        )
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
