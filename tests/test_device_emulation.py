"""Every analysis, a Dyck-2 run, training steps, evaluation and generation with the model on an
emulated GPU (tests/device_emulation.py): a tensor made on the CPU by accident and mixed with the
model's fails here as it would on CUDA (the memory-span analysis did: ``picked * valid`` with CPU
positions; Dyck-2 kept everything on the CPU and called ``.numpy()`` on the logits). The results
must equal the CPU's: the emulation changes where tensors are said to live, not their values."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import corpus_and_saved_model, tiny_model
from device_emulation import DEVICE, DeviceMismatch, EmulatedDevice

from mtlstm_hf.analysis.report import run_analyses
from mtlstm_hf.analysis.settings import ANALYSES, AnalysisSettings
from mtlstm_hf.data import load_corpus
from mtlstm_hf.evaluation.checkpoint import load_checkpoint, split_streams

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the detector itself ----------------------------------------------------------------------


def test_the_emulation_refuses_what_cuda_refuses_and_allows_what_it_allows():
    weight = torch.randn(4, 5)
    expected = (weight * 2) * torch.arange(4)[:, None]
    mode = EmulatedDevice()
    mode.place(weight)
    with mode:
        assert weight.device == DEVICE and not weight.is_cpu
        norms = weight * 2
        positions = torch.arange(4)[:, None]  # made on the CPU by accident
        with pytest.raises(DeviceMismatch, match="mul mixes device tensors with host tensors of shape \\(4, 1\\)"):
            norms * positions
        with pytest.raises(DeviceMismatch, match=r"\.numpy\(\) of a device tensor"):
            norms.numpy()
        on_device = torch.arange(4, device=weight.device)[:, None]
        product = norms * on_device
        assert (norms * torch.tensor(3.0)).device == DEVICE  # a 0-d host scalar is fine
        assert norms[torch.tensor([0, 2])].shape == (2, 5)  # host indices are fine
        moved = positions.to(weight.device)
        assert moved.device == DEVICE and positions.device.type == "cpu"
        host = norms.cpu()
        assert host.device.type == "cpu" and host.numpy().shape == (4, 5)
        with pytest.raises(DeviceMismatch, match="a device value written into a host tensor"):
            host[0] = norms[1]
    assert torch.equal(product, expected)
    sums = torch.zeros(5)
    mode = EmulatedDevice()
    mode.place(weight)
    with mode, pytest.raises(DeviceMismatch):
        sums += weight.sum(0)  # accumulating device results into a host tensor without .cpu()


# --- the library on the emulated device -----------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    corpus, model_dir = corpus_and_saved_model(tmp_path_factory.mktemp("emulated"))
    model, tokenizer = load_checkpoint(model_dir, device="cpu")
    split, names, streams = split_streams(load_corpus(str(corpus)), tokenizer, "valid", ["train"])
    return model, tokenizer, streams["scored"], [streams[name] for name in names]


@pytest.mark.parametrize("analysis", ANALYSES)
def test_every_analysis_runs_on_the_device_and_gives_the_cpu_result(checkpoint, analysis):
    model, tokenizer, stream, counting = checkpoint
    settings = AnalysisSettings(
        chunk_size=3, max_tokens=120, swap_context_length=10, swap_segment_length=8, swap_samples=4
    )

    def analyse():
        torch.manual_seed(0)  # the mutual information's estimate draws random numbers
        return run_analyses(model, tokenizer, stream, counting, [analysis], settings, None, False, False, None, False)

    expected = analyse()
    mode = EmulatedDevice()
    mode.place(model)  # the streams stay on the host: the analyses move what they need
    with mode:
        report = analyse()
    assert report["skipped"] == {}
    assert_same_numbers(report["analyses"][analysis], expected["analyses"][analysis])


def assert_same_numbers(ours, theirs, path="") -> None:
    """Equal structure and values; floats to 1e-9 relative (a float64 fit may round differently
    when a host copy is contiguous where the original was not), NaN equal to NaN."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), path
        for key in theirs:
            assert_same_numbers(ours[key], theirs[key], f"{path}/{key}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), path
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_numbers(a, b, f"{path}[{index}]")
    elif isinstance(theirs, float):
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), path
    else:
        assert ours == theirs, path


def test_a_dyck_run_trains_and_predicts_on_the_device_as_on_the_cpu():
    from mtlstm_hf.data.dyck import generate_dyck2
    from mtlstm_hf.reproduce.dyck import DyckSettings, run_dyck_seed

    settings = DyckSettings(num_train=40, num_validation=10, num_test=20, max_length=20, hidden_size=8, epochs=2,
                            batch_size=8, eval_batch_size=16)  # fmt: skip
    data = generate_dyck2(0, num_train=40, num_validation=10, num_test=20, max_length=20)
    expected = run_dyck_seed("multi_timescale", 1, data, settings, device="cpu")
    mode = EmulatedDevice()
    with mode:
        run = run_dyck_seed("multi_timescale", 1, data, settings, device=DEVICE)
    assert run.history == expected.history and run.accuracy == expected.accuracy
    assert all((a == b).all() for a, b in zip(run.predictions, expected.predictions))


def test_training_steps_and_evaluation_on_the_device(tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    from mtlstm_hf.training import LanguageModelTrainer, TrainingSettings

    corpus, _ = corpus_and_saved_model(tmp_path)
    config = TrainingSettings(data=str(corpus), preset="tiny", output_dir=str(tmp_path / "run"), batch_size=4,
                            eval_batch_size=2, bptt=8, epochs=1, progress_bar=False, tracker="none", cpu=True,
                            evaluate_test=False)  # fmt: skip
    try:
        trainer = LanguageModelTrainer(config)
        trainer.start_averaging()
        mode = EmulatedDevice()
        mode.place(trainer.unwrapped_model, trainer.averaged_model.module, trainer.rows, trainer.valid_part)
        with mode:
            for _ in range(3):
                loss = trainer.train_step(trainer.next_windows()[0]).lm_loss
            val = trainer.evaluate()
        assert loss > 0 and val > 0
        assert trainer.carried_state.hidden[0] in mode._on_device  # the carried state stays on the device
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def test_padded_forward_and_generation_on_the_device():
    model = tiny_model()
    ids = torch.randint(2, 37, (3, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, 3] = 0
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
        greedy = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    mode = EmulatedDevice()
    mode.place(model, ids, mask)
    with mode, torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        generated = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(logits, expected) and torch.equal(generated, greedy)
