"""Training-step throughput of the paper-sized MTLSTM LM against a plain ``nn.LSTM`` stack.

Both models have the same sizes (vocab 10,000, embedding 400, LSTM 1150/1150/400, tied
softmax) and run forward + backward of the cross-entropy on the same batches; the
baseline has no dropout, no frozen biases and no weight composition. Ours runs in
training mode with all AWD-LSTM regularisation on (DropConnect 0.5, locked and embedding
dropout, AR/TAR), which is what a training step costs in practice; a second row shows
ours with regularisation off.

Steps of the models are interleaved, in an order rotated every round, so that machine
load affects all alike. Reported per model: the fastest step (as ``timeit`` does: on a
shared machine interference only ever adds time), the median step, and the median (with
quartiles) of the per-round ratios baseline/ours. On a noisy shared machine the paired
median over many rounds is the most stable of the three; use ``--steps 30`` or more.

    python benchmarks/bench_model.py [--steps 30] [--batch-size 20] [--bptt 70] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from mtlstm_hf import REGULARIZATION_OFF, MTLSTMConfig, MTLSTMForCausalLM


class PlainLSTMLanguageModel(nn.Module):
    """Embedding -> nn.LSTM stack -> tied linear: the baseline of the same sizes."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embedding_size)
        inputs = [embedding_size] + hidden_sizes[:-1]
        self.layers = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(inputs, hidden_sizes))
        self.lm_head = nn.Linear(hidden_sizes[-1], vocab_size)
        self.lm_head.weight = self.embeddings.weight

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids)
        for layer in self.layers:
            hidden, _ = layer(hidden)
        logits = self.lm_head(hidden)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    config = MTLSTMConfig.from_preset("paper")
    ours = MTLSTMForCausalLM(config).to(device).train()
    ours_plain = MTLSTMForCausalLM(
        MTLSTMConfig.from_preset("paper", **REGULARIZATION_OFF)
    ).to(device).train()
    baseline = PlainLSTMLanguageModel(config.vocab_size, config.embedding_size, config.hidden_sizes).to(device).train()

    def step_ours(model: MTLSTMForCausalLM, ids: torch.Tensor, targets: torch.Tensor) -> None:
        model.zero_grad(set_to_none=True)
        model(ids, shift_labels=targets, use_cache=False).loss.backward()

    def step_baseline(ids: torch.Tensor, targets: torch.Tensor) -> None:
        baseline.zero_grad(set_to_none=True)
        baseline(ids, targets).backward()

    runners = {
        "nn.LSTM stack (baseline)": step_baseline,
        "MTLSTM, AWD regularisation on": lambda i, t: step_ours(ours, i, t),
        "MTLSTM, regularisation off": lambda i, t: step_ours(ours_plain, i, t),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    tokens = args.batch_size * args.bptt
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, config.vocab_size, (args.batch_size, args.bptt + 1), device=device)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        # Rotate the order every round so that no model always runs right after another.
        for name in names[step % len(names):] + names[: step % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            runners[name](inputs, targets)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)

    baseline_name = names[0]
    base_best = min(times[baseline_name])
    base_median = statistics.median(times[baseline_name])
    print(f"device {device}, threads {args.threads}, batch {args.batch_size}, bptt {args.bptt}, {args.steps} steps")
    print("ratio = baseline time / our time (> 1: ours is faster); 'paired' compares steps of the same round")
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        paired = sorted(b / o for b, o in zip(times[baseline_name], values))
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        print(
            f"{name:34s} best {tokens / best:6.0f} tok/s, ratio {base_best / best:.3f} | "
            f"median {tokens / median:6.0f} tok/s, ratio {base_median / median:.3f} | "
            f"paired ratio median {quartiles[1]:.3f} (quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f})"
        )


if __name__ == "__main__":
    main()
