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
