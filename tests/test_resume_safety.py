"""What ``--resume`` reads and where it writes (issue 24, items 1-4): every file is read without
running code or refused in one line naming it (exit 2); ``LATEST`` holds a name, never a path; a
resume writes only into its own run folder or a new one; the metrics log has each step once."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from test_training import checkpointed_run, corpus_dir, tiny_run  # noqa: F401 (the corpus fixture)

from mtlstm_hf.training import train
from mtlstm_hf.training.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def trained_run(corpus_dir, tmp_path_factory):  # noqa: F811
    """A run of 6 steps, checkpointed at 3 and 6 (both kept)."""
    return checkpointed_run(corpus_dir, tmp_path_factory.mktemp("trained") / "run", max_steps=6, save_every_steps=3)


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _resume(run: Path, *extra: str) -> int:
    return cli_main(["--resume", str(run), "--max-steps", "8", *extra])


class _Payload:
    """A pickle that creates a file when unpickled with code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _latest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()


@pytest.mark.parametrize(
    "name, damage",
    [
        ("custom_checkpoint_0.pkl", "payload"),
        ("custom_checkpoint_1.pkl", "payload"),
        ("random_states_0.pkl", "payload"),
        ("optimizer.bin", "payload"),
        ("random_states_0.pkl", "missing"),
        ("random_states_0.pkl", "truncated"),
        ("optimizer.bin", "truncated"),
        ("custom_checkpoint_1.pkl", "missing"),
    ],
)
def test_resume_reads_no_file_with_code_and_names_a_damaged_one(trained_run, tmp_path, capsys, name, damage):
    run = _copy(trained_run, tmp_path)
    path = _latest(run) / name
    marker = tmp_path / "code-ran"
    if damage == "payload":
        torch.save({"state": _Payload(marker), "param_groups": [], "random_state": 0, "numpy_random_seed": 0,
                    "torch_manual_seed": 0}, path)  # fmt: skip
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    # The checkpoint's weights_sha256.json answers first (weight_digests): the file is not the one written.
    assert _resume(run) == 2
    error = capsys.readouterr().err
    assert str(path) in error and error.count("\n") == 1, error
    assert ("is not the file that was written" in error) if damage != "missing" else ("but missing" in error)
    # Without the record (a checkpoint of an earlier version) every file is still read without code first.
    (path.parent / "weights_sha256.json").unlink()
    assert _resume(run) == 2
    error = capsys.readouterr().err
    assert str(path) in error and error.count("\n") == 1, error
    assert ("without running code" in error) if damage != "missing" else ("is missing" in error)
    assert not marker.exists()  # nothing ran
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing written or removed


@pytest.mark.parametrize("value", ["absent", -1, "abc", 2.5, None])
def test_a_damaged_training_state_is_named_field_and_value(trained_run, tmp_path, capsys, value):
    run = _copy(trained_run, tmp_path)
    state_file = _latest(run) / "training_state.json"
    state = json.loads(state_file.read_text())
    if value == "absent":
        del state["progress"]["global_step"]
    else:
        state["progress"]["global_step"] = value
    state_file.write_text(json.dumps(state))
    assert _resume(run) == 2
    error = capsys.readouterr().err
    assert str(state_file) in error and "progress.global_step" in error and error.count("\n") == 1, error


def test_latest_holds_a_name_never_a_path(trained_run, tmp_path, capsys):
    """A LATEST naming another run's checkpoint by a relative path is refused: the other run is untouched."""
    run = _copy(trained_run, tmp_path)
    other = tmp_path / "other_run"
    shutil.copytree(trained_run, other)
    other_latest = _latest(other)
    (run / "checkpoints" / "LATEST").write_text(os.path.relpath(other_latest, run / "checkpoints") + "\n")
    before = {path: path.stat().st_mtime_ns for path in other.rglob("*")}
    assert _resume(run) == 2
    error = capsys.readouterr().err
    assert "not the name of a checkpoint" in error and "LATEST" in error
    assert {path: path.stat().st_mtime_ns for path in other.rglob("*")} == before


def test_a_copied_checkpoint_is_not_resumed_over_another_run(corpus_dir, tmp_path, capsys):  # noqa: F811
    """A checkpoint copied to backup/ whose saved output_dir now holds a new run: refused (the new
    run keeps every file); into a new folder it resumes."""
    run = tmp_path / "run"
    train(tiny_run(corpus_dir, run, max_steps=6, save_every_steps=3, epochs=1))
    AcceleratorState._reset_state(reset_partial_state=True)
    backup = tmp_path / "backup" / "step"
    shutil.copytree(_latest(run), backup)
    shutil.rmtree(run)
    train(tiny_run(corpus_dir, run, max_steps=2, epochs=1))  # a new run in the old folder
    AcceleratorState._reset_state(reset_partial_state=True)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    config = json.loads((backup / "training_config.json").read_text())
    assert Path(config["output_dir"]) == run
    assert cli_main(["--resume", str(backup), "--max-steps", "8"]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    fresh = tmp_path / "continued"
    assert cli_main(["--resume", str(backup), "--max-steps", "8", "--output-dir", str(fresh)]) == 0
    assert json.loads((_latest(fresh) / "training_state.json").read_text())["progress"]["global_step"] == 8


def test_a_resumed_run_logs_each_step_once(corpus_dir, tmp_path):  # noqa: F811
    """A crash after the checkpoint at step 3 (step 4 logged), then a resume: the log holds
    the steps of an uninterrupted run, each once (oracle: that run's log)."""

    def crash(trainer):
        if trainer.progress.global_step == 5:
            raise RuntimeError("simulated crash")

    def steps(run: Path) -> list[int]:
        lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
        return [record["step"] for record in map(json.loads, lines) if "step" in record and "train/loss" in record]

    settings = dict(max_steps=8, save_every_steps=3, epochs=1, log_every_steps=1)
    train(tiny_run(corpus_dir, tmp_path / "whole", **settings))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_run(corpus_dir, tmp_path / "run", **settings), callbacks=[crash])
    AcceleratorState._reset_state(reset_partial_state=True)
    assert steps(tmp_path / "run")[-1] == 4  # the crash came before step 5 was logged
    train(tiny_run(corpus_dir, tmp_path / "run", resume_from=str(tmp_path / "run"), **settings))
    assert steps(tmp_path / "run") == steps(tmp_path / "whole") == list(range(1, 9))


def test_resume_with_a_config_file_applies_it_or_refuses_it_never_ignores_it(trained_run, tmp_path, capsys):
    """``--resume RUN --config FILE``: a budget in the file extends the run; a setting that changes
    the trajectory (the learning rate) is refused, named; a folder given as the file is named as one."""
    run = _copy(trained_run, tmp_path)
    changed = tmp_path / "lr.json"
    changed.write_text(json.dumps({"learning_rate": 5.0}))
    assert cli_main(["--resume", str(run), "--config", str(changed)]) == 2
    error = capsys.readouterr().err
    assert "learning_rate: None -> 5.0" in error and "refused" in error
    budget = tmp_path / "budget.json"
    budget.write_text(json.dumps({"max_steps": 7}))
    assert cli_main(["--resume", str(run), "--config", str(budget)]) == 0
    assert json.loads((_latest(run) / "training_state.json").read_text())["progress"]["global_step"] == 7
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(["--resume", str(run), "--config", str(tmp_path)]) == 2
    assert "is a folder; give a JSON file" in capsys.readouterr().err
