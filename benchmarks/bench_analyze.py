"""``mtlstm-analyze`` with default settings: seconds per analysis, and the batched ablation vs a loop.

Part 1 runs every analysis with the default :class:`~mtlstm_hf.analysis.AnalysisSettings` on the
validation split of the WikiText-2 sample shipped with the package (what ``mtlstm-analyze
CHECKPOINT`` does for a checkpoint trained on it), figures included, and prints the seconds of
each (``report["seconds"]``) and of the whole run.

Part 2 times the ablation of ``--chunks`` chunks of 50 units of the ablated layer (the
inverse-gamma layer) two ways on the same stream, interleaved ``--repetitions`` times:

* **loop** (the reference): one full ``token_log_probs`` evaluation intact and one per chunk inside
  ``ablate_units`` (what the code did before, and what the authors' reference code does);
* **batched**: :func:`mtlstm_hf.analysis.ablation_log_probs`, every chunk in one forward with one
  ablation mask per batch row.

It prints the median and minimum seconds, the ratio loop / batched (target >= 4 for 8 chunks) and
the largest difference between the two sets of log-probabilities.

Why the ratio is what it is: the layers up to the ablated one run once in the batched pass, but
the layers above it and the softmax layer (a ``(rows x H) @ (H x V)`` product and a log-softmax
over the vocabulary) are computed for every row group in both ways; where they are a large part of
one evaluation (the ``small`` model: the softmax layer over 6,754 words is about half of the batched
time), the ratio stays below the number of chunks.

Without ``--checkpoint`` the model is the ``--preset`` (default ``small``: embedding 200, LSTM
400/400/200, inverse gamma on layer 2; ``paper``: 400, 1150/1150/400), randomly initialised on the
sample's vocabulary: the cost does not depend on the weights. With ``--checkpoint`` (e.g.
``outputs/mtlstm-small/best_model``) its tokenizer is used.

    python benchmarks/bench_analyze.py [--checkpoint DIR | --preset small|paper] [--threads N]
                                       [--repetitions 3] [--chunks 8] [--skip-analyses]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
from machine import cpu_name, load_averages  # benchmarks/machine.py


def _model_and_tokenizer(checkpoint: str | None, preset: str):
    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
    from mtlstm_hf.data import build_word_tokenizer, load_corpus, sample_corpus_dir

    if checkpoint is not None:
        from mtlstm_hf.evaluation import load_checkpoint

        return load_checkpoint(checkpoint)
    tokenizer = build_word_tokenizer(load_corpus(sample_corpus_dir())["train"])
    config = MTLSTMConfig.from_preset(
        preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    torch.manual_seed(0)
    return MTLSTMForCausalLM(config).eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model folder (default: a fresh model of --preset)")
    parser.add_argument(
        "--preset", default="small", choices=("small", "paper"), help="fresh model without --checkpoint"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repetitions", type=int, default=3, help="interleaved rounds of loop and batched ablation")
    parser.add_argument("--chunks", type=int, default=8, help="ablated chunks of 50 units (layer 2 has 400 units: 8)")
    parser.add_argument("--skip-analyses", action="store_true", help="only part 2 (the ablation comparison)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from mtlstm_hf.analysis import AnalysisSettings, ablate_units, ablation_log_probs, run_analyses, timescale_chunks
    from mtlstm_hf.analysis.report import default_ablation_layer
    from mtlstm_hf.data import load_corpus, sample_corpus_dir, split_to_stream
    from mtlstm_hf.evaluation import token_log_probs

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )
    print(f"load average at start: {load_averages()}")
    model, tokenizer = _model_and_tokenizer(args.checkpoint, args.preset)
    corpus = load_corpus(sample_corpus_dir())
    valid = split_to_stream(corpus, "validation", tokenizer)
    train = split_to_stream(corpus, "train", tokenizer)
    print(
        f"model: hidden sizes {list(model.config.hidden_sizes)}, vocabulary {model.config.vocab_size}; "
        f"validation split {valid.numel()} tokens"
    )

    if not args.skip_analyses:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            report = run_analyses(model, tokenizer, valid, [train], None, AnalysisSettings(), folder, figures=True)
            total = time.perf_counter() - start
        print("\nPart 1: every analysis, default settings, figures included (seconds)")
        for name, seconds in report["seconds"].items():
            print(f"  {name:<20} {seconds:8.1f}")
        print(f"  {'whole run':<20} {total:8.1f}   (skipped: {report['skipped'] or 'none'})")
        print(f"  load average after part 1: {load_averages()}")

    layer = default_ablation_layer(model)
    assigned = model.assigned_timescales()[layer]
    chunks = (
        timescale_chunks(assigned, 50)[: args.chunks]
        if assigned is not None
        else list(torch.arange(model.config.hidden_sizes[layer]).split(50))[: args.chunks]
    )
    loop_times, batched_times = [], []
    largest = 0.0
    for _ in range(args.repetitions):
        start = time.perf_counter()
        reference = [token_log_probs(model, valid)]
        for chunk in chunks:
            with ablate_units(model, {layer: chunk}):
                reference.append(token_log_probs(model, valid))
        loop_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        batched = ablation_log_probs(model, valid, layer, chunks)
        batched_times.append(time.perf_counter() - start)
        largest = max(largest, float((batched - torch.stack(reference)).abs().max()))
    loop_median, batched_median = statistics.median(loop_times), statistics.median(batched_times)
    print(
        f"\nPart 2: ablation of {len(chunks)} chunks of layer {layer + 1} + intact, {valid.numel()} tokens, "
        f"batch 1, window 70, {args.repetitions} interleaved rounds"
    )
    print(f"  loop (one evaluation per chunk): median {loop_median:.2f} s, min {min(loop_times):.2f} s")
    print(f"  batched (one pass):              median {batched_median:.2f} s, min {min(batched_times):.2f} s")
    print(
        f"  ratio loop / batched: median {loop_median / batched_median:.2f}x, "
        f"min {min(loop_times) / min(batched_times):.2f}x (target >= 4)"
    )
    print(f"  largest |log p batched - log p loop|: {largest:.2e}")
    print(f"load average at the end: {load_averages()}")


if __name__ == "__main__":
    main()
