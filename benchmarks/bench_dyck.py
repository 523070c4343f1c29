"""Time of one full-size Dyck-2 training epoch (a script, not a test), to size the CPU runs of
:mod:`mtlstm_hf.reproduce.dyck`.

The paper's data (10,000 / 2,000 / 5,000 words of at most 200 symbols, data seed 0) and model
(one LSTM layer of 256 units, batch 32, Adam, clip 1.0): for each arm the training loop of
``run_dyck_seed`` (the same batches and steps) runs over one epoch, stopped after
``--max-seconds``; a stopped epoch is extrapolated by the share of its padded cells (batch size x
longest word of the batch, what the unpacked LSTM computes) already done. Then the validation
and test passes (``predict``) are timed the same way. torch runs with ``--threads`` intra-op
threads (default 1: on a shared 2-core machine two threads competing with other processes made a
step tens of times slower in our trials).

    python benchmarks/bench_dyck.py                       # both arms, 1 thread, ~2.5 minutes
    python benchmarks/bench_dyck.py --arms baseline --threads 2 --max-seconds 30 --json out.json
    python benchmarks/bench_dyck.py --arms baseline --hidden-size 64 --max-seconds 20
    python benchmarks/bench_dyck.py --device cuda --max-seconds 15 --eval-max-seconds 4 --json dyck.json

On a GPU (``--device cuda``) each timed stretch ends with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from mtlstm_hf.data.dyck import generate_dyck2
from mtlstm_hf.reproduce.dyck import ARMS, DyckSettings, EncodedWords, batch_loss, build_dyck_model, predict


def padded_cells(encoded: EncodedWords, order: list[int], batch_size: int) -> list[int]:
    """Per batch of ``order``, batch size x longest word."""
    return [
        len(order[start : start + batch_size])
        * max(len(encoded.words[row]) for row in order[start : start + batch_size])
        for start in range(0, len(order), batch_size)
    ]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_epoch(
    arm: str, train: EncodedWords, settings: DyckSettings, max_seconds: float, device: torch.device
) -> dict:
    model = build_dyck_model(arm, 1, settings, device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1 * 1_000_003)).tolist()
    cells = padded_cells(train, order, settings.batch_size)
    model.train()
    started = time.perf_counter()
    steps = 0
    for start in range(0, len(order), settings.batch_size):
        loss = batch_loss(model, train.batch(order[start : start + settings.batch_size], device=device), settings.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, settings.clip_grad_norm)
        optimizer.step()
        steps += 1
        if time.perf_counter() - started > max_seconds:
            break
    synchronize(device)
    elapsed = time.perf_counter() - started
    done = sum(cells[:steps])
    return {
        "steps_timed": steps,
        "steps_per_epoch": len(cells),
        "seconds_timed": elapsed,
        "epoch_seconds": elapsed * sum(cells) / done,
        "extrapolated": steps < len(cells),
        "model": model,
    }


def time_prediction(model, encoded: EncodedWords, settings: DyckSettings, max_seconds: float) -> dict:
    """Seconds of ``predict`` over ``encoded`` (extrapolated from a prefix of eval batches)."""
    size = settings.eval_batch_size
    started = time.perf_counter()
    words = 0
    while words < len(encoded) and time.perf_counter() - started < max_seconds:
        predict(model, EncodedWords(encoded.words[words : words + size]), settings)
        words += size
    elapsed = time.perf_counter() - started
    words = min(words, len(encoded))
    total = sum(len(word) for word in encoded.words)
    done = sum(len(word) for word in encoded.words[:words])
    return {"words_timed": words, "seconds_timed": elapsed, "seconds": elapsed * total / done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden-size", type=int, default=256, help="LSTM units (the paper: 256)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="training time budget per arm")
    parser.add_argument("--eval-max-seconds", type=float, default=10.0, help="budget per evaluation pass")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--num-train", type=int, default=None, help="training words (default: the paper's 10,000; fewer for a dry run)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = (
        {}
        if args.num_train is None
        else {"num_train": args.num_train, "num_validation": args.num_train // 5, "num_test": args.num_train // 2}
    )
    settings = DyckSettings(hidden_size=args.hidden_size, **sizes)
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "settings": {
            "num_train": settings.num_train,
            "hidden_size": settings.hidden_size,
            "batch_size": settings.batch_size,
        },
    }
    started = time.perf_counter()
    data = generate_dyck2(
        settings.data_seed,
        num_train=settings.num_train,
        num_validation=settings.num_validation,
        num_test=settings.num_test,
    )
    results["data_seconds"] = time.perf_counter() - started
    train, validation, test = (EncodedWords(data[name]) for name in ("train", "validation", "test"))
    results["train_symbols"] = sum(len(word) for word in train.words)
    print(
        f"data: {results['data_seconds']:.1f} s ({results['train_symbols']:,} training symbols); "
        f"threads {results['threads']}; load average {results['load_average_before']}",
        flush=True,
    )
    for arm in args.arms:
        timing = time_training_epoch(arm, train, settings, args.max_seconds, device)
        model = timing.pop("model")
        timing["validation"] = time_prediction(model, validation, settings, args.eval_max_seconds)
        timing["test"] = time_prediction(model, test, settings, args.eval_max_seconds)
        results[arm] = timing
        print(
            f"{arm}: epoch {timing['epoch_seconds']:.1f} s "
            f"({timing['steps_timed']}/{timing['steps_per_epoch']} steps timed in {timing['seconds_timed']:.1f} s"
            f"{', extrapolated' if timing['extrapolated'] else ''}); validation pass {timing['validation']['seconds']:.1f} s, "
            f"test pass {timing['test']['seconds']:.1f} s",
            flush=True,
        )
        if args.json:  # after each arm: a run stopped at a time limit keeps what it measured
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=2)
    results["load_average_after"] = os.getloadavg()
    print(f"load average after: {results['load_average_after']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
