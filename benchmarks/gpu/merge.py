"""The last step of the GPU check: one ``results.json`` from the stages' files in the work folder
(``stages.tsv``: name, exit code, seconds, status; ``<stage>.json``; ``tests.xml``, a JUnit
report), written to standard output. A stage whose file is missing or unreadable is recorded as
such, so the merge never fails for a failed stage.

    python benchmarks/gpu/merge.py WORK_FOLDER > results.json
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

STAGE_FILES = {
    "0_env": "env.json",
    "1_probes": "probes.json",
    "3_throughput": "throughput.json",
    "4_ptb_epoch": "epoch.json",
    "5_dyck": "dyck.json",
    "6_compile": "compile.json",
}


def junit_summary(path: Path) -> dict[str, Any]:
    """Counts and the failed tests' names and first message lines of a JUnit XML report."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    summary = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": []}
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            summary[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            for problem in list(case.findall("failure")) + list(case.findall("error")):
                message = (problem.get("message") or problem.text or "").strip().splitlines()
                summary["failed"].append(
                    f"{case.get('classname')}::{case.get('name')}: {message[0][:300] if message else ''}"
                )
    return summary


def merge(work: Path) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    table = work / "stages.tsv"
    if table.is_file():
        for line in table.read_text().splitlines():
            name, code, seconds, status = (line.split("\t") + ["", "", "", ""])[:4]
            stages[name] = {
                "exit_code": int(code) if code.lstrip("-").isdigit() else code,
                "seconds": float(seconds or 0),
                "status": status,
            }
    for name, filename in STAGE_FILES.items():
        path = work / filename
        entry = stages.setdefault(name, {"status": "not run"})
        if path.is_file():
            try:
                entry["result"] = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                entry["result_error"] = f"{filename} is not valid JSON: {error}"
        elif entry.get("status") == "ok":
            entry["result_error"] = f"{filename} missing"
    tests = stages.setdefault("2_tests", {"status": "not run"})
    if (work / "tests.xml").is_file():
        try:
            tests["result"] = junit_summary(work / "tests.xml")
        except ElementTree.ParseError as error:
            tests["result_error"] = f"tests.xml: {error}"
    failed = [name for name, entry in stages.items() if entry.get("status") not in ("ok", "skipped")]
    return {"format": "mtlstm_hf.device_check/1", "stages": stages, "failed_stages": failed, "all_ok": not failed}


if __name__ == "__main__":
    print(json.dumps(merge(Path(sys.argv[1])), indent=2))
