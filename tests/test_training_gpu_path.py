"""The training loop on the GPU path, guarded on the CPU: host reads per step, the averaged model,
fp16 with a gradient scaler, precision settings checked before anything is written, the float32
precision of a run, and checkpoint intervals."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import tiny_model
from host_reads import count_host_reads
from torch.optim.swa_utils import AveragedModel

from mtlstm_hf.models.mtlstm import UnsupportedPrecisionError
from mtlstm_hf.training import LanguageModelTrainer, NonFiniteLossError, TrainingSettings, make_accelerator, train
from mtlstm_hf.training import checkpoint as ckpt
from mtlstm_hf.training.averaging import ParameterAverage

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    import random

    directory = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    for split, lines in (("train", 200), ("valid", 40), ("test", 40)):
        text = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + "\n" for _ in range(lines))
        (directory / f"{split}.txt").write_text(text, encoding="utf-8")
    return directory


def tiny_run(corpus_dir, output_dir, **overrides) -> TrainingSettings:
    fields = dict(
        data=str(corpus_dir), preset="tiny", output_dir=str(output_dir), batch_size=4, eval_batch_size=2, bptt=10,
        epochs=2, progress_bar=False, tracker="jsonl", evaluate_test=False, cpu=True,
    )  # fmt: skip
    fields.update(overrides)
    return TrainingSettings(**fields)


# --- host reads -------------------------------------------------------------------------------


@pytest.mark.parametrize("accumulation", [1, 3])
def test_a_training_step_reads_the_device_once(corpus_dir, tmp_path, accumulation):
    """On a GPU each host read stops the host from queueing the next kernels. Before: 8 reads per
    step (the token-range check twice per window, the no-target check, the clip norm, the loss twice,
    the averaged model's counter twice). Now: the loss and the norm in one read, whatever the number
    of windows, with averaged SGD on."""
    trainer = LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run", gradient_accumulation_steps=accumulation))
    trainer.start_averaging()
    for _ in range(2):  # the first averaged update copies; the second averages
        trainer.train_step(trainer.next_windows()[0])
    windows, _ = trainer.next_windows()
    with count_host_reads(host_tensors=(trainer.averaged_model.n_averaged,)) as reads:  # a CPU counter by design
        loss = trainer.train_step(windows).lm_loss
    assert sum(reads.values()) == 1, dict(reads)
    assert math.isfinite(loss) and math.isfinite(trainer.last_grad_norm)


def test_generation_reads_the_device_twice_per_token():
    """generate() with a padded prompt: one read for the mask (0/1 and anything to skip), one for the
    token ids, per forward call (was 4 in the model); transformers' own loop adds its stopping check."""
    model = tiny_model()
    ids = torch.randint(2, 37, (2, 5))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with torch.no_grad():
        with count_host_reads() as reads:
            model(ids, attention_mask=mask)
    ours = {place: count for place, count in reads.items() if "modeling_mtlstm" in place or "kernel_" in place}
    model_reads = sum(count for place, count in ours.items() if "modeling_mtlstm" in place)
    assert model_reads == 2, dict(reads)


def test_the_label_checks_of_a_forward_read_the_device_once():
    """Labels in the vocabulary and at least one target: both told by one read (a synchronisation
    per forward with labels on a GPU), not one per check; check_values=False reads nothing for them."""
    model = tiny_model()
    ids = torch.randint(2, 37, (2, 5))
    shifted = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], dim=1)  # transformers' shift_labels: (B, T)
    for kwargs in ({"labels": ids}, {"shift_labels": shifted}):
        with torch.no_grad(), count_host_reads() as reads:
            model(ids, **kwargs)
        label_reads = sum(count for place, count in reads.items() if "modeling_mtlstm" in place)
        with torch.no_grad(), count_host_reads() as unchecked:
            model(ids, check_values=False, **kwargs)
        assert label_reads - sum(count for place, count in unchecked.items() if "modeling_mtlstm" in place) == 1 + 1, (
            dict(reads)
        )
        # the 1 + 1: the input ids' check (also off with check_values=False) and the labels' one


def test_token_streams_are_checked_once_before_training(corpus_dir, tmp_path, monkeypatch):
    """The per-window check is off in training, so an id outside the vocabulary must be caught when
    the streams are prepared, naming the stream, before anything is written."""
    from mtlstm_hf.training import loop

    real = loop.prepare_data

    def corrupt(*args, **kwargs):
        data = real(*args, **kwargs)
        data.rows[0, 3] = 10_000
        return data

    monkeypatch.setattr(loop, "prepare_data", corrupt)
    with pytest.raises(ValueError, match=r"the training stream: input_ids must lie in \[0, \d+\)"):
        LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# --- the averaged model -------------------------------------------------------------------------


def test_parameter_average_is_bit_identical_to_averaged_model():
    """The host-side count changes where the weight is computed, not its value: the same bits as
    PyTorch's AveragedModel after every update, with tied weights, and the same state_dict keys (so
    checkpoints written before resume unchanged)."""
    model = tiny_model(seed=3)
    ours, theirs = ParameterAverage(model), AveragedModel(model)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    generator = torch.Generator().manual_seed(0)
    for step in range(7):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
        ours.update_parameters(model)
        theirs.update_parameters(model)
        for (name, mine), (_, reference) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(mine, reference), (step, name)
    assert ours.n_averaged.device.type == "cpu" and int(ours.n_averaged) == 7
    moved = copy.deepcopy(ours).to(torch.float64)
    assert moved.n_averaged.dtype == torch.int64  # the counter is not converted with the parameters


# --- mixed precision ------------------------------------------------------------------------------


def test_fp16_on_a_cpu_is_refused_before_anything_is_written(corpus_dir, tmp_path):
    with pytest.raises(UnsupportedPrecisionError, match="fp16.*needs a CUDA GPU"):
        train(tiny_run(corpus_dir, tmp_path / "run", mixed_precision="fp16"))
    assert not (tmp_path / "run").exists()


def _trainer_with_a_gradient_scaler(config, init_scale: float) -> LanguageModelTrainer:
    """What fp16 on CUDA gives the loop, on the CPU: accelerate's scaler path (scaled backward,
    unscale before clipping, a step skipped on overflow), with float32 autocast-free math."""
    accelerator = make_accelerator(config)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return LanguageModelTrainer(config, accelerator=accelerator)


def test_gradient_scaler_overflow_steps_are_skipped_not_fatal(corpus_dir, tmp_path):
    """With a scale that overflows float32 the first steps' gradients are infinite while the loss is
    finite: the scaler skips them and halves its scale; training goes on, the skipped steps change
    nothing (parameters, schedule, average) and are counted."""
    config = tiny_run(corpus_dir, tmp_path / "run", max_steps=8, epochs=1)
    trainer = _trainer_with_a_gradient_scaler(config, init_scale=2.0**127)
    trainer.start_averaging()
    before = {name: p.detach().clone() for name, p in trainer.unwrapped_model.named_parameters()}
    trainer.train_step(trainer.next_windows()[0])
    assert trainer.progress.scaler_skipped_steps == 1
    assert all(torch.equal(p, before[name]) for name, p in trainer.unwrapped_model.named_parameters())
    assert int(trainer.averaged_model.n_averaged) == 0
    assert not math.isfinite(trainer.last_grad_norm)
    result = trainer.run()
    assert result.status == "max_steps" and math.isfinite(result.last_val_perplexity)
    assert 1 <= result.progress.scaler_skipped_steps < 8
    steps = result.progress.global_step  # the step taken by hand above included
    assert steps == 8 and int(trainer.averaged_model.n_averaged) == steps - result.progress.scaler_skipped_steps
    saved = json.loads((ckpt.resolve_resume_checkpoint(tmp_path / "run") / ckpt.STATE_FILENAME).read_text())
    assert saved["progress"]["scaler_skipped_steps"] == result.progress.scaler_skipped_steps
    trainer.accelerator.free_memory()


def test_gradients_that_overflow_even_unscaled_stop_the_run(corpus_dir, tmp_path):
    config = tiny_run(corpus_dir, tmp_path / "run", max_steps=8, epochs=1)
    trainer = _trainer_with_a_gradient_scaler(config, init_scale=2.0)
    for parameter in trainer.unwrapped_model.parameters():
        parameter.register_hook(lambda grad: grad * math.inf)
    with pytest.raises(NonFiniteLossError, match="overflow float16 even without loss scaling"):
        for _ in range(3):
            trainer.train_step(trainer.next_windows()[0])
    assert trainer.progress.scaler_skipped_steps == 2
    trainer.accelerator.free_memory()


def test_a_non_finite_loss_still_stops_with_a_gradient_scaler(corpus_dir, tmp_path):
    config = tiny_run(corpus_dir, tmp_path / "run", max_steps=8, epochs=1)
    trainer = _trainer_with_a_gradient_scaler(config, init_scale=2.0**16)
    with torch.no_grad():
        trainer.unwrapped_model.lm_head.bias.fill_(math.nan)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        trainer.train_step(trainer.next_windows()[0])
    trainer.accelerator.free_memory()


# --- float32 precision and checkpoints -----------------------------------------------------------


@pytest.mark.parametrize("precision, tf32", [("highest", False), ("high", True)])
def test_the_run_sets_its_float32_precision_and_restores_the_previous_one(corpus_dir, tmp_path, precision, tf32):
    seen = []

    def look(trainer):
        seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))

    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    train(tiny_run(corpus_dir, tmp_path / "run", max_steps=2, matmul_precision=precision), callbacks=[look])
    assert seen and set(seen) == {(precision, tf32)}
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before


def test_checkpoints_every_nth_epoch_and_at_the_end(corpus_dir, tmp_path):
    saved_at = []
    real = ckpt.save_checkpoint

    def spy(trainer):
        saved_at.append(trainer.progress.epoch)
        return real(trainer)

    import mtlstm_hf.training.loop as loop

    original, loop.ckpt.save_checkpoint = loop.ckpt.save_checkpoint, spy
    try:
        result = train(tiny_run(corpus_dir, tmp_path / "run", epochs=5, save_every_epochs=2, keep_checkpoints=5))
    finally:
        loop.ckpt.save_checkpoint = original
    assert result.status == "completed"
    assert saved_at == [2, 4, 5]
    assert len(ckpt.complete_checkpoints(tmp_path / "run" / ckpt.CHECKPOINTS_DIRNAME)) == 3
