"""The command-line tools answer --help without importing torch, datasets or accelerate (which
take seconds; transformers' own top-level import is lazy and brings none of them, and its
HfArgumentParser builds the options from the configuration dataclasses), and `import mtlstm_hf`
alone still registers the Auto classes."""

import re
import subprocess
import sys

import pytest

COMMANDS = {
    "mtlstm-train": "mtlstm_hf.training.cli",
    "mtlstm-eval": "mtlstm_hf.evaluation.cli",
    "mtlstm-push": "mtlstm_hf.hub.cli",
    "mtlstm-demo": "mtlstm_hf.demo",
    "mtlstm-analyze": "mtlstm_hf.analysis.cli",
    "mtlstm-convert": "mtlstm_hf.convert.cli",
    "mtlstm-reproduce": "mtlstm_hf.reproduce.cli",
}

HELP = """
import sys
sys.argv = [{command!r}, "--help"]
from {module} import main
try:
    main(["--help"])
except SystemExit as stop:
    assert stop.code == 0, stop.code
heavy = sorted(name for name in ("torch", "datasets", "accelerate", "transformers.modeling_utils") if name in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_imports_no_torch(command):
    script = HELP.format(command=command, module=COMMANDS[command])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "HEAVY:", done.stdout[-500:]
    # The usage line shows the documented spellings (--output-dir, not HfArgumentParser's
    # --output_dir alias) and no setting's help ends in a meaningless "(default: None)".
    usage = done.stdout.split("\n\n")[0]
    assert re.findall(r"--\w+_[\w_]*", usage) == [], usage
    assert "(default: None)" not in done.stdout
    assert "--threads N" in done.stdout  # every command takes --threads


def test_import_mtlstm_hf_registers_the_auto_classes_in_a_fresh_process():
    script = (
        "import mtlstm_hf\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "config = AutoConfig.for_model('mtlstm', vocab_size=11, embedding_size=6, hidden_sizes=[6])\n"
        "print(type(AutoModelForCausalLM.from_config(config)).__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "mtlstm_hf.models.mtlstm.modeling_mtlstm"


def test_demo_saves_under_the_preset_name(tmp_path, monkeypatch, capsys):
    from mtlstm_hf.demo import main

    monkeypatch.chdir(tmp_path)
    main(["--preset", "tiny"])
    assert (tmp_path / "outputs" / "mtlstm-tiny-demo" / "config.json").is_file()
    assert "identical logits = True" in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_bad_thread_count_before_any_work(command, tmp_path, capsys):
    """``--threads 0`` is refused with exit status 2 and a message naming the option and the
    allowed values, before a file is written."""
    import importlib

    main = importlib.import_module(COMMANDS[command]).main
    arguments = {
        "mtlstm-train": ["--output-dir", str(tmp_path / "run")],
        "mtlstm-eval": [str(tmp_path)],
        "mtlstm-push": [str(tmp_path), "user/repo", "--dry-run", str(tmp_path / "dry")],
        "mtlstm-demo": ["--output-dir", str(tmp_path / "demo")],
        "mtlstm-analyze": [str(tmp_path)],
        "mtlstm-convert": [
            "--from",
            "awd-lstm",
            str(tmp_path / "w.pt"),
            "--vocab",
            str(tmp_path),
            str(tmp_path / "out"),
        ],
        "mtlstm-reproduce": ["dyck2", "--scale", "smoke", "--output-dir", str(tmp_path / "repro")],
    }[command]
    try:
        code = main([*arguments, "--threads", "0"])
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    assert re.search(
        r"threads.*(must be an integer >= 1|integer >= 1|must be a positive integer), got '?0'?",
        capsys.readouterr().err,
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_threads_are_applied_before_the_work(tmp_path, monkeypatch):
    """``--threads N`` reaches torch.set_num_threads (spied: this process keeps its threads)."""
    import torch

    from mtlstm_hf.demo import main as demo

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    demo(["--preset", "small", "--output-dir", str(tmp_path / "demo"), "--threads", "1"])
    assert calls == [1]
