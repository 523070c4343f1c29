"""Weights damaged after they were written: every folder the library writes
records the SHA-256 of its binary files; the library's readers check it first.

Oracles: ``hashlib`` over the file bytes (the record), the safetensors header (where a tensor's
bytes are, to damage them while every value stays finite), a folder without the record (read as
before, damaged or not).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import checkpointed_run, corpus_dir, tiny_run  # noqa: F401 (the corpus fixture)

from mtlstm_hf.evaluation import load_checkpoint
from mtlstm_hf.evaluation.cli import main as eval_main
from mtlstm_hf.hub import push_checkpoint
from mtlstm_hf.training import train
from mtlstm_hf.training.cli import main as train_main
from mtlstm_hf.weight_digests import DIGESTS_FILENAME, RECORDED_SUFFIXES, WeightDigestError, verify_weight_digests

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def run(corpus_dir, tmp_path_factory):  # noqa: F811
    """A run of 4 steps, checkpointed at 2 and 4."""
    return checkpointed_run(corpus_dir, tmp_path_factory.mktemp("digests") / "run", max_steps=4, save_every_steps=2)


def _recorded_files(folder: Path) -> dict[str, str]:
    return json.loads((folder / DIGESTS_FILENAME).read_text())["sha256"]


def _damage_a_tensor(path: Path, n_bytes: int = 1000) -> None:
    """Flip the lowest bit of ``n_bytes`` low mantissa bytes inside the largest float32 tensor of a
    safetensors file: every value stays finite and the file stays loadable."""
    data = bytearray(path.read_bytes())
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    name = max((key for key in header if key != "__metadata__" and header[key]["dtype"] == "F32"),
               key=lambda key: header[key]["data_offsets"][1] - header[key]["data_offsets"][0])  # fmt: skip
    start, end = header[name]["data_offsets"]
    base = 8 + header_size + start
    for index in range(min(n_bytes, (end - start) // 4)):
        data[base + 4 * index] ^= 0x01
    path.write_bytes(bytes(data))


def test_every_written_folder_records_the_sha256_of_its_binary_files(run: Path) -> None:
    folders = [run / "best_model", *sorted((run / "checkpoints").glob("step-*"))]
    assert len(folders) == 3
    for folder in folders:
        binaries = {path.name for path in folder.iterdir() if path.suffix in RECORDED_SUFFIXES}
        recorded = _recorded_files(folder)
        assert set(recorded) == binaries and "model.safetensors" in binaries, folder
        for name, digest in recorded.items():
            assert digest == hashlib.sha256((folder / name).read_bytes()).hexdigest(), (folder, name)
    assert {"optimizer.bin", "random_states_0.pkl"} <= set(_recorded_files(folders[1]))
    assert verify_weight_digests(run / "best_model") is True


def test_a_damaged_weights_file_that_stays_finite_is_refused_by_every_reader(
    run: Path, tmp_path: Path, corpus_dir, capsys
) -> None:  # noqa: F811
    model_dir = tmp_path / "best_model"
    shutil.copytree(run / "best_model", model_dir)
    before = {name: tensor.clone() for name, tensor in load_file(model_dir / "model.safetensors").items()}
    _damage_a_tensor(model_dir / "model.safetensors")
    after = load_file(model_dir / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in after.values() if t.is_floating_point())
    assert any(not torch.equal(before[name], after[name]) for name in before)  # damaged, and nothing tells

    with pytest.raises(WeightDigestError, match=r"model\.safetensors' is not the file that was written"):
        load_checkpoint(model_dir)
    assert eval_main([str(model_dir), "--data", str(corpus_dir), "--threads", "1"]) == 2
    error = capsys.readouterr().err
    assert "model.safetensors" in error and DIGESTS_FILENAME in error and len(error.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="is not the file that was written"):
        push_checkpoint(model_dir, "alice/damaged", dry_run_dir=tmp_path / "dry")
    assert not (tmp_path / "dry").exists()
    with pytest.raises(ValueError, match="is not the file that was written"):
        train(tiny_run(corpus_dir, tmp_path / "from_damaged", init_from=str(model_dir), max_steps=1, epochs=1))
    assert not (tmp_path / "from_damaged" / "best_model").exists()

    # Without the record the folder is read as before (damaged or not: nothing can tell).
    (model_dir / DIGESTS_FILENAME).unlink()
    model, _ = load_checkpoint(model_dir, device="cpu")
    state = model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in after.items() if name in state)


def test_a_resume_refuses_a_damaged_checkpoint_file(run: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    latest = copy / "checkpoints" / (copy / "checkpoints" / "LATEST").read_text().strip()
    optimizer = latest / "optimizer.bin"
    data = bytearray(optimizer.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the stored tensors: torch still reads it
    optimizer.write_bytes(bytes(data))
    assert train_main(["--resume", str(copy), "--max-steps", "6", "--threads", "1"]) == 2
    error = capsys.readouterr().err
    assert "optimizer.bin" in error and "is not the file that was written" in error
    assert not any(path.name.endswith("06") for path in (copy / "checkpoints").iterdir())  # nothing trained on


@pytest.mark.parametrize(
    "record", ["not json", json.dumps({"format": "mtlstm_hf.weights_sha256/1", "sha256": {"../x": "0" * 64}}), "[]"]
)
def test_a_damaged_record_is_named(run: Path, tmp_path: Path, record: str) -> None:
    model_dir = tmp_path / "best_model"
    shutil.copytree(run / "best_model", model_dir)
    (model_dir / DIGESTS_FILENAME).write_text(record)
    with pytest.raises(WeightDigestError, match=DIGESTS_FILENAME):
        verify_weight_digests(model_dir)


def test_a_recorded_file_that_is_missing_is_named(run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "best_model"
    shutil.copytree(run / "best_model", folder)
    (folder / "model.safetensors").rename(folder / "elsewhere.bin.moved")
    with pytest.raises(WeightDigestError, match=r"model\.safetensors' is recorded in weights_sha256\.json but missing"):
        verify_weight_digests(folder)


def test_the_demo_records_its_weights(tmp_path: Path) -> None:
    from mtlstm_hf.demo import main as demo_main

    demo_main(["--preset", "tiny", "--output-dir", str(tmp_path / "demo"), "--threads", "1"])
    assert _recorded_files(tmp_path / "demo") == {
        "model.safetensors": hashlib.sha256((tmp_path / "demo" / "model.safetensors").read_bytes()).hexdigest()
    }


def test_a_converted_folder_records_its_weights(tmp_path: Path) -> None:
    """mtlstm-convert writes the record too (the tokenizer without loading keys)."""
    from test_convert import AWDLike, write_corpus

    from mtlstm_hf.convert import convert_checkpoint

    folder, words = write_corpus(tmp_path / "corpus")
    torch.save(AWDLike(len(words), 6, 10, 3, seed=2).eval().awd_state_dict(), tmp_path / "w.pt")
    convert_checkpoint(tmp_path / "w.pt", folder, tmp_path / "converted", "awd-lstm")
    recorded = _recorded_files(tmp_path / "converted")
    assert recorded == {
        "model.safetensors": hashlib.sha256((tmp_path / "converted" / "model.safetensors").read_bytes()).hexdigest()
    }
    assert verify_weight_digests(tmp_path / "converted") is True
