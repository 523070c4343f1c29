"""mtlstm-reproduce with several processes: ``--processes 2`` (one run per process, then one seed per
process) gives the report one process gives, and a ``torchrun`` start of two gloo processes (each
run's rows split between them) trains every run of the experiment in one process group, one run
after another. Oracle: the single-process command on the same settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlstm_hf.reproduce.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TIMING_KEYS = {"seconds", "train_seconds", "command"}


def reproduce(*arguments: str) -> int:
    return main([*arguments, "--threads", "1", "--no-progress-bar"])


def without_timing(value, folder: Path):
    """``value`` without wall times (they differ between any two runs) and the command line, with
    the output folder's path written as ``<out>``."""
    if isinstance(value, dict):
        return {key: without_timing(item, folder) for key, item in value.items() if key not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(item, folder) for item in value]
    if isinstance(value, str):
        return value.replace(str(folder), "<out>")
    return value


@pytest.mark.parametrize("experiment, seeds", [("lm-ptb", ["1"]), ("dyck2", ["1", "2"])])
def test_two_worker_processes_give_the_report_of_one_process(tmp_path, capsys, experiment, seeds):
    one, two = tmp_path / "one", tmp_path / "two"
    assert reproduce(experiment, "--scale", "smoke", "--seeds", *seeds, "--output-dir", str(one)) == 0
    assert (
        reproduce(experiment, "--scale", "smoke", "--seeds", *seeds, "--output-dir", str(two), "--processes", "2") == 0
    )
    err = capsys.readouterr().err
    assert "train: 2 worker processes" in err and "[0] " in err and "[1] " in err
    if experiment == "lm-ptb":
        assert "analyse: 2 worker processes" in err
    reports = [without_timing(json.loads((folder / "report.json").read_text()), folder) for folder in (one, two)]
    assert reports[0] == reports[1]
    assert (two / "REPORT.md").is_file()
    if experiment == "lm-ptb":
        return
    # A rerun of the same command finds everything finished: nothing is trained again.
    assert (
        reproduce(experiment, "--scale", "smoke", "--seeds", *seeds, "--output-dir", str(two), "--processes", "2") == 0
    )
    err = capsys.readouterr().err
    assert err.count("finished before, skipped") == 2 * len(seeds) and "training (" not in err


def test_a_failed_worker_fails_the_command_with_its_exit_code(tmp_path, capsys, monkeypatch):
    """A worker that fails (here: a damaged completion record of one of its runs, exit 2) makes the
    command fail with that exit code, naming the phase, after the other worker finished its runs."""
    out = tmp_path / "out"
    assert reproduce("dyck2", "--scale", "smoke", "--output-dir", str(out), "--seeds", "1") == 0
    (out / "runs" / "baseline-seed1" / "reproduce_run.json").write_text("{not json")
    capsys.readouterr()
    assert (
        reproduce("dyck2", "--scale", "smoke", "--output-dir", str(out), "--seeds", "1", "2", "--processes", "2") == 2
    )
    err = capsys.readouterr().err
    assert "is not valid JSON" in err  # the worker's own message, passed on
    assert "a worker process of the train phase failed (exit code 2" in err.strip().splitlines()[-1]
    assert (out / "runs" / "multi_timescale-seed2" / "reproduce_run.json").is_file()  # the other worker's runs
    monkeypatch.setenv("MTLSTM_REPRODUCE_WORKER", "5/2/train")
    assert reproduce("dyck2", "--scale", "smoke", "--output-dir", str(out), "--seeds", "1") == 2
    assert "MTLSTM_REPRODUCE_WORKER='5/2/train'" in capsys.readouterr().err


def test_processes_under_torchrun_and_dyck_under_torchrun_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert reproduce("lm-ptb", "--scale", "smoke", "--output-dir", str(tmp_path / "a"), "--processes", "2") == 2
    assert "choose one" in capsys.readouterr().err
    assert reproduce("dyck2", "--scale", "smoke", "--output-dir", str(tmp_path / "b")) == 2
    assert "--processes N" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert reproduce("lm-ptb", "--scale", "smoke", "--output-dir", str(tmp_path / "c")) == 2
    message = capsys.readouterr().err
    assert (
        "must divide the batch (10) and the evaluation batch (10)" in message and "use 1, 2, 5, 10 processes" in message
    )
    assert not any((tmp_path / name).exists() for name in "abc")


def test_the_paper_scale_names_the_process_counts_that_work_with_torchrun(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data" / "ptb"
    data.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (data / f"ptb.{split}.txt").write_text("a b c\n")
    monkeypatch.setenv("WORLD_SIZE", "4")
    code = reproduce(
        "lm-ptb", "--scale", "paper", "--data", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")
    )
    assert code == 2
    assert "use 1, 2, 5, 10 processes" in capsys.readouterr().err


TORCHRUN_SCRIPT = """
import sys
from mtlstm_hf.reproduce.cli import settings_from_argv
from mtlstm_hf.reproduce.experiment import log_to_stderr, prepare, run
from mtlstm_hf.training import end_processes

experiment, settings = settings_from_argv(sys.argv[1:])
prepared = prepare(experiment, settings, "torchrun test", sys.argv[1:])
prepared.settings.scale = "paper"  # the paper branch, with its throughput probe, at the smoke sizes
try:
    run(prepared, log_to_stderr)
finally:
    end_processes()
"""


def test_torchrun_with_two_gloo_processes_trains_every_run_in_one_process_group(tmp_path):
    """Each train() of a multi-process start used to end with accelerator.end_training(), which
    destroyed the process group: the second run of mtlstm-reproduce failed with "Default process
    group has not been initialized". Now the paper scale's throughput probe (data-parallel, on every
    process: on rank 0 alone it met the other ranks' first run in DDP's collectives) and every run
    of the experiment train in one process group (both arms, one after the other, rows split over
    the two processes); then rank 0 analyses and writes the report."""
    out = tmp_path / "ddp"
    script = tmp_path / "reproduce_paper_branch.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         "lm-ptb", "--scale", "smoke", "--seeds", "1", "--output-dir", str(out), "--threads", "1", "--no-progress-bar"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    log = f"rc={completed.returncode}\nstdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-5000:]}"
    assert completed.returncode == 0, log
    assert "process group has not been initialized" not in completed.stderr
    assert completed.stderr.count("expected training time") == 1, log  # measured by both, said by rank 0
    # the probe and 2 runs, each on both processes
    assert completed.stdout.count("processes: 2 on cpu (5 of the 10 rows each)") == 2, log
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["per_seed"]) == ["1"]
    for arm in ("baseline", "multi_timescale"):
        assert report["runs"][arm]["1"]["status"] == "completed"
        state = json.loads(
            next((out / "runs" / f"{arm}-seed1" / "checkpoints").glob("step-*/training_state.json")).read_text()
        )
        assert state["num_processes"] == 2
    for key in ("a", "b"):  # dropout masks differ per process, so the numbers are not one process's
        assert 1 < report["per_seed"]["1"]["evaluation"]["train"][key]["perplexity"] < 1000
    assert (out / "REPORT.md").is_file()


def test_a_signal_to_the_command_reaches_every_worker_and_nothing_is_left_running(tmp_path):
    """SIGTERM to the command alone (a scheduler, kill): every worker gets it once and stops, the
    command waits for them and exits 130; no worker is left running; a rerun finishes the work."""
    import signal
    import time

    out = tmp_path / "out"
    command = [sys.executable, "-m", "mtlstm_hf.reproduce.cli", "dyck2", "--scale", "smoke", "--seeds", "1", "2",
               "--output-dir", str(out), "--processes", "2", "--threads", "1", "--no-progress-bar"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = []
    for line in process.stderr:  # wait until both workers train
        lines.append(line)
        if sum("training (" in seen for seen in lines) >= 2:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    log = "".join(lines) + rest
    assert process.returncode == 130, log
    assert "interrupted" in log.strip().splitlines()[-1]
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert survivors == [], log
    assert (
        reproduce("dyck2", "--scale", "smoke", "--seeds", "1", "2", "--output-dir", str(out), "--processes", "2") == 0
    )


def test_the_device_option_chooses_where_language_models_train_too(tmp_path):
    from mtlstm_hf.reproduce.lm import LMPlan, training_config
    from mtlstm_hf.reproduce.scales import lm_scale

    def config(device):
        plan = LMPlan("lm-ptb", "smoke", "library", lm_scale("lm-ptb", "smoke"), [1], tmp_path, tmp_path, device=device)
        return training_config(plan, "baseline", 1)

    assert config("cpu").cpu is True
    assert config(None).cpu is False and config("cuda").cpu is False  # accelerate's device: the GPU when there is one
