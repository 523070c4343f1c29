"""Tests of the training loop (mtlstm_hf.training): recipe, exact resume, atomic checkpoints,
non-finite loss, bad input, two CPU processes, the command line.

Everything runs a ``tiny`` model (embedding 16, hidden 32/16) on a synthetic 3,000-word corpus,
so a whole run takes about a second. This file is also the worker of the two-process test:
``torchrun --nproc_per_node 2 tests/test_training.py --worker CONFIG.json OUT_DIR``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import torch

NO_DROPOUT = {
    "embedding_dropout": 0.0,
    "input_dropout": 0.0,
    "hidden_dropout": 0.0,
    "output_dropout": 0.0,
    "weight_drop": 0.0,
}
WORKER_DONE = "TRAINING WORKER DONE rank="


def run_worker(config_path: str, out_dir: str) -> None:
    """Two-process worker: train, write this rank's parameters atomically, print a marker,
    and only then tear the process group down (gloo may abort at exit; the files are safe)."""
    from mtlstm_hf.training import LanguageModelTrainer, TrainingSettings, make_accelerator

    config = TrainingSettings.from_json_file(config_path)
    accelerator = make_accelerator(config)
    assert accelerator.num_processes == 2, "launch with torchrun --nproc_per_node 2 and ACCELERATE_USE_CPU=1"
    trainer = LanguageModelTrainer(config, accelerator=accelerator)
    result = trainer.run()
    rank = accelerator.process_index
    payload = {
        "params": {name: p.detach().cpu().clone() for name, p in trainer.unwrapped_model.named_parameters()},
        "val_loss": result.progress.last_val_loss,
        "global_step": result.progress.global_step,
        "num_processes": accelerator.num_processes,
    }
    tmp = Path(out_dir) / f".rank_{rank}.pt.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, Path(out_dir) / f"rank_{rank}.pt")
    print(f"{WORKER_DONE}{rank}", flush=True)
    del trainer
    accelerator.free_memory()
    accelerator.end_training()


if __name__ == "__main__" and "--worker" in sys.argv:
    run_worker(sys.argv[sys.argv.index("--worker") + 1], sys.argv[sys.argv.index("--worker") + 2])
    sys.exit(0)

import pytest  # noqa: E402
from accelerate.state import AcceleratorState  # noqa: E402
from conftest import load_in_fresh_process_without_package, reset_accelerate_state, tiny_config  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from mtlstm_hf import MTLSTMForCausalLM  # noqa: E402
from mtlstm_hf.data import build_word_tokenizer, load_corpus, split_to_stream  # noqa: E402
from mtlstm_hf.evaluation import token_log_probs  # noqa: E402
from mtlstm_hf.models.mtlstm import UnsupportedPrecisionError  # noqa: E402
from mtlstm_hf.models.mtlstm.kernel_lstm import cpu_autocast_lstm_supported  # noqa: E402
from mtlstm_hf.training import (  # noqa: E402
    LanguageModelTrainer,
    NonFiniteLossError,
    TrainingSettings,
    nonmonotone_trigger,
    read_metrics,
    resolve_resume_checkpoint,
    train,
)
from mtlstm_hf.training import checkpoint as ckpt  # noqa: E402
from mtlstm_hf.training.cli import CLI_DEFAULT_EPOCHS, config_from_argv, format_summary  # noqa: E402
from mtlstm_hf.training.cli import main as cli_main  # noqa: E402

# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """A deterministic synthetic corpus: Zipf-ish words, about 2,200/450/430 words."""
    directory = tmp_path_factory.mktemp("corpus")
    words = [f"w{i}" for i in range(40)]
    rng = random.Random(0)
    for split, lines in (("train", 300), ("valid", 60), ("test", 60)):
        text = "".join(
            " ".join(rng.choice(words[: rng.randint(5, 40)]) for _ in range(rng.randint(3, 12))) + "\n"
            for _ in range(lines)
        )
        (directory / f"{split}.txt").write_text(text, encoding="utf-8")
    return directory


# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine threads
# competing with other processes slow every step down several times (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def checkpointed_run(corpus_dir: Path, output_dir: Path, max_steps: int, save_every_steps: int) -> Path:
    """A finished :func:`tiny_run` of ``max_steps`` steps in one epoch, checkpointed every
    ``save_every_steps`` (two checkpoints kept); accelerate's state reset after it. Returns the run folder."""
    train(
        tiny_run(
            corpus_dir, output_dir, max_steps=max_steps, save_every_steps=save_every_steps, keep_checkpoints=2, epochs=1
        )
    )
    reset_accelerate_state()
    return output_dir


def tiny_run(corpus_dir: Path, output_dir: Path, **overrides) -> TrainingSettings:
    """A tiny run on the CPU: accelerate would otherwise pick a GPU where there is one, silently
    (the CUDA runs are tests/test_cuda.py's)."""
    fields = dict(
        data=str(corpus_dir),
        preset="tiny",
        output_dir=str(output_dir),
        batch_size=4,
        eval_batch_size=2,
        bptt=10,
        epochs=2,
        progress_bar=False,
        tracker="jsonl",
        evaluate_test=False,
        cpu=True,
    )
    fields.update(overrides)
    return TrainingSettings(**fields)


def latest_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(resolve_resume_checkpoint(run_dir) / "model.safetensors"))


def assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs"


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("optimizer", "sgd"),
        ("preset", "huge"),
        ("learning_rate", -1.0),
        ("clip_grad_norm", 0.0),
        ("batch_size", 0),
        ("bptt", 2.5),
        ("mixed_precision", "fp8"),
        ("matmul_precision", "medium"),
        ("save_every_epochs", 0),
        ("lr_scheduler", "exponential"),
        ("gradient_accumulation_steps", 0),
        ("max_minutes", float("inf")),
        ("tracker", "wandb"),
        ("use_asgd", "yes"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainingSettings(**{field: value})


def test_config_round_trips_and_rejects_unknown_fields(tmp_path):
    config = TrainingSettings(optimizer="adamw", model_overrides={"weight_drop": 0.2}, max_steps=7)
    config.to_json_file(tmp_path / "c.json")
    assert TrainingSettings.from_json_file(tmp_path / "c.json") == config
    assert config.effective_learning_rate == 1e-3 and TrainingSettings().effective_learning_rate == 30.0
    with pytest.raises(ValueError, match="unknown TrainingSettings field"):
        TrainingSettings.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="vocab_size"):
        TrainingSettings(model_overrides={"vocab_size": 10})


# --- a complete run --------------------------------------------------------------------------


def test_run_saves_a_loadable_best_model_logs_and_checkpoint(corpus_dir, tmp_path):
    config = tiny_run(corpus_dir, tmp_path / "run", evaluate_test=True)
    result = train(config)

    assert result.status == "completed"
    assert result.progress.epoch == 2 and len(result.progress.val_history) == 2
    assert math.isfinite(result.best_val_perplexity) and math.isfinite(result.test_perplexity)
    # The best model loads through the Auto classes with its tokenizer and our training config.
    best = AutoModelForCausalLM.from_pretrained(result.best_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.best_model_dir)
    assert isinstance(best, MTLSTMForCausalLM) and len(tokenizer) == best.config.vocab_size
    assert TrainingSettings.from_json_file(result.best_model_dir / "training_config.json") == config
    # Its validation perplexity is what the evaluation package computes for it.
    corpus = load_corpus(corpus_dir)
    log_probs = token_log_probs(best, split_to_stream(corpus, "validation", tokenizer), batch_size=2, window=10)
    assert math.exp(-log_probs.double().mean().item()) == pytest.approx(result.best_val_perplexity, rel=1e-6)
    # Metrics went through the accelerate tracker.
    records = read_metrics(tmp_path / "run" / "logs" / "metrics.jsonl")
    assert records[0]["event"] == "config"
    assert any("train/tokens_per_second" in r for r in records)
    assert sum("eval/perplexity" in r for r in records) == 2
    # One complete checkpoint, named in LATEST, nothing half-written around.
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["LATEST", f"step-{result.progress.global_step:08d}"]
    # Frozen timescale biases did not move (they are buffers, outside the optimizer).
    fresh = MTLSTMForCausalLM(best.config)
    layer, fresh_layer = best.model.layers[0].gate_biases, fresh.model.layers[0].gate_biases
    assert torch.equal(layer.forget_gate, fresh_layer.forget_gate)
    assert torch.equal(layer.input_gate, fresh_layer.input_gate)


def test_learning_rate_follows_window_length(corpus_dir, tmp_path):
    """AWD: each step's learning rate is lr * seq_len / bptt for variable-length windows."""
    config = tiny_run(corpus_dir, tmp_path / "run", max_steps=12, learning_rate=20.0, epochs=1)
    trainer = LanguageModelTrainer(config)
    lengths, rates = [], []
    trainer.unwrapped_model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]) if module.training else None,
        with_kwargs=True,
    )
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trainer.run()
    trainer.accelerator.end_training()
    assert len(set(lengths)) > 1, "variable-length windows expected"
    assert rates == pytest.approx([20.0 * length / 10 for length in lengths])
    assert trainer.optimizer.param_groups[0]["lr"] == 20.0  # restored after each step


# --- exact resume ----------------------------------------------------------------------------


def test_nonmonotone_trigger_follows_awd():
    # AWD: switch when len(history) > nonmono and val_loss > min(history[:-nonmono]).
    assert not nonmonotone_trigger([5.0], 6.0, nonmono=1)  # too few checks yet
    assert nonmonotone_trigger([5.0, 4.0], 5.5, nonmono=1)  # worse than the best before the last one
    assert not nonmonotone_trigger([5.0, 4.0], 4.5, nonmono=1)  # still better than 5.0
    assert not nonmonotone_trigger([5.0, 4.0, 4.5, 4.6, 4.7], 4.8, nonmono=5)
    assert nonmonotone_trigger([4.0, 5.0, 5.0, 5.0, 5.0, 5.0], 4.1, nonmono=5)


def _switch_to_asgd_at(step):
    def callback(trainer):
        if trainer.progress.global_step == step:
            trainer.start_averaging()  # what the non-monotone trigger does, at a fixed step

    return callback


@pytest.mark.parametrize(
    "overrides, switch_at, stop_at, how",
    [
        # AWD with dropout (RNG state), accumulation, periodic checkpoints, averaged SGD from
        # step 20, interrupted by a real SIGINT in epoch 2 (mid-epoch: carried state, iterator).
        (dict(gradient_accumulation_steps=2, save_every_steps=7), 20, 45, "sigint"),
        # AdamW with a linear schedule and warm-up, stopped by a callback mid-epoch 1.
        (dict(optimizer="adamw", lr_scheduler="linear", warmup_steps=5), None, 40, "callback"),
        # A step budget mid-epoch 2, raised on resume: the validation at the budget stop scores
        # better than the epoch-1 best but must not become best_model/ (an uninterrupted run
        # never validates there).
        (dict(save_every_steps=7), 20, 100, "budget"),
    ],
    ids=["awd-asgd-sigint", "adamw-callback", "awd-asgd-step-budget"],
)
def test_interrupted_and_resumed_run_is_bit_identical(corpus_dir, tmp_path, overrides, switch_at, stop_at, how):
    switch = [_switch_to_asgd_at(switch_at)] if switch_at else []
    reference = train(tiny_run(corpus_dir, tmp_path / "reference", **overrides), callbacks=switch)
    reset_accelerate_state()
    assert reference.progress.asgd_active == bool(switch_at)

    def stop(trainer):
        if trainer.progress.global_step == stop_at:
            if how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # the real signal path: the handler sets a flag
                return None
            return True
        return None

    handler_before = signal.getsignal(signal.SIGINT)
    budget = {"max_steps": stop_at} if how == "budget" else {}
    first = train(
        tiny_run(corpus_dir, tmp_path / "run", **overrides, **budget), callbacks=switch + [stop] * (not budget)
    )
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored
    assert first.status == {"sigint": "interrupted", "callback": "stopped", "budget": "max_steps"}[how]
    assert first.progress.global_step == stop_at
    if how == "budget":
        assert first.progress.last_val_step == stop_at and first.progress.last_val_loss < first.progress.best_val_loss
        assert first.progress.best_val_step < stop_at
    assert first.last_checkpoint.name == f"step-{stop_at:08d}"
    reset_accelerate_state()

    resumed = train(tiny_run(corpus_dir, tmp_path / "run", resume_from=str(tmp_path / "run"), **overrides))
    assert resumed.status == "completed"
    assert_same_tensors(latest_params(tmp_path / "reference"), latest_params(tmp_path / "run"))
    # Best model (averaged weights under ASGD) and the whole history agree as well.
    assert_same_tensors(
        load_file(str(tmp_path / "reference" / "best_model" / "model.safetensors")),
        load_file(str(tmp_path / "run" / "best_model" / "model.safetensors")),
    )
    for field in (
        "global_step",
        "epoch",
        "tokens_seen",
        "val_history",
        "best_val_loss",
        "best_val_step",
        "asgd_start_step",
    ):
        assert getattr(resumed.progress, field) == getattr(reference.progress, field), field
    best_metrics = [
        json.loads((tmp_path / run / "best_model" / "training_metrics.json").read_text())
        for run in ("reference", "run")
    ]
    assert best_metrics[0] == best_metrics[1]


def test_averaged_sgd_weights_are_the_mean_of_the_parameters_since_the_switch(corpus_dir, tmp_path):
    """Oracle: the mean (float64) of the k parameter snapshots after the switch; the evaluated
    and saved weights are that mean, not the last parameters."""
    snapshots = []

    def record(trainer):
        if trainer.progress.global_step == 5:
            trainer.start_averaging()
        elif trainer.progress.asgd_active:
            snapshots.append({n: p.detach().double().clone() for n, p in trainer.unwrapped_model.named_parameters()})

    trainer = LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run", max_steps=12, epochs=1), callbacks=[record])
    trainer.run()
    assert len(snapshots) == 7
    averaged = dict(trainer.evaluation_model().named_parameters())
    for name, last in trainer.unwrapped_model.named_parameters():
        mean = sum(snapshot[name] for snapshot in snapshots) / len(snapshots)
        torch.testing.assert_close(averaged[name].double(), mean, rtol=0, atol=1e-6)
        assert not torch.allclose(last.double(), mean, atol=1e-6), name  # the average is not the last step
    best = load_file(str(tmp_path / "run" / "best_model" / "model.safetensors"))
    assert torch.equal(best["model.layers.0.weight_hh"], averaged["model.layers.0.weight_hh"])


def test_resume_refuses_changed_settings_and_foreign_folders(corpus_dir, tmp_path):
    train(tiny_run(corpus_dir, tmp_path / "run", max_steps=3, epochs=1))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match="batch_size"):
        LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run", batch_size=2, resume_from=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="already holds a training run"):
        LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run"))
    with pytest.raises(ValueError, match="not an mtlstm_hf training run"):
        resolve_resume_checkpoint(corpus_dir)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / ckpt.STATE_FILENAME).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not written by this trainer"):
        resolve_resume_checkpoint(foreign)


# --- failures --------------------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(corpus_dir, tmp_path):
    def poison(trainer):
        if trainer.progress.global_step == 12:
            with torch.no_grad():
                trainer.unwrapped_model.lm_head.bias.fill_(float("nan"))

    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at optimizer step 13.*step-00000010"):
        train(tiny_run(corpus_dir, run_dir, save_every_steps=5), callbacks=[poison])
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["LATEST", "step-00000010"]
    good = resolve_resume_checkpoint(run_dir)
    assert all(torch.isfinite(t).all() for t in load_file(str(good / "model.safetensors")).values())
    # ... and it resumes.
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = LanguageModelTrainer(tiny_run(corpus_dir, run_dir, save_every_steps=5, resume_from=str(run_dir)))
    assert trainer.progress.global_step == 10
    trainer.accelerator.end_training()


def _empty_train_dir(corpus_dir: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "empty_corpus"
    directory.mkdir()
    (directory / "train.txt").write_text("")
    (directory / "valid.txt").write_text((corpus_dir / "valid.txt").read_text())
    return directory


def _mismatched_model(corpus_dir: Path, tmp_path: Path) -> dict:
    model_dir = tmp_path / "other_model"
    MTLSTMForCausalLM(tiny_config()).save_pretrained(model_dir)  # vocabulary of 37 words
    tokenizer_dir = tmp_path / "tokenizer"
    build_word_tokenizer(load_corpus(corpus_dir)["train"]).save_pretrained(tokenizer_dir)
    return {"init_from": str(model_dir), "tokenizer": str(tokenizer_dir)}


@pytest.mark.parametrize(
    "make_overrides, error, message",
    [
        (lambda c, t: {"data": str(t / "missing")}, FileNotFoundError, "does not exist"),
        (lambda c, t: {"data": str(_empty_train_dir(c, t))}, ValueError, "is empty"),
        (lambda c, t: {"bptt": 5000}, ValueError, "bptt=5000 is longer than the data"),
        (lambda c, t: {"batch_size": 100_000}, ValueError, "batch_size=100000 is larger than the training stream"),
        (lambda c, t: {"eval_batch_size": 100_000}, ValueError, "eval_batch_size=100000 is too large"),
        (lambda c, t: {"resume_from": str(c)}, ValueError, "not an mtlstm_hf training run"),
        (_mismatched_model, ValueError, "vocabulary has .* entries but the model's vocab_size is 37"),
        (lambda c, t: {"model_overrides": {"hidden_size": 3}}, ValueError, "unknown MTLSTMConfig field"),
    ],
    ids=[
        "missing-data",
        "empty-file",
        "bptt-too-long",
        "batch-too-large",
        "eval-batch-too-large",
        "resume-not-ours",
        "tokenizer-model-mismatch",
        "bad-model-field",
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(corpus_dir, tmp_path, make_overrides, error, message):
    output_dir = tmp_path / "run"
    with pytest.raises(error, match=message):
        train(tiny_run(corpus_dir, output_dir, **make_overrides(corpus_dir, tmp_path)))
    assert not output_dir.exists()


def test_replace_directory_is_all_or_nothing(tmp_path):
    destination = tmp_path / "best_model"

    def build(content):
        def write(folder: Path) -> None:
            (folder / "a.txt").write_text(content)
            if content == "boom":
                raise RuntimeError("crash while writing")

        return write

    ckpt.replace_directory(build("one"), destination)
    with pytest.raises(RuntimeError):
        ckpt.replace_directory(build("boom"), destination)
    assert (destination / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]
    # A crash between the two renames leaves the old copy aside: the next call restores it first.
    os.replace(destination, tmp_path / ".best_model.old")
    ckpt.replace_directory(build("two"), destination)
    assert (destination / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]


def test_bf16_mixed_precision_trains_or_is_refused_before_training(corpus_dir, tmp_path):
    """Whichever path this CPU takes: with native bf16 the run trains (weights stay fp32);
    without it (e.g. an AMD EPYC without AVX-512) it stops before writing anything, with an
    error naming the CPU limitation and the fix instead of oneDNN's message."""
    config = tiny_run(corpus_dir, tmp_path / "run", mixed_precision="bf16", max_steps=6, epochs=1)
    if cpu_autocast_lstm_supported(torch.bfloat16):
        result = train(config)
        assert result.status == "max_steps" and math.isfinite(result.last_val_perplexity)
        weights = load_file(str(resolve_resume_checkpoint(tmp_path / "run") / "model.safetensors"))
        assert weights["lm_head.bias"].dtype == torch.float32
    else:
        with pytest.raises(UnsupportedPrecisionError, match="--mixed-precision no"):
            train(config)
        assert not (tmp_path / "run").exists()


def test_bf16_on_a_cpu_without_native_bf16_exits_3_before_training(corpus_dir, tmp_path):
    """The other path, forced: ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN behave like a CPU without
    AVX-512/bf16 (it is read once per process, hence the subprocess)."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS="1")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch; from mtlstm_hf.models.mtlstm.kernel_lstm import "
            "cpu_autocast_lstm_supported as s; print(s(torch.bfloat16))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() == "False", probe.stderr
    run_dir = tmp_path / "run"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtlstm_hf.training.cli",
            "--data",
            str(corpus_dir),
            "--preset",
            "tiny",
            "--mixed-precision",
            "bf16",
            "--max-steps",
            "2",
            "--output-dir",
            str(run_dir),
            "--no-progress-bar",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 3, completed.stderr
    message = completed.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("mtlstm-train: error: ")
    assert "bfloat16" in message[0] and "--mixed-precision no" in message[0]
    assert "primitive descriptor" not in completed.stderr and "Traceback" not in completed.stderr
    assert not run_dir.exists()


# --- two processes ---------------------------------------------------------------------------


def test_two_cpu_processes_match_one_process(corpus_dir, tmp_path):
    """torchrun, 2 gloo processes, each with half of the rows == one process with all rows.

    Dropout is off (masks are drawn per process). Tolerance: each process averages its own
    rows' loss and DDP averages the two gradients, while one process sums all rows at once, so
    the float32 gradients differ in the last bits. Measured on this machine: 2.4e-7 after one
    step (rounding of values of order 1 after an lr-30 update), 4.8e-7 after 4 steps, 3.8e-6
    after 12 (SGD at lr 30 amplifies rounding differences; at lr 5 it is 6e-8 after 12 steps).
    So 8 steps and 1e-5, while a real mismatch (a wrong row split, unsynchronised gradients,
    other windows, AR/TAR scaled per process) shows up at 1e-2 or more.
    """
    overrides = dict(model_overrides=NO_DROPOUT, max_steps=8, epochs=1, gradient_accumulation_steps=2, cpu=True)
    config = tiny_run(corpus_dir, tmp_path / "multi", **overrides)
    config_path = tmp_path / "config.json"
    config.to_json_file(config_path)
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parent))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(Path(__file__).resolve()),
            "--worker",
            str(config_path),
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    log = f"rc={completed.returncode}\nstdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}"
    # gloo may abort at interpreter exit after the work is done: judge by the markers and files,
    # which every rank writes (atomically) before tearing the process group down.
    for rank in (0, 1):
        assert f"{WORKER_DONE}{rank}" in completed.stdout, log
        assert (out_dir / f"rank_{rank}.pt").is_file(), log
    assert "processes: 2 on cpu (2 of the 4 rows each)" in completed.stdout  # said at the start, once
    ranks = [torch.load(out_dir / f"rank_{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert all(r["num_processes"] == 2 and r["global_step"] == 8 for r in ranks)
    assert_same_tensors(ranks[0]["params"], ranks[1]["params"])  # replicas stay identical

    single = LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "single", **overrides))
    result = single.run()
    single.accelerator.end_training()
    worst = max(
        (ranks[0]["params"][n] - p.detach()).abs().max().item() for n, p in single.unwrapped_model.named_parameters()
    )
    print(f"largest parameter difference, 2 processes vs 1: {worst:.3g}")
    for name, param in single.unwrapped_model.named_parameters():
        torch.testing.assert_close(ranks[0]["params"][name], param.detach(), rtol=1e-5, atol=1e-5, msg=name)
    assert ranks[0]["val_loss"] == pytest.approx(result.progress.last_val_loss, rel=1e-5)


# --- command line ----------------------------------------------------------------------------


def test_cli_trains_resumes_and_reports_errors(corpus_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main(_cli_args(corpus_dir, run_dir, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert "validation perplexity:" in out and "best model:" in out
    assert "processes: 1 on cpu (4 of the 4 rows each)" in out
    AcceleratorState._reset_state(reset_partial_state=True)
    # --resume reuses the saved settings; a budget option extends the run.
    assert cli_main(["--resume", str(run_dir), "--epochs", "2", "--no-evaluate-test"]) == 0
    assert "completed: 2 epoch(s)" in capsys.readouterr().out
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(["--resume", str(run_dir), "--bptt", "12"]) == 2
    assert "bptt" in capsys.readouterr().err
    assert cli_main(_cli_args(corpus_dir, tmp_path / "other", "--epochs", "1", "--bptt", "99999")) == 2
    assert "longer than the data" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_tokenizer_convention_is_built_recorded_and_checked(corpus_dir, tmp_path):
    from mtlstm_hf.data import get_word_convention

    with pytest.raises(ValueError, match=r"tokenizer_convention: .*'bert'.*allowed"):
        LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "bad", tokenizer_convention="bert"))
    assert not (tmp_path / "bad").exists()
    train(tiny_run(corpus_dir, tmp_path / "ptb", max_steps=1, epochs=1, tokenizer_convention="whitespace"))
    saved = AutoTokenizer.from_pretrained(str(tmp_path / "ptb" / "best_model"))
    assert get_word_convention(saved) == "whitespace"
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=r"tokenizer_convention='ptb', but the loaded tokenizer uses 'whitespace'"):
        LanguageModelTrainer(
            tiny_run(
                corpus_dir,
                tmp_path / "other",
                tokenizer_convention="ptb",
                tokenizer=str(tmp_path / "ptb" / "best_model"),
            )
        )


def test_cli_default_is_a_fixed_amount_of_work():
    """No wall-clock budget by default: the main job's model must not depend on machine load."""
    config = config_from_argv([])
    assert config.epochs == CLI_DEFAULT_EPOCHS and config.max_minutes is None and config.max_steps is None
    assert config.seed == TrainingSettings().seed
    assert config_from_argv(["--max-minutes", "3"]).max_minutes == 3.0


def test_a_run_is_deterministic(corpus_dir, tmp_path):
    """The same settings give the same weights and perplexities, bit for bit (dropout, the
    variable BPTT windows and the initialisation all come from the fixed seed)."""
    results, weights = [], []
    for name in ("a", "b"):
        results.append(train(tiny_run(corpus_dir, tmp_path / name, max_steps=12, evaluate_test=True)))
        weights.append(load_file(str(tmp_path / name / "best_model" / "model.safetensors")))
        AcceleratorState._reset_state(reset_partial_state=True)
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert results[0].test_perplexity == results[1].test_perplexity
    assert results[0].last_val_perplexity == results[1].last_val_perplexity
    train(tiny_run(corpus_dir, tmp_path / "c", max_steps=12, seed=7))
    assert not torch.equal(
        load_file(str(tmp_path / "c" / "best_model" / "model.safetensors"))["lm_head.bias"], weights[0]["lm_head.bias"]
    )


def test_end_of_run_test_perplexity_is_what_mtlstm_eval_gives_at_that_batch_size(corpus_dir, tmp_path):
    from mtlstm_hf.evaluation import evaluate_checkpoint

    result = train(tiny_run(corpus_dir, tmp_path / "run", max_steps=8, evaluate_test=True))
    scored = evaluate_checkpoint(
        result.best_model_dir, data=str(corpus_dir), split="test", batch_size=result.eval_batch_size
    )
    assert scored["perplexity"] == pytest.approx(result.test_perplexity, rel=1e-5)
    summary = format_summary(result, tiny_run(corpus_dir, tmp_path / "run", max_steps=8))
    assert f"at eval batch size {result.eval_batch_size}" in summary
    assert f"--batch-size {result.eval_batch_size}" in summary


def test_every_folder_a_run_writes_loads_with_the_package_and_as_remote_code(corpus_dir, tmp_path):
    """best_model/ and each checkpoints/step-N/ load with AutoModelForCausalLM (package
    installed) and with trust_remote_code=True in a process that cannot import mtlstm_hf; both
    give the logits of the weights stored there (oracle: the safetensors file itself)."""
    train(tiny_run(corpus_dir, tmp_path / "run", max_steps=4, epochs=1, save_every_steps=2, keep_checkpoints=2))
    folders = [tmp_path / "run" / "best_model", *sorted((tmp_path / "run" / "checkpoints").glob("step-*"))]
    assert len(folders) == 3
    ids = torch.randint(0, 20, (2, 7))
    for index, folder in enumerate(folders):
        model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        stored = load_file(str(folder / "model.safetensors"))
        assert torch.equal(model.model.layers[0].weight_hh.detach(), stored["model.layers.0.weight_hh"])
        with torch.no_grad():
            expected = model(ids).logits
        remote = load_in_fresh_process_without_package(folder, ids, tmp_path / f"remote{index}")
        assert torch.equal(remote["logits"], expected), folder


def test_time_limit_and_finished_resume_stop_cleanly(corpus_dir, tmp_path):
    # Oracle for the planned steps: with fixed windows, a run without a time limit takes exactly as many.
    full = train(tiny_run(corpus_dir, tmp_path / "full", variable_bptt=False))
    assert full.status == "completed" and full.planned_steps == full.progress.global_step > 10
    AcceleratorState._reset_state(reset_partial_state=True)
    config = tiny_run(corpus_dir, tmp_path / "run", max_minutes=1e-9, evaluate_test=True, variable_bptt=False)
    result = train(config)
    assert result.status == "time_limit" and result.progress.global_step == 1
    summary = format_summary(result, config)
    assert summary.startswith(
        f"STOPPED BY THE TIME LIMIT (--max-minutes 1e-09) after 1 of {full.planned_steps} planned steps"
    )
    assert "--resume" in summary
    # The last weights were scored, saved as best model, checkpointed, and tested.
    assert result.progress.last_val_step == 1 and result.best_model_dir is not None
    assert result.test_perplexity is not None
    assert result.last_checkpoint == resolve_resume_checkpoint(tmp_path / "run")
    AcceleratorState._reset_state(reset_partial_state=True)
    # A resumed run whose step budget is already spent takes no step.
    again = train(
        tiny_run(
            corpus_dir,
            tmp_path / "run",
            max_minutes=1e-9,
            evaluate_test=True,
            max_steps=1,
            variable_bptt=False,
            resume_from=str(tmp_path / "run"),
        )
    )
    assert again.status == "max_steps" and again.progress.global_step == 1


# --- reliability: hidden best model, failed writes, offline data (issue 13) --------------------


def _cli_args(corpus_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(corpus_dir),
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--eval-batch-size",
        "2",
        "--bptt",
        "10",
        "--no-progress-bar",
        "--output-dir",
        str(run_dir),
        "--tracker",
        "jsonl",
        "--cpu",
        *extra,
    ]


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtlstm-train: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_best_model_left_aside_by_a_crash_is_restored_when_the_run_resumes(corpus_dir, tmp_path, capsys):
    """A crash between the two renames that replace best_model/ leaves it only in the hidden
    .best_model.old. A resumed run that finds no new best (here: nothing left to do) must still
    give it back and score it on the test split."""
    run_dir = tmp_path / "run"
    assert cli_main(_cli_args(corpus_dir, run_dir, "--max-steps", "4")) == 0
    first = capsys.readouterr().out
    test_line = [line for line in first.splitlines() if line.startswith("test perplexity (best model):")]
    assert len(test_line) == 1
    weights = (run_dir / "best_model" / "model.safetensors").read_bytes()
    os.replace(run_dir / "best_model", run_dir / ".best_model.old")  # the crash, between the renames
    AcceleratorState._reset_state(reset_partial_state=True)

    assert cli_main(["--resume", str(run_dir), "--no-progress-bar"]) == 0
    resumed = capsys.readouterr().out
    assert "stopped at --max-steps 4" in resumed
    assert [line for line in resumed.splitlines() if line.startswith("test perplexity (best model):")] == test_line
    assert (run_dir / "best_model" / "model.safetensors").read_bytes() == weights
    assert not (run_dir / ".best_model.old").exists()

    # Another run starting from it (--init-from) moves it back too.
    os.replace(run_dir / "best_model", run_dir / ".best_model.old")
    AcceleratorState._reset_state(reset_partial_state=True)
    other = _cli_args(
        corpus_dir,
        tmp_path / "other",
        "--max-steps",
        "1",
        "--no-evaluate-test",
        "--init-from",
        str(run_dir / "best_model"),
    )
    assert cli_main(other) == 0
    assert (run_dir / "best_model" / "model.safetensors").read_bytes() == weights
    capsys.readouterr()
    # Until it is moved back, the hidden copy still marks the folder as holding a run.
    os.replace(run_dir / "best_model", run_dir / ".best_model.old")
    (run_dir / "checkpoints" / "LATEST").unlink()
    assert ckpt.has_training_run(run_dir)


def _fail_second_rank_state_write(monkeypatch, how: str) -> None:
    """Make the second write of trainer_state.pt (the epoch-2 checkpoint) fail like a full disk."""
    import errno
    import resource

    real_save = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        if Path(str(f)).name == ckpt.RANK_STATE_FILENAME.format(rank=0):
            calls.append(f)
            if len(calls) == 2:
                if how == "ENOSPC":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                # The real thing: torch's zip writer hits a file size limit mid-file and fails
                # with "[enforce fail at inline_container.cc:...]", as it does on a full disk.
                soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
                try:
                    return real_save(obj, f, *args, **kwargs)
                finally:
                    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
                    signal.signal(signal.SIGXFSZ, previous)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("how", ["ENOSPC", "torch writer"])
def test_a_failed_checkpoint_write_exits_4_naming_it_and_the_run_resumes(
    corpus_dir, tmp_path, capsys, monkeypatch, how
):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _fail_second_rank_state_write(patch, how)
        assert cli_main(_cli_args(corpus_dir, run_dir, "--epochs", "2", "--no-evaluate-test")) == 4
    message = _one_error_line(capsys.readouterr().err)
    kept = resolve_resume_checkpoint(run_dir)  # LATEST: the epoch-1 checkpoint, complete
    assert ckpt.read_checkpoint_state(kept)["progress"]["epoch"] == 1
    failed = [line for line in message.split() if "step-" in line and str(kept) not in line]
    assert f"writing the checkpoint {run_dir / 'checkpoints'}/step-" in message and failed, message
    assert f"the previous checkpoint {kept} is still the latest" in message
    assert f"--resume {run_dir}" in message
    if how == "ENOSPC":
        assert "No space left on device" in message and "free some space" in message
    else:
        # torch's writer fails in one of two ways, depending on where the size limit cuts in
        assert "torch could not write the file (" in message and "the disk is probably full" in message
        assert "inline_container.cc" in message or "basic_ios::clear" in message
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["LATEST", kept.name]  # no .tmp left
    AcceleratorState._reset_state(reset_partial_state=True)

    assert cli_main(["--resume", str(run_dir), "--no-progress-bar"]) == 0
    assert "completed: 2 epoch(s)" in capsys.readouterr().out
    assert ckpt.read_checkpoint_state(resolve_resume_checkpoint(run_dir))["progress"]["epoch"] == 2


def test_a_failed_best_model_write_keeps_the_last_checkpoint(corpus_dir, tmp_path, capsys, monkeypatch):
    import errno

    run_dir = tmp_path / "run"
    real_write = ckpt.write_json_atomic

    def write(path, value):
        if Path(path).name == "training_metrics.json":  # written into the best model's folder
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, value)

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "write_json_atomic", write)
        assert cli_main(_cli_args(corpus_dir, run_dir, "--epochs", "1", "--save-every", "5", "--no-evaluate-test")) == 4
    message = _one_error_line(capsys.readouterr().err)
    assert f"writing the best model {run_dir / 'best_model'} failed: No space left on device" in message
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "logs", "training_config.json"]  # no .best_model.tmp
    kept = ckpt.read_checkpoint_state(resolve_resume_checkpoint(run_dir))["progress"]  # the last periodic one
    assert kept["epoch"] == 0 and kept["global_step"] % 5 == 0 and kept["best_val_loss"] is None
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(["--resume", str(run_dir), "--no-progress-bar"]) == 0
    assert "completed: 1 epoch(s)" in capsys.readouterr().out and (run_dir / "best_model").is_dir()


def test_an_unwritable_output_folder_exits_4_naming_it(corpus_dir, tmp_path, capsys, monkeypatch):
    import errno

    # An existing file where the run folder should be: refused before any work.
    (tmp_path / "a_file").write_text("x")
    assert cli_main(_cli_args(corpus_dir, tmp_path / "a_file")) == 4
    message = _one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'a_file'}: --output-dir: this is a file; a folder is needed" in message
    assert cli_main(_cli_args(corpus_dir, tmp_path / "a_file" / "run")) == 4
    assert "cannot be created there" in _one_error_line(capsys.readouterr().err)

    # A read-only file system under the run folder: the operating system refuses the first
    # write (injected: root may write anywhere, so permissions cannot show it in every test run).
    read_only = tmp_path / "mounted_read_only"
    read_only.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).is_relative_to(read_only):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    assert cli_main(_cli_args(corpus_dir, read_only / "run", "--max-steps", "2")) == 4
    message = _one_error_line(capsys.readouterr().err)
    assert f"the run folder {read_only / 'run'} could not be written" in message
    assert "Read-only file system" in message and "choose a writable location" in message


def test_a_hub_dataset_id_without_network_exits_4_naming_it(tmp_path, capsys, monkeypatch):
    """HF_DATASETS_OFFLINE=1 (set for the whole suite) and a dataset that is in no cache."""
    import datasets

    assert datasets.config.HF_HUB_OFFLINE  # read from HF_DATASETS_OFFLINE when datasets was imported
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty_cache")
    run_dir = tmp_path / "run"
    assert cli_main(["--data", "mtlstm-tests/no-such-dataset", "--output-dir", str(run_dir), "--no-progress-bar"]) == 4
    message = _one_error_line(capsys.readouterr().err)
    assert "'mtlstm-tests/no-such-dataset'" in message and "needs network access" in message
    assert "local corpus folder" in message
    assert not run_dir.exists()


def test_trackio_tracker_is_offered_through_accelerate(corpus_dir, tmp_path, monkeypatch):
    """Issue 12 item 15. Without the package: a clear error before anything is written. With it
    (a stand-in module recording calls, as trackio itself is not a dependency): accelerate's
    Trackio tracker receives the same metrics as the JSON-lines log (oracle)."""
    import types

    import mtlstm_hf.training.preparation as preparation

    monkeypatch.setattr(preparation, "trackio_available", lambda: False)
    with pytest.raises(ValueError, match="tracker='trackio' needs the trackio package: pip install trackio"):
        train(tiny_run(corpus_dir, tmp_path / "none", tracker="trackio", max_steps=2))
    assert not (tmp_path / "none").exists()

    logged, projects = [], []

    class Run:
        def log(self, values, step=None, **kwargs):
            logged.append((step, dict(values)))

        def finish(self):
            logged.append(("finished", {}))

    fake = types.ModuleType("trackio")
    fake.init = lambda project, **kwargs: projects.append(project) or Run()
    fake.config = types.SimpleNamespace(update=lambda values, allow_val_change=True: None)
    monkeypatch.setitem(sys.modules, "trackio", fake)
    monkeypatch.setattr(preparation, "trackio_available", lambda: True)
    AcceleratorState._reset_state(reset_partial_state=True)
    train(tiny_run(corpus_dir, tmp_path / "run", tracker="trackio", max_steps=4, log_every_steps=2))
    assert projects == ["mtlstm_training"] and logged[-1][0] == "finished"
    jsonl = [record for record in read_metrics(tmp_path / "run" / "logs" / "metrics.jsonl") if "step" in record]
    calls = logged[:-1]
    assert len(jsonl) == len(calls) > 2  # one trackio call per JSON-lines record, in the same order
    for record, (step, values) in zip(jsonl, calls):
        assert step == record["step"]
        assert values == pytest.approx({key: value for key, value in record.items() if key not in ("step", "time")})


def test_every_setting_is_an_option_with_its_field_help_and_config_files_work(tmp_path):
    """The command line is built from TrainingSettings: one option per field (help = the field's),
    --config FILE.json starts from a file, options given override it."""
    import dataclasses

    from mtlstm_hf.training.cli import build_parser

    parser = build_parser()
    by_dest = {
        action.dest: action for action in parser._actions if f"--{action.dest}" in action.option_strings
    }  # not the --no-<field> one
    for field in dataclasses.fields(TrainingSettings):
        assert field.name in by_dest, field.name
        assert by_dest[field.name].help == field.metadata["help"], field.name
    assert config_from_argv(["--adam-beta2", "0.98", "--adam_epsilon", "1e-6"]).adam_beta2 == 0.98
    assert config_from_argv(["--adam-beta2", "0.98", "--adam_epsilon", "1e-6"]).adam_epsilon == 1e-6
    assert config_from_argv(["--no-use-asgd", "--lr", "5"]).use_asgd is False
    assert config_from_argv(["--model-overrides", '{"weight_drop": 0.25}']).model_overrides == {"weight_drop": 0.25}
    saved = tiny_run(tmp_path, tmp_path / "from-file", bptt=12, adam_beta1=0.8)
    saved.to_json_file(tmp_path / "run.json")
    config = config_from_argv(["--config", str(tmp_path / "run.json"), "--bptt", "9"])
    assert (config.bptt, config.adam_beta1, config.preset, config.epochs) == (9, 0.8, "tiny", saved.epochs)
    with pytest.raises(ValueError, match="bptt must be a positive integer"):
        config_from_argv(["--bptt", "0"])
    (tmp_path / "bad.json").write_text('{"bptt": 10, "hidden": 3}')
    with pytest.raises(ValueError, match=r"unknown TrainingSettings field\(s\) \['hidden'\]"):
        config_from_argv(["--config", str(tmp_path / "bad.json")])


def test_frozen_recurrent_weights_stay_at_their_initial_values(corpus_dir, tmp_path):
    """freeze_recurrent_weights (the reference code's condition): every weight_hh ends exactly as
    initialised (oracle: the same seed's initial model), every other weight trains."""
    config = tiny_run(corpus_dir, tmp_path / "run", max_steps=6, epochs=1, freeze_recurrent_weights=True)
    trainer = LanguageModelTrainer(config)
    initial = {name: p.detach().clone() for name, p in trainer.unwrapped_model.named_parameters()}
    trainer.run()
    for name, param in trainer.unwrapped_model.named_parameters():
        moved = not torch.equal(param.detach(), initial[name])
        assert moved == (not name.endswith("weight_hh")), name


def test_reference_presets_are_the_reference_model():
    """paper-reference: layer 1 T=3|4 (575 each), layer 2 the reference grid (last unit T=0), all
    four gate biases of layers 1-2 frozen, layer 3 free; oracle: the schedule definitions."""
    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
    from mtlstm_hf.models.mtlstm.timescales import realize_timescales

    config = MTLSTMConfig.from_preset("paper-reference", hidden_sizes=[10, 12, 6], embedding_size=6, vocab_size=20)
    model = MTLSTMForCausalLM(config)
    timescales = model.assigned_timescales()
    # (read back from the float32 biases: equal up to float32 rounding)
    torch.testing.assert_close(
        timescales[0], torch.tensor([3.0] * 5 + [4.0] * 5, dtype=torch.float64), rtol=1e-6, atol=0
    )
    expected = realize_timescales({"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "reference"}, 12)
    torch.testing.assert_close(timescales[1][:-1], expected[:-1], rtol=1e-5, atol=0)
    assert timescales[1][-1].item() == expected[-1].item() == 0.0 and timescales[2] is None
    for index, frozen in enumerate([4, 4, 0]):
        assert len(dict(model.model.layers[index].gate_biases.named_buffers())) == frozen
    assert MTLSTMConfig.from_preset("paper-wikitext2-reference").vocab_size == 33278


def test_resuming_a_checkpoint_of_the_older_format_is_refused_clearly(corpus_dir, tmp_path):
    """Checkpoints of format 1 (before the AveragedModel / registered-state redesign) hold their
    state in other files: resuming one says so and how to go on, before anything is written."""
    run_dir = tmp_path / "run"
    train(tiny_run(corpus_dir, run_dir, max_steps=2, epochs=1))
    reset_accelerate_state()
    state_file = resolve_resume_checkpoint(run_dir) / ckpt.STATE_FILENAME
    state = json.loads(state_file.read_text())
    state["format"] = "mtlstm_hf.training.checkpoint/1"
    state_file.write_text(json.dumps(state))
    before = sorted(str(p) for p in run_dir.rglob("*"))
    with pytest.raises(
        ValueError,
        match=r"another version of mtlstm_hf \(checkpoint format 'mtlstm_hf.training.checkpoint/1'.*init_from",
    ):
        LanguageModelTrainer(tiny_run(corpus_dir, run_dir, resume_from=str(run_dir)))
    assert sorted(str(p) for p in run_dir.rglob("*")) == before
