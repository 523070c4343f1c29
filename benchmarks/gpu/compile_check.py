"""Stage 6 of the GPU check: ``torch.compile`` under the compile policy (each layer's recurrence runs
eagerly on the fused kernel; the rest is compiled): (a) an evaluation forward of fixed length,
compile seconds and steady tokens/s against eager; (b) windows of lengths 70, 64, 75 with a carried
state: the graphs compiled (one more, dynamic, after the first new length); (c) one training step
with the optimizer: compile seconds and steady tokens/s against eager.

    python benchmarks/gpu/compile_check.py --json compile.json [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM


def timed(function, device: torch.device, repeats: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--dry-run", action="store_true", help="tiny layers on the CPU")
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    sizes = dict(embedding_size=16, hidden_sizes=[32, 32, 16]) if args.dry_run else {}
    batch, repeats = (4, 2) if args.dry_run else (20, 20)
    torch.manual_seed(0)
    model = MTLSTMForCausalLM(MTLSTMConfig.from_preset("paper", vocab_size=10_000, **sizes)).to(device)
    ids = torch.randint(0, 10_000, (batch, 71), device=device)
    backend = "eager" if args.dry_run else "inductor"  # a dry run checks the plumbing, not inductor
    results: dict[str, Any] = {"device": str(device), "backend": backend}
    parts = {}

    def evaluation() -> dict[str, Any]:
        torch._dynamo.reset()
        model.eval()
        compiled = torch.compile(model, backend=backend)
        with torch.inference_mode():
            started = time.perf_counter()
            compiled(ids[:, :70])
            compile_seconds = time.perf_counter() - started
            eager = timed(lambda: model(ids[:, :70]), device, repeats)
            fast = timed(lambda: compiled(ids[:, :70]), device, repeats)
        return {"compile_seconds": compile_seconds, "eager_tokens_per_second": batch * 70 / eager,
                "compiled_tokens_per_second": batch * 70 / fast, "speedup": eager / fast}  # fmt: skip

    def lengths() -> dict[str, Any]:
        torch._dynamo.reset()
        model.eval()
        compiled = torch.compile(model, backend=backend)
        graphs = []
        with torch.inference_mode():
            state = model(ids[:, :5]).cache
            for length in (70, 64, 75, 58):
                state = compiled(ids[:, :length], cache=state).cache
                graphs.append(counters["stats"]["unique_graphs"])
        return {
            "unique_graphs_after_each_length": graphs,
            "stable_after_the_second": graphs[1] == graphs[2] == graphs[3],
        }

    def training() -> dict[str, Any]:
        torch._dynamo.reset()
        model.train()
        compiled = torch.compile(model, backend=backend)
        optimizer = torch.optim.SGD(model.parameters(), lr=30.0)

        def step(forward) -> None:
            optimizer.zero_grad(set_to_none=True)
            forward(ids[:, :-1], shift_labels=ids[:, 1:], check_values=False).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()

        started = time.perf_counter()
        step(compiled)
        compile_seconds = time.perf_counter() - started
        eager = timed(lambda: step(model), device, repeats)
        fast = timed(lambda: step(compiled), device, repeats)
        return {"compile_seconds": compile_seconds, "eager_tokens_per_second": batch * 70 / eager,
                "compiled_tokens_per_second": batch * 70 / fast, "speedup": eager / fast}  # fmt: skip

    failed = False
    for name, part in (("evaluation", evaluation), ("lengths", lengths), ("training", training)):
        try:
            parts[name] = {"status": "pass", **part()}
        except Exception as error:  # noqa: BLE001 (recorded)
            failed = True
            parts[name] = {
                "status": "fail",
                "error": f"{type(error).__name__}: {error}",
                "trace": traceback.format_exc(limit=5),
            }
        print(name, json.dumps(parts[name])[:500], flush=True)
        results["parts"] = parts
        Path(args.json).write_text(
            json.dumps(results, indent=2) + "\n"
        )  # after each part: a stopped stage keeps the rest
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
