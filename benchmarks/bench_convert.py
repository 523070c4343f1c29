"""``mtlstm-convert`` on a paper-sized checkpoint: seconds, against a plain load + save of the same model.

The checkpoint is the HuthLab multi-timescale model's layout at the paper's size (embedding 400,
LSTM 1150/1150/400, tied softmax, vocabulary 10,000: 24M parameters), random weights with the
reference code's assigned biases (layer 1 T=3|4, layer 2 the inverse gamma reference grid with
its T=0 unit), saved as a ``state_dict`` file: the costliest path (every tensor checked, both
layers' timescales recovered exactly). The vocabulary is the PTB corpus folder
(``../shared/data/ptb``, 10,000 words, read the way AWD-LSTM's ``Dictionary`` reads it) when it
exists, otherwise a word-list file of 10,000 words.

Timed, interleaved ``--repetitions`` times in one process (imports and the first call excluded):

* **convert**: :func:`mtlstm_hf.convert.convert_checkpoint` into a fresh folder: safe read,
  layout and shape checks, timescales, vocabulary and tokenizer, model build, atomic
  ``save_pretrained`` + tokenizer + ``conversion.json``;
* **baseline**: ``torch.load(weights_only=True)`` of the same file, then ``save_pretrained`` of an
  already converted model and its tokenizer into a fresh folder: the I/O any conversion needs.

It prints the median and minimum seconds of each, the ratio convert / baseline, and the seconds of
reading the vocabulary alone.

    python benchmarks/bench_convert.py [--repetitions 5] [--vocab DIR_OR_FILE] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch
from machine import cpu_name, load_averages  # benchmarks/machine.py
from torch import nn

PTB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"


def paper_sized_state_dict(vocab: int) -> dict[str, torch.Tensor]:
    """The reference model's state_dict keys and sizes, biases assigned as model_mts.py does."""
    torch.manual_seed(0)
    sizes, inputs = [1150, 1150, 400], [400, 1150, 1150]
    encoder = nn.Embedding(vocab, 400)
    state = {"encoder.weight": encoder.weight.detach()}
    chrono = [np.zeros(size) for size in sizes]
    chrono[0][:575], chrono[0][575:] = -np.log(np.exp(1 / 3) - 1), -np.log(np.exp(1 / 4) - 1)
    with np.errstate(divide="ignore"):
        chrono[1] = -np.log(np.exp(1 / scipy.stats.invgamma.isf(np.linspace(0, 1, 1151), a=0.56, scale=1)[1:]) - 1)
    for index, (n_in, n_out) in enumerate(zip(inputs, sizes)):
        lstm = nn.LSTM(n_in, n_out)
        prefix = f"rnns.{index}.module."
        bias_ih, bias_hh = lstm.bias_ih_l0.detach().clone(), lstm.bias_hh_l0.detach().clone()
        if index < 2:
            bias_ih[: 2 * n_out] = 0.0
            bias_hh[: 2 * n_out] = torch.from_numpy(np.hstack((-chrono[index], chrono[index])).astype(np.float32))
        state.update(
            {
                prefix + "weight_ih_l0": lstm.weight_ih_l0.detach(),
                prefix + "weight_hh_l0_raw": lstm.weight_hh_l0.detach(),
                prefix + "bias_ih_l0": bias_ih,
                prefix + "bias_hh_l0": bias_hh,
            }
        )
    state["decoder.weight"] = state["encoder.weight"]  # tied: one shared tensor in the file
    state["decoder.bias"] = torch.zeros(vocab)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--vocab", default=None, help="corpus folder or word list of 10,000 words (default: PTB if present)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mtlstm_hf.convert import convert_checkpoint, read_vocabulary

    work = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        vocab = Path(args.vocab) if args.vocab else (PTB if PTB.is_dir() else None)
        if vocab is None:
            vocab = work / "words.txt"
            vocab.write_text("\n".join(["<unk>", "<eos>"] + [f"w{i}" for i in range(9998)]) + "\n")
        started = time.perf_counter()
        vocabulary_size = len(read_vocabulary(vocab))
        vocab_seconds = time.perf_counter() - started
        weights = work / "paper.state_dict.pt"
        state = paper_sized_state_dict(vocabulary_size)
        torch.save(state, weights)
        parameters = sum(t.numel() for k, t in state.items() if k != "decoder.weight")
        del state

        print(
            f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
        )
        print(
            f"checkpoint: huthlab-mts layout, {parameters:,} parameters, {weights.stat().st_size / 2**20:.1f} MiB; "
            f"vocabulary: {vocab} ({vocabulary_size:,} words, read in {vocab_seconds:.2f} s)"
        )
        print(f"load average at start: {load_averages()}")

        warm = convert_checkpoint(weights, vocab, work / "warm", "huthlab-mts")  # first call: lazy imports, caches
        print(warm.summary().splitlines()[1])
        print(warm.summary().splitlines()[2])

        def run_convert(index: int) -> float:
            started = time.perf_counter()
            convert_checkpoint(weights, vocab, work / f"c{index}", "huthlab-mts")
            seconds = time.perf_counter() - started
            shutil.rmtree(work / f"c{index}")
            return seconds

        def run_baseline(index: int) -> float:
            started = time.perf_counter()
            torch.load(weights, map_location="cpu", weights_only=True)
            warm.model.save_pretrained(str(work / f"b{index}"))
            warm.tokenizer.save_pretrained(str(work / f"b{index}"))
            seconds = time.perf_counter() - started
            shutil.rmtree(work / f"b{index}")
            return seconds

        convert_times, baseline_times = [], []
        for index in range(args.repetitions):
            if index % 2 == 0:
                convert_times.append(run_convert(index))
                baseline_times.append(run_baseline(index))
            else:
                baseline_times.append(run_baseline(index))
                convert_times.append(run_convert(index))
        for name, times in (("convert", convert_times), ("baseline (torch.load + save_pretrained)", baseline_times)):
            print(
                f"{name}: median {statistics.median(times):.2f} s, min {min(times):.2f} s "
                f"({', '.join(f'{t:.2f}' for t in times)})"
            )
        print(
            f"ratio convert / baseline: median {statistics.median(convert_times) / statistics.median(baseline_times):.2f}, "
            f"min {min(convert_times) / min(baseline_times):.2f}"
        )
        print(f"load average at end: {load_averages()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
