"""The GPU check (scripts/device_check.sh) cannot rot: its dry run on the CPU runs every stage (the
CUDA-only probes and tests skip), writes exactly summary.txt, logs.txt and results.json, merges
every stage's results and exits 0; the merge records failed, timed-out and unreadable stages
instead of failing itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "benchmarks" / "gpu"))

from merge import merge  # noqa: E402

STAGES = ["0_env", "1_probes", "2_tests", "3_throughput", "4_ptb_epoch", "5_dyck", "6_compile"]


def test_the_dry_run_runs_every_stage_and_merges_them(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, DEVICE_CHECK_DRY_RUN="1", OUT=str(out), PYTHON=sys.executable, TMPDIR=str(tmp_path),
               OMP_NUM_THREADS="1")  # fmt: skip
    completed = subprocess.run(["bash", str(REPOSITORY / "scripts" / "device_check.sh")], capture_output=True, text=True,
                               timeout=600, env=env)  # fmt: skip
    logs = (out / "logs.txt").read_text() if (out / "logs.txt").is_file() else ""
    assert completed.returncode == 0, completed.stdout + logs[-5000:]
    assert sorted(path.name for path in out.iterdir()) == ["logs.txt", "results.json", "summary.txt"]
    summary = (out / "summary.txt").read_text()
    for stage in STAGES:
        assert f"{stage}: ok" in summary
    results = json.loads((out / "results.json").read_text())
    assert results["all_ok"] and results["failed_stages"] == []
    stages = results["stages"]
    assert list(stages)[: len(STAGES)] == STAGES or set(stages) >= set(STAGES)
    assert stages["0_env"]["result"]["imports"]["mtlstm_hf.training"] == "ok"
    probes = stages["1_probes"]["result"]["probes"]
    assert probes["P1_training_backward"]["status"] == "pass" and probes["P3_autocast_bf16"]["status"] == "skipped"
    assert stages["2_tests"]["result"]["tests"] >= 1 and stages["2_tests"]["result"]["failures"] == 0
    rows = stages["3_throughput"]["result"]["measurements"][0]["rows"]
    assert [row["variant"] for row in rows] == ["nn.LSTM", "plain", "dropconnect", "awd"]  # awd-bf16: GPU only
    assert stages["4_ptb_epoch"]["result"]["models"][0]["ptb_epoch_minutes_checkpoint_every_10"] > 0
    assert {"baseline", "multi_timescale"} <= set(stages["5_dyck"]["result"])
    assert all(part["status"] == "pass" for part in stages["6_compile"]["result"]["parts"].values())


def test_the_merge_records_failures_without_failing(tmp_path):
    (tmp_path / "stages.tsv").write_text(
        "0_env\t0\t3\tok\n1_probes\t1\t9\tfailed\n3_throughput\t124\t90\ttimeout\n5_dyck\t0\t4\tok\n"
    )
    (tmp_path / "env.json").write_text(json.dumps({"cuda_available": True}))
    (tmp_path / "probes.json").write_text("{not json")
    (tmp_path / "tests.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_cuda" name="test_a"/>'
        '<testcase classname="tests.test_cuda" name="test_b"><failure message="assert 1 == 2&#10;more"/></testcase>'
        "</testsuite></testsuites>"
    )
    results = merge(tmp_path)
    stages = results["stages"]
    assert not results["all_ok"]
    assert set(results["failed_stages"]) == {"1_probes", "3_throughput", "2_tests", "4_ptb_epoch", "6_compile"}
    assert stages["0_env"]["result"] == {"cuda_available": True}
    assert "not valid JSON" in stages["1_probes"]["result_error"]
    assert stages["3_throughput"]["status"] == "timeout" and stages["3_throughput"]["exit_code"] == 124
    assert stages["5_dyck"]["result_error"] == "dyck.json missing"
    assert stages["2_tests"]["result"]["failures"] == 1
    assert stages["2_tests"]["result"]["failed"] == ["tests.test_cuda::test_b: assert 1 == 2"]
