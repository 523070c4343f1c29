"""State gradients: forward-mode tangent window (ours) vs one backward per output component (naive).

Both compute ``G(t, tau) = d c_t / d x_{t-tau}`` (cell state, ``tau < D``) of the same 1-layer
LSTM language model (``H = 256``, ``E = 64``, ``D = 50``) on the same segment of tokens:

* **ours**: :func:`mtlstm_hf.analysis.state_gradients.state_gradients` (the segment's forward
  batched, the LSTM step linearised in closed form, one batched matmul per step over the ``D * E``
  tangent columns);
* **naive**: the same per-step LSTM function (``naive.cell_step``) under reverse-mode autograd; for every ``t`` and
  every component ``k < H`` one ``torch.autograd.grad(c_t[k], x)``, whose rows ``t - tau`` are
  the ``k``-th rows of ``G(t, tau)``, summed per delay.

The naive cost grows with ``t`` (each backward runs back to the segment start), so it is timed
on ``--naive-steps`` time steps evenly spaced over the segment and extrapolated linearly to the
whole segment (mean time per step times the segment length). The naive matrices of the last
sampled step are checked against ours (marking the source positions as classes). Both run with
the same number of threads (default 1: on a shared machine multi-threaded small ops stall).

    python benchmarks/bench_state_gradients.py [--segment 200] [--naive-steps 8] [--threads 1] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.analysis.state_gradient_steps import model_layer_steps
from mtlstm_hf.analysis.state_gradients import accumulate_state_gradients, state_gradients


def naive_state_gradients(
    model: MTLSTMForCausalLM, stream: torch.Tensor, max_delay: int, steps_to_time: list[int]
) -> tuple[dict[int, torch.Tensor], float]:
    """``{t: G(t, 0..D-1) (D, H, E)}`` for the given ``t`` by one backward per component, and seconds spent."""
    (step,), (hidden_size,), _ = model_layer_steps(model)
    embeddings = model.model.embeddings.weight.detach()[stream].clone().requires_grad_(True)  # (L, E)
    start = time.perf_counter()
    state = torch.zeros(2 * hidden_size)
    cells = []
    for position in range(stream.numel()):
        state = step(state, embeddings[position])
        cells.append(state[hidden_size:])
    gradients = {}
    for t in steps_to_time:
        rows = []
        for component in range(hidden_size):
            (gradient,) = torch.autograd.grad(cells[t][component], embeddings, retain_graph=True)
            rows.append(gradient[[t - tau for tau in range(min(max_delay, t + 1))]])  # (taus, E)
        gradients[t] = torch.stack(rows, 1)  # (taus, H, E)
    return gradients, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--delays", type=int, default=50)
    parser.add_argument("--segment", type=int, default=200)
    parser.add_argument("--naive-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--write", type=Path, help="also write the result block (markdown) to this file, to paste into BENCHMARKS.md"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = MTLSTMConfig(
        vocab_size=args.vocab,
        embedding_size=args.embedding,
        hidden_sizes=[args.hidden],
        timescale_schedules=[None],
        tie_word_embeddings=False,
        embedding_dropout=0.0,
        input_dropout=0.0,
        hidden_dropout=0.0,
        output_dropout=0.0,
        weight_drop=0.0,
    )
    model = MTLSTMForCausalLM(config).eval()
    stream = torch.randint(0, args.vocab, (args.segment,))

    load_before = os.getloadavg()
    start = time.perf_counter()
    ours = state_gradients(model, stream, max_delay=args.delays, segment_length=args.segment)
    ours_seconds = time.perf_counter() - start

    sampled = [int((index + 0.5) * args.segment / args.naive_steps) for index in range(args.naive_steps)]
    naive, naive_sampled_seconds = naive_state_gradients(model, stream, args.delays, sampled)
    naive_seconds = naive_sampled_seconds / len(sampled) * args.segment
    load_after = os.getloadavg()

    # Check: mark the sources of the last sampled step as classes, so sums[tau, class] = G(t, tau).
    t = sampled[-1]
    taus = [tau for tau in (0, 1, 10, args.delays - 1) if tau <= t]
    classes = torch.full((1, args.segment), -1)
    for index, tau in enumerate(taus):
        classes[0, t - tau] = index
    steps, output_sizes, _ = model_layer_steps(model)
    embeddings = model.model.embeddings.weight.detach()[stream][None]
    (marked,) = accumulate_state_gradients(
        steps,
        [torch.zeros(1, 2 * args.hidden)],
        embeddings,
        classes,
        len(taus),
        args.delays,
        args.segment,
        readouts=[(0, slice(args.hidden, 2 * args.hidden))],
        output_sizes=output_sizes,
    )
    error = max(float((marked.sums[tau, index] - naive[t][tau].double()).abs().max()) for index, tau in enumerate(taus))

    ratio = naive_seconds / ours_seconds
    lines = [
        f"command: python benchmarks/bench_state_gradients.py {' '.join(sys.argv[1:])}".rstrip(),
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, {platform.system()}, "
        f"python {platform.python_version()}, torch {torch.__version__}, threads {args.threads}, "
        f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} (cores shared with other jobs)",
        f"model: 1-layer LSTM H={args.hidden}, E={args.embedding}, V={args.vocab}; D={args.delays}, "
        f"one segment of {args.segment} tokens, cell state",
        f"ours:  {ours_seconds:8.2f} s for {args.segment} steps ({1000 * ours_seconds / args.segment:.1f} ms/step), "
        f"{int(ours.counts.sum())} matrices summed",
        f"naive: {naive_sampled_seconds:8.2f} s for {len(sampled)} sampled steps t={sampled} "
        f"-> {naive_seconds:.1f} s extrapolated to {args.segment} steps",
        f"max |G_ours - G_naive| at t={t}, tau={taus}: {error:.2e}",
        f"speed-up: {ratio:.1f}x",
    ]
    print("\n".join(lines))
    if args.write:
        args.write.write_text(
            "# State gradients: forward-mode tangent window vs per-component backward\n\n"
            "Produced by `benchmarks/bench_state_gradients.py` (see its docstring for the method; the naive "
            "time is measured on evenly spaced time steps and extrapolated linearly to the segment).\n\n"
            "```\n" + "\n".join(lines) + "\n```\n"
        )


if __name__ == "__main__":
    main()
