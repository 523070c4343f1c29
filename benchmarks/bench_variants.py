"""Throughput of the Levy et al. (2018) cell variants against ``torch.nn.LSTM`` (a script, not a test).

One layer 400 -> 1150, batch 20, sequence lengths 70 and 1024, forward + backward of
``outputs.sum()``, tokens per second. Methods are interleaved within every repetition (so a
busy shared machine slows all of them alike) and each is summarised by its median time.

Also measured:
* ``lstm-srnn-hidden`` against its own sequential reference (``models/mtlstm/naive.py``'s ``reference_sequence``, a
  per-step loop) and against "batched gates + a Python loop for the cell" (isolates the scan);
* gate/cell extraction (``analysis.gates.gates_and_cells``, standard cell, no grad) against a plain
  no-grad forward of the same layer.

Usage::

    python benchmarks/bench_variants.py                # full run (~10 min on 2 cores)
    python benchmarks/bench_variants.py --lengths 70   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from mtlstm_hf.analysis.gates import gates_and_cells
from mtlstm_hf.models.mtlstm.kernel_lstm import lstm_sequence
from mtlstm_hf.models.mtlstm.kernel_variants import _gated_input_projection
from mtlstm_hf.models.mtlstm.layouts import CELL_TYPES, cell_layout
from mtlstm_hf.models.mtlstm.naive import parameter_shapes, reference_sequence, variant_sequence

BATCH, INPUT, HIDDEN = 20, 400, 1150
TARGETS = {  # minimum tokens/s ratio against nn.LSTM
    "lstm": 0.95,
    "lstm-srnn": 0.5,
    "lstm-srnn-out": 0.5,
    "lstm-srnn-hidden": 1.5,
}


def parameters(cell_type: str) -> dict[str, torch.Tensor | None]:
    shapes = parameter_shapes(cell_layout(cell_type), INPUT, HIDDEN)
    bound = HIDDEN**-0.5

    def draw(shape: tuple[int, ...] | None) -> torch.Tensor | None:
        return None if shape is None else torch.empty(shape).uniform_(-bound, bound).requires_grad_()

    return {name: draw(shape) for name, shape in shapes.items()}


def interleaved_timings(
    methods: dict[str, Callable[[], None]], repetitions: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """``(median, minimum)`` wall time (s) of each method; every repetition runs all methods in turn.

    The median is the headline number; the minimum is the least-disturbed run, reported too
    because the benchmark machine is shared (other processes raise the load average above 2).
    """
    for _ in range(warmup):
        for method in methods.values():
            method()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repetitions):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(values), min(values)) for name, values in times.items()}


def print_table(
    title: str,
    timings: dict[str, tuple[float, float]],
    baseline: str,
    speedup_over_baseline: bool,
    targets: dict[str, tuple[str, float]],
    tokens: int | None = None,
) -> None:
    """Markdown table. Ratio = baseline time / time (a speed-up) or time / baseline time (a cost).

    ``targets[name] = (">=" or "<=", bound)`` is checked on the median ratio and on the minimum one.
    """
    print(f"\n## {title} (load average {os.getloadavg()[0]:.2f})", flush=True)
    kind = f"speed-up vs {baseline}" if speedup_over_baseline else f"cost vs {baseline}"
    token_column = " tokens/s (median) |" if tokens else ""
    print(f"| method | s (median) | s (min) |{token_column} {kind}, median | same, min | target |")
    print("|---|---|---|" + ("---|" if tokens else "") + "---|---|---|")
    base_median, base_min = timings[baseline]
    for name, (median, minimum) in timings.items():
        if speedup_over_baseline:
            ratios = (base_median / median, base_min / minimum)
        else:
            ratios = (median / base_median, minimum / base_min)
        verdict = ""
        if name in targets:
            sense, bound = targets[name]
            met = [ratio >= bound if sense == ">=" else ratio <= bound for ratio in ratios]
            verdict = f"{sense} {bound}: " + ("met" if all(met) else "met on min only" if met[1] else "NOT MET")
        token_cell = f" {tokens / median:.0f} |" if tokens else ""
        print(
            f"| {name} | {median:.3f} | {minimum:.3f} |{token_cell} {ratios[0]:.2f}x | {ratios[1]:.2f}x | {verdict} |"
        )


def training_step(function: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        function().sum().backward()

    return run


def loop_scan_srnn_hidden(inputs: torch.Tensor, initial_cell: torch.Tensor, params: dict) -> torch.Tensor:
    """``lstm-srnn-hidden`` with batched gates but a Python loop for the cell (no scan)."""
    layout = cell_layout("lstm-srnn-hidden")
    projection = _gated_input_projection(layout, inputs, params["weight_ih"], params["bias"])
    gates = torch.sigmoid(projection[..., : 3 * HIDDEN])
    input_gate, forget_gate, output_gate = gates.split(HIDDEN, -1)
    update = input_gate * projection[..., 3 * HIDDEN :]
    cell, cells = initial_cell, []
    for forget_t, update_t in zip(forget_gate.unbind(1), update.unbind(1)):
        cell = forget_t * cell + update_t
        cells.append(cell)
    return output_gate * torch.tanh(torch.stack(cells, 1))


def autograd_loop_srnn(inputs: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor, params: dict) -> torch.Tensor:
    """``lstm-srnn`` as a plain autograd per-step loop (what the hand-written backward replaces)."""
    layout = cell_layout("lstm-srnn")
    projection = _gated_input_projection(layout, inputs, params["weight_ih"], params["bias"])
    gate_projection, candidate = projection[..., : 3 * HIDDEN], projection[..., 3 * HIDDEN :]
    recurrent_weight = params["weight_hh"].t()
    outputs = []
    for step in range(inputs.shape[1]):
        gates = torch.sigmoid(torch.addmm(gate_projection[:, step], hidden, recurrent_weight))
        input_gate, forget_gate, output_gate = gates.split(HIDDEN, -1)
        cell = forget_gate * cell + input_gate * candidate[:, step]
        hidden = output_gate * torch.tanh(cell)
        outputs.append(hidden)
    return torch.stack(outputs, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[70, 1024])
    parser.add_argument("--repetitions", type=int, default=9, help="at lengths <= 256")
    parser.add_argument("--long-repetitions", type=int, default=5, help="at lengths > 256")
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}"
    )
    reference_lstm = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True)
    params = {cell_type: parameters(cell_type) for cell_type in CELL_TYPES}

    for steps in args.lengths:
        long = steps > 256
        repetitions = args.long_repetitions if long else args.repetitions
        warmup = 0 if long else 1  # the short run already warmed every code path up
        inputs = torch.randn(BATCH, steps, INPUT, requires_grad=True)
        hidden = torch.randn(BATCH, HIDDEN) * 0.1
        cell = torch.randn(BATCH, HIDDEN) * 0.1
        tokens = BATCH * steps

        # 1. forward + backward against nn.LSTM
        methods = {"nn.LSTM": training_step(lambda: reference_lstm(inputs)[0])}
        for cell_type in CELL_TYPES:
            methods[cell_type] = training_step(
                lambda cell_type=cell_type: variant_sequence(cell_type, inputs, hidden, cell, **params[cell_type])[0]
            )
        if not long:  # informative only: why lstm-srnn has a hand-written backward
            methods["lstm-srnn, plain autograd loop (not used)"] = training_step(
                lambda: autograd_loop_srnn(inputs, hidden, cell, params["lstm-srnn"])
            )
        print_table(
            f"T={steps}: forward+backward, batch {BATCH}, {INPUT}->{HIDDEN}, {repetitions} repetitions",
            interleaved_timings(methods, repetitions, warmup),
            "nn.LSTM",
            speedup_over_baseline=True,
            targets={name: (">=", bound) for name, bound in TARGETS.items()},
            tokens=tokens,
        )

        # 2. lstm-srnn-hidden: parallel scan vs sequential versions
        if long:
            srnn_params = params["lstm-srnn-hidden"]
            methods = {
                "reference_sequence (per-step loop)": training_step(
                    lambda: reference_sequence("lstm-srnn-hidden", inputs, hidden, cell, **srnn_params)[0]
                ),
                "batched gates + Python loop for the cell": training_step(
                    lambda: loop_scan_srnn_hidden(inputs, cell, srnn_params)
                ),
                "variant_sequence (batched gates + parallel scan)": training_step(
                    lambda: variant_sequence("lstm-srnn-hidden", inputs, hidden, cell, **srnn_params)[0]
                ),
            }
            print_table(
                f"T={steps}: lstm-srnn-hidden vs sequential versions, forward+backward, {repetitions} repetitions",
                interleaved_timings(methods, repetitions, warmup=0),
                "reference_sequence (per-step loop)",
                speedup_over_baseline=True,
                targets={"variant_sequence (batched gates + parallel scan)": (">=", 3.0)},
            )

        # 3. gate/cell extraction vs a plain forward (standard cell, inference)
        lstm_params = params["lstm"]
        with torch.no_grad():
            outputs = lstm_sequence(inputs, hidden, cell, **lstm_params)[0]
            methods = {
                "plain forward (lstm_sequence)": lambda: lstm_sequence(inputs, hidden, cell, **lstm_params),
                "gates_and_cells (incl. its forward)": lambda: gates_and_cells(
                    "lstm", inputs, hidden, cell, **lstm_params
                ),
                "gates_and_cells (hidden_outputs given)": lambda: gates_and_cells(
                    "lstm", inputs, hidden, cell, **lstm_params, hidden_outputs=outputs
                ),
            }
            timings = interleaved_timings(methods, repetitions, warmup)
        print_table(
            f"T={steps}: gate/cell extraction, standard cell, no grad, {repetitions} repetitions",
            timings,
            "plain forward (lstm_sequence)",
            speedup_over_baseline=False,
            targets={"gates_and_cells (incl. its forward)": ("<=", 1.5)},
        )
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
