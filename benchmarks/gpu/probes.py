"""Stage 1 of the GPU check: one short probe per hazard of the CUDA path (the review in
``../shared/docs/GPU-READINESS.md``), each in its own ``try`` so that one failure does not hide the others. Each probe records
``{"status": "pass" | "fail" | "skipped", "seconds", "details" | "error"}``.

    python benchmarks/gpu/probes.py --json probes.json           # on the GPU
    python benchmarks/gpu/probes.py --json probes.json --dry-run # on a CPU: the probes' code, tiny sizes

A probe fails on an exception or on a value outside what is correct (``expect``).

P1 a training forward + backward (cuDNN's training kernel) · P2 autograd through the eval-mode
model (a Jacobian) · P3/P4 CUDA autocast bf16/fp16 with three layers (dtypes per layer) · P5
DropConnect without a host synchronisation · P6 the weight-format warning and the cost of
unflattened weights against ``nn.LSTM`` · P7 the memory-span analysis against the CPU · P8 host
synchronisations of a training step, an evaluation window and a generation step · P9 a model
converted to bfloat16: which kernel runs, how fast · P10 paper-sized logits against the CPU with
TensorFloat-32 off and on.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.devices import float32_precision

PROBES: dict[str, Callable[[Any], dict[str, Any]]] = {}


def probe(name: str, cuda_only: bool = False) -> Callable:
    def register(function: Callable) -> Callable:
        function.cuda_only = cuda_only
        PROBES[name] = function
        return function

    return register


class Context:
    def __init__(self, device: torch.device, dry_run: bool) -> None:
        self.device, self.dry_run = device, dry_run
        self.hidden = [32, 32, 16] if dry_run else [1150, 1150, 400]
        self.embedding = 16 if dry_run else 400

    def model(self, **overrides: Any) -> MTLSTMForCausalLM:
        fields = dict(vocab_size=200, embedding_size=self.embedding, hidden_sizes=self.hidden)
        fields.update(overrides)
        torch.manual_seed(0)
        return MTLSTMForCausalLM(MTLSTMConfig.from_preset("paper", **fields))

    def ids(self, batch: int = 4, steps: int = 30) -> torch.Tensor:
        return torch.randint(0, 200, (batch, steps), generator=torch.Generator().manual_seed(1))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@probe("P1_training_backward")
def training_backward(ctx: Context) -> dict[str, Any]:
    model = ctx.model(weight_drop=0.5).to(ctx.device).train()
    ids = ctx.ids().to(ctx.device)
    model(ids, labels=ids).loss.backward()
    return {"grad_norm": float(sum(p.grad.norm() ** 2 for p in model.parameters()) ** 0.5)}


@probe("P2_eval_mode_jacobian")
def eval_mode_jacobian(ctx: Context) -> dict[str, Any]:
    model = ctx.model(hidden_sizes=[32, 32, 16], embedding_size=16).to(ctx.device).eval()
    embeddings = model.get_input_embeddings()(ctx.ids(1, 6).to(ctx.device))[0].detach()

    def final_state(inputs: torch.Tensor) -> torch.Tensor:
        return model.model(inputs_embeds=inputs[None], use_cache=True).cache.hidden[1][0]

    jacobian = torch.autograd.functional.jacobian(final_state, embeddings)
    return {"jacobian_shape": list(jacobian.shape), "finite": bool(torch.isfinite(jacobian).all())}


def _autocast_probe(ctx: Context, dtype: torch.dtype) -> dict[str, Any]:
    model = ctx.model().to(ctx.device).train()
    ids = ctx.ids().to(ctx.device)
    with torch.autocast(ctx.device.type, dtype=dtype):
        output = model(ids, labels=ids, output_hidden_states=True)
    output.loss.backward()
    details = {
        "layer_output_dtypes": [str(h.dtype) for h in output.hidden_states[1:]],
        "logits_dtype": str(output.logits.dtype),
        "loss_dtype": str(output.lm_loss.dtype),
        "forget_bias_dtype": str(model.model.layers[1].gate_biases.forget_gate.dtype),
    }
    expect(
        all(d == "torch.float32" for d in details["layer_output_dtypes"]), "a recurrence ran in half precision", details
    )
    expect(
        details["loss_dtype"] == details["forget_bias_dtype"] == "torch.float32",
        "loss or timescale biases not float32",
        details,
    )
    return details


@probe("P3_autocast_bf16", cuda_only=True)
def autocast_bf16(ctx: Context) -> dict[str, Any]:
    return _autocast_probe(ctx, torch.bfloat16)


@probe("P4_autocast_fp16", cuda_only=True)
def autocast_fp16(ctx: Context) -> dict[str, Any]:
    return _autocast_probe(ctx, torch.float16)


@probe("P5_dropconnect_without_sync")
def dropconnect_without_sync(ctx: Context) -> dict[str, Any]:
    from mtlstm_hf.models.mtlstm.layers import drop_connect

    rows, columns = (64, 32) if ctx.dry_run else (4600, 1150)
    weight = torch.rand(rows, columns, device=ctx.device) + 0.5
    ctx.sync()
    if ctx.device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        dropped = drop_connect(weight, 0.5, True)
    finally:
        if ctx.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    kept = (dropped != 0).float().mean().item()
    details = {"kept_fraction": kept, "scale_ok": bool(torch.equal(dropped[dropped != 0], 2 * weight[dropped != 0]))}
    expect(
        abs(kept - 0.5) < (0.05 if ctx.dry_run else 0.005) and details["scale_ok"],
        "DropConnect's statistics are off",
        details,
    )
    return details


@probe("P6_weight_format_and_cost")
def weight_format_and_cost(ctx: Context) -> dict[str, Any]:
    from mtlstm_hf.models.mtlstm.kernel_lstm import lstm_sequence

    hidden, inputs_size = (32, 16) if ctx.dry_run else (1150, 1150)
    torch.manual_seed(0)
    reference = torch.nn.LSTM(inputs_size, hidden, batch_first=True).to(ctx.device)
    weights = [t.detach().clone().requires_grad_() for t in (reference.weight_ih_l0, reference.weight_hh_l0)]
    bias = (reference.bias_ih_l0 + reference.bias_hh_l0).detach().clone().requires_grad_()
    x = torch.randn(20, 70, inputs_size, device=ctx.device)
    zeros = torch.zeros(20, hidden, device=ctx.device)

    def ours() -> None:
        outputs, _, _ = lstm_sequence(x, zeros, zeros, weights[0], weights[1], bias)
        outputs.sum().backward()

    def theirs() -> None:
        outputs, _ = reference(x)
        outputs.sum().backward()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours()
    timings = {}
    for name, function in (("ours", ours), ("nn.LSTM", theirs)) * 2:
        for _ in range(3):
            function()
        ctx.sync()
        started = time.perf_counter()
        for _ in range(10):
            function()
        ctx.sync()
        timings[name] = (time.perf_counter() - started) / 10
    return {
        # cuDNN warns once per process: an earlier probe may have used it up (recorded, not required).
        "weight_format_warning": any("contiguous chunk" in str(w.message) for w in caught),
        "seconds_per_call": timings,
        "ours_over_nn_lstm": timings["ours"] / timings["nn.LSTM"],
    }


@probe("P7_memory_span")
def memory_span(ctx: Context) -> dict[str, Any]:
    from mtlstm_hf.analysis.memory_span import estimate_memory_span

    model = ctx.model(hidden_sizes=[64, 64, 16], embedding_size=16).eval()
    stream = torch.randint(0, 200, (300,), generator=torch.Generator().manual_seed(2))
    expected = estimate_memory_span(model, stream, max_distance=20, window=70).mean_norm
    got = estimate_memory_span(copy.deepcopy(model).to(ctx.device), stream, max_distance=20, window=70).mean_norm
    details = {"max_abs_difference": float((got.cpu() - expected).abs().max())}
    expect(details["max_abs_difference"] < 1e-5, "the memory span differs from the CPU's", details)
    return details


@probe("P8_host_synchronisations", cuda_only=True)
def host_synchronisations(ctx: Context) -> dict[str, Any]:
    from mtlstm_hf.evaluation import token_log_probs

    model = ctx.model().to(ctx.device)
    ids = ctx.ids(20, 71).to(ctx.device)

    def count(function: Callable[[], Any]) -> list[str]:
        ctx.sync()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                function()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return [str(w.message).splitlines()[0][:120] for w in caught if "synchroniz" in str(w.message)]

    model.train()
    training = count(lambda: model(ids[:, :-1], shift_labels=ids[:, 1:], check_values=False).loss.backward())
    model.eval()
    stream = ids.flatten()[:141].cpu()
    evaluation = count(lambda: token_log_probs(model, stream, batch_size=1, window=70))
    with torch.no_grad():
        generation = count(lambda: model.generate(ids[:2, :10], max_new_tokens=1, do_sample=False, pad_token_id=0))
    details = {"training_forward_backward": training, "evaluation_two_windows": evaluation,
               "generation_one_token": generation, "counts": [len(training), len(evaluation), len(generation)]}  # fmt: skip
    expect(len(training) == 0, "a training forward and backward synchronised with the host", details)
    return details


@probe("P9_bfloat16_model", cuda_only=True)
def bfloat16_model(ctx: Context) -> dict[str, Any]:
    model = ctx.model().to(ctx.device).eval()
    ids = ctx.ids(20, 70).to(ctx.device)
    timings, kernels = {}, {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        converted = copy.deepcopy(model).to(dtype)
        with torch.no_grad():
            converted(ids)
            ctx.sync()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
                converted(ids)
            kernels[name] = sorted(
                {e.name for e in profile.events() if "rnn" in e.name.lower() or "lstm" in e.name.lower()}
            )
            started = time.perf_counter()
            for _ in range(10):
                converted(ids)
            ctx.sync()
            timings[name] = (time.perf_counter() - started) / 10
    return {"seconds_per_forward": timings, "recurrent_kernels": kernels}


@probe("P10_logits_against_the_cpu", cuda_only=True)
def logits_against_the_cpu(ctx: Context) -> dict[str, Any]:
    model = ctx.model().eval()
    ids = ctx.ids(4, 70)
    with torch.no_grad():
        expected = model(ids).logits
        gpu = copy.deepcopy(model).to(ctx.device)
        results = {}
        for precision in ("highest", "high"):
            with float32_precision(precision):
                got = gpu(ids.to(ctx.device)).logits.cpu()
            difference = (got - expected).abs()
            results[precision] = {
                "max_abs": float(difference.max()),
                "max_rel": float((difference / expected.abs().clamp(min=1e-3)).max()),
            }
    expect(results["highest"]["max_abs"] < 1e-3, "float32 logits differ from the CPU's by more than rounding", results)
    return results


class ProbeFailed(AssertionError):
    """A probe measured a value outside what is correct (the details are in the message)."""


def expect(condition: bool, what: str, details: dict[str, Any]) -> None:
    if not condition:
        raise ProbeFailed(f"{what}: {json.dumps(details)[:600]}")


def run(name: str, function: Callable[[Context], dict[str, Any]], ctx: Context) -> dict[str, Any]:
    if function.cuda_only and ctx.device.type != "cuda":
        return {"status": "skipped", "reason": "needs CUDA"}
    started = time.perf_counter()
    try:
        details = function(ctx)
        status = "pass"
        error = None
    except Exception as caught:  # noqa: BLE001 (each probe's failure is its result)
        details, status = None, "fail"
        error = f"{type(caught).__name__}: {caught}\n{traceback.format_exc(limit=4)}"
    record = {"status": status, "seconds": round(time.perf_counter() - started, 3)}
    record.update({"details": details} if error is None else {"error": error})
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--dry-run", action="store_true", help="on the CPU with tiny sizes (CUDA-only probes skip)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    ctx = Context(device, args.dry_run)
    results = {}
    for name, function in PROBES.items():
        results[name] = run(name, function, ctx)
        print(f"{name}: {results[name]['status']} ({results[name].get('seconds', 0)} s) "
              f"{json.dumps(results[name].get('details') or results[name].get('error') or results[name].get('reason'))[:400]}",
              flush=True)  # fmt: skip
    Path(args.json).write_text(json.dumps({"device": str(device), "probes": results}, indent=2) + "\n")
    return 1 if any(r["status"] == "fail" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
