"""Training-step and evaluation throughput of the paper-sized MTLSTM LM against a plain ``nn.LSTM``
stack of the same sizes, on the CPU or a GPU (a script, not a test).

Both models have the same sizes (vocab 10,000, embedding 400, LSTM 1150/1150/400, tied softmax)
and run the same batches. A training step is forward, backward of the cross-entropy (plus AR/TAR
where on), gradient clipping at 0.25 and an SGD step; an evaluation step is a forward under
``torch.inference_mode``. Variants (``--variants``):

* ``nn.LSTM``: the baseline, one ``nn.LSTM`` per layer (cuDNN's flattened weights on a GPU), no
  regularisation;
* ``plain``: ours with every regularisation off (like for like);
* ``dropconnect``: ours with DropConnect 0.5 on the recurrent weights only;
* ``awd``: ours with the paper's regularisation (DropConnect 0.5, locked and embedding dropout,
  AR/TAR): what a training step costs in practice;
* ``awd-bf16`` / ``awd-fp16``: ``awd`` with the output layer and loss under autocast (the
  recurrence stays float32: the precision policy); GPU only.

Steps of the variants are interleaved, in an order rotated every round, so that machine load
affects all alike; on a GPU each step is bracketed by ``torch.cuda.synchronize``. Reported per
variant: the fastest step, the median step, the median (with quartiles) of the per-round ratios
baseline/ours, and on a GPU the peak memory of a step. TensorFloat-32 is off unless ``--tf32``
(``mtlstm_hf.devices.float32_precision``), for every variant alike.

    python benchmarks/bench_model.py [--steps 30] [--batch-sizes 20] [--bptt 70] [--threads 2]
    python benchmarks/bench_model.py --device cuda --batch-sizes 20,80 --variants nn.LSTM,plain,dropconnect,awd,awd-bf16 \\
        --eval --warmup 10 --steps 30 --json throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from machine import cpu_name, load_averages  # benchmarks/machine.py
from torch import nn
from torch.nn import functional as F

from mtlstm_hf import REGULARIZATION_OFF, MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.devices import float32_precision

VARIANTS = ("nn.LSTM", "plain", "dropconnect", "awd", "awd-bf16", "awd-fp16")


class PlainLSTMLanguageModel(nn.Module):
    """Embedding -> nn.LSTM stack -> tied linear: the baseline of the same sizes."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embedding_size)
        inputs = [embedding_size] + hidden_sizes[:-1]
        self.layers = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(inputs, hidden_sizes))
        self.lm_head = nn.Linear(hidden_sizes[-1], vocab_size)
        self.lm_head.weight = self.embeddings.weight

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.embeddings(input_ids)
        for layer in self.layers:
            hidden, _ = layer(hidden)
        logits = self.lm_head(hidden)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def build(variant: str, sizes: dict[str, Any], device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if variant == "nn.LSTM":
        return PlainLSTMLanguageModel(sizes["vocab_size"], sizes["embedding_size"], sizes["hidden_sizes"]).to(device)
    if variant == "plain":
        overrides = dict(REGULARIZATION_OFF)
    elif variant == "dropconnect":
        overrides = {**REGULARIZATION_OFF, "weight_drop": 0.5}
    else:
        overrides = {}
    return MTLSTMForCausalLM(MTLSTMConfig.from_preset("paper", **sizes, **overrides)).to(device)


def step_function(
    variant: str, model: nn.Module, device: torch.device, evaluate: bool
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step (forward, backward, clip, SGD) or one evaluation forward."""
    optimizer = torch.optim.SGD(model.parameters(), lr=30.0, weight_decay=1.2e-6)
    autocast = {"awd-bf16": torch.bfloat16, "awd-fp16": torch.float16}.get(variant)
    ours = variant != "nn.LSTM"

    def loss_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            if ours:
                return model(inputs, shift_labels=targets, use_cache=False, check_values=False).loss
            return model(inputs, targets)

    def train(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_of(inputs, targets).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()

    def infer(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        model.eval()
        with torch.inference_mode():
            model(inputs, use_cache=False, check_values=False) if ours else model(inputs)

    return infer if evaluate else train


def measure(args: argparse.Namespace, device: torch.device, batch_size: int, evaluate: bool) -> dict[str, Any]:
    sizes = {"vocab_size": args.vocab_size}
    if args.small:
        sizes.update(embedding_size=16, hidden_sizes=[32, 32, 16])
    variants = [v for v in args.variants if device.type == "cuda" or not v.startswith("awd-")]
    models = {variant: build(variant, sizes, device) for variant in variants}
    steps = {variant: step_function(variant, models[variant], device, evaluate) for variant in variants}
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    generator = torch.Generator().manual_seed(1)
    for round_index in range(args.warmup + args.steps):
        ids = torch.randint(0, args.vocab_size, (batch_size, args.bptt + 1), generator=generator).to(device)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
        for variant in order:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            steps[variant](inputs, targets)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= args.warmup:
                times[variant].append(time.perf_counter() - start)
    peaks = {}
    if device.type == "cuda":
        for variant in variants:
            torch.cuda.reset_peak_memory_stats(device)
            steps[variant](inputs, targets)
            torch.cuda.synchronize(device)
            peaks[variant] = torch.cuda.max_memory_allocated(device)
    tokens = batch_size * args.bptt
    baseline = times[variants[0]]
    rows = []
    for variant, values in times.items():
        paired = sorted(b / o for b, o in zip(baseline, values))
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        rows.append({
            "variant": variant,
            "best_tokens_per_second": tokens / min(values),
            "median_tokens_per_second": tokens / statistics.median(values),
            "ratio_best": min(baseline) / min(values),
            "ratio_median": statistics.median(baseline) / statistics.median(values),
            "paired_ratio_median": quartiles[1],
            "paired_ratio_quartiles": [quartiles[0], quartiles[2]],
            "peak_memory_bytes": peaks.get(variant),
        })  # fmt: skip
    return {"batch_size": batch_size, "mode": "evaluation" if evaluate else "training", "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-sizes", default="20", help="comma-separated, e.g. 20,80")
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--variants",
        default="nn.LSTM,awd,plain",
        help=f"comma-separated, the baseline first; from {', '.join(VARIANTS)}",
    )
    parser.add_argument("--eval", action="store_true", help="also measure evaluation (inference-mode forward)")
    parser.add_argument("--tf32", action="store_true", help="allow TensorFloat-32 (CUDA) for every variant")
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--small", action="store_true", help="tiny layers (a dry run of the script, seconds)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": load_averages(),
        "tf32": args.tf32,
        "measurements": [],
    }
    with float32_precision("high" if args.tf32 else "highest"):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            for evaluate in [False, True] if args.eval else [False]:
                results["measurements"].append(measure(args, device, batch_size, evaluate))
    print(
        f"device {results['device']}, threads {results['threads']}, bptt {args.bptt}, {args.steps} steps, tf32 {args.tf32}"
    )
    print("ratio = baseline time / our time (> 1: ours is faster); 'paired' compares steps of the same round")
    for measurement in results["measurements"]:
        print(f"-- {measurement['mode']}, batch {measurement['batch_size']}")
        for row in measurement["rows"]:
            memory = f" | peak {row['peak_memory_bytes'] / 2**20:.0f} MiB" if row["peak_memory_bytes"] else ""
            print(
                f"{row['variant']:12s} best {row['best_tokens_per_second']:9.0f} tok/s, ratio {row['ratio_best']:.3f} | "
                f"median {row['median_tokens_per_second']:9.0f} tok/s, ratio {row['ratio_median']:.3f} | paired ratio "
                f"median {row['paired_ratio_median']:.3f} ({row['paired_ratio_quartiles'][0]:.3f}-{row['paired_ratio_quartiles'][1]:.3f})"
                f"{memory}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
