"""``mtlstm-analyze`` on a 130M-parameter Mamba: the timescale analysis of 10,000 tokens, timed.

The model has the configuration of ``state-spaces/mamba-130m-hf`` (d_model 768, 24 layers, state 16,
d_inner 1536, dt rank 48, vocabulary 50,280, tied embeddings; built here from ``MambaConfig``,
randomly initialised: nothing is downloaded, and the cost does not depend on the weights). It is
saved with a word-level tokenizer of a synthetic Zipf corpus (the real GPT-NeoX tokenizer only
changes which ids the 10,000 tokens are), and the command runs on that folder as on the Hub
checkpoint::

    mtlstm-analyze FOLDER --data CORPUS --analyses timescales --max-tokens 10000 --threads N --no-progress-bar

It prints the seconds of the command (loading included), of each analysis (``report["seconds"]``),
and where the timescale analysis spends them: the model's forward with the retention hooks (the
transformers slow path on a CPU), the fits of the 24 x 24,576 timescales, and the figures.

    python benchmarks/bench_architectures.py [--threads 2] [--tokens 10000] [--window 70] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name, load_averages


def build_folder(folder: Path, tokens: int) -> Path:
    """The Mamba-130m-sized random model, a Zipf corpus of ``tokens`` validation tokens and a word tokenizer."""
    import torch
    from transformers import MambaConfig, MambaForCausalLM

    from mtlstm_hf.data import build_word_tokenizer

    corpus = folder / "corpus"
    corpus.mkdir(parents=True)
    rng = random.Random(0)
    words = [f"w{i}" for i in range(20000)]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    for name, count in (("train", 2 * tokens), ("valid", tokens + tokens // 5)):
        lines, total = [], 0
        while total < count:
            line = rng.choices(words, weights, k=rng.randint(5, 25))
            lines.append(" ".join(line))
            total += len(line) + 1
        (corpus / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "test.txt").write_text("w0 w1\n", encoding="utf-8")
    tokenizer = build_word_tokenizer(corpus / "train.txt")
    torch.manual_seed(0)
    config = MambaConfig(
        vocab_size=50280,
        hidden_size=768,
        num_hidden_layers=24,
        state_size=16,
        expand=2,
        conv_kernel=4,
        time_step_rank=48,
        tie_word_embeddings=True,
    )
    model = MambaForCausalLM(config)
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M", flush=True)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=10000)
    parser.add_argument("--window", type=int, default=70)
    parser.add_argument("--keep", type=Path, default=None, help="build the folder here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-mamba-"))
    started = time.perf_counter()
    corpus = root / "corpus" if (root / "model").is_dir() else build_folder(root, args.tokens)
    print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
    from mtlstm_hf.analysis.cli import main as analyze

    output = root / "report"
    argv = [
        str(root / "model"),
        "--data",
        str(corpus),
        "--analyses",
        "timescales",
        "--max-tokens",
        str(args.tokens),
        "--window",
        str(args.window),
        "--threads",
        str(args.threads),
        "--no-progress-bar",
        "--output-dir",
        str(output),
        "--restart",
    ]
    print("mtlstm-analyze " + " ".join(argv), flush=True)
    started = time.perf_counter()
    status = analyze(argv)
    total = time.perf_counter() - started
    report = json.loads((output / "report.json").read_text())
    print(f"machine: {cpu_name()}, load averages {load_averages()}, threads {args.threads}")
    print(f"status {status}; command {total:.1f} s; analyses {report['seconds']}")

    # Where the time goes: the retention pass alone, then the fits and figures are the rest.
    import torch

    from mtlstm_hf.analysis.architectures import load_recurrent_checkpoint
    from mtlstm_hf.data import load_corpus, split_to_stream

    torch.set_num_threads(args.threads)
    model, tokenizer = load_recurrent_checkpoint(root / "model", "cpu")
    stream = split_to_stream(load_corpus(corpus), "validation", tokenizer)[: args.tokens]
    from mtlstm_hf.analysis.architectures import adapter_for

    adapter = adapter_for(model)
    started = time.perf_counter()
    estimate = adapter.estimate_timescales(stream, 1, args.window)
    walk = time.perf_counter() - started
    with torch.no_grad():
        rows = stream[: (args.tokens // args.window) * args.window].reshape(-1, args.window)[:20]
        state, started = None, time.perf_counter()
        for row in rows:
            _, state = adapter._forward(row[None], state, logits=False)
        plain = (time.perf_counter() - started) * stream.numel() / rows.numel()
    units = sum(entry.timescales.numel() for entry in estimate.layers)
    print(
        f"retention pass over {stream.numel()} tokens: {walk:.1f} s (forward with the state carried, no hooks: "
        f"about {plain:.1f} s); {units} timescales; the rest of the analysis (fits, report, figures): "
        f"{report['seconds']['timescales'] - walk:.1f} s"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
