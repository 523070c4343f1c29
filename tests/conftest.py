"""Shared test set-up: no network, deterministic seeds, small model factories."""

import os

# Tests never touch the network; the Hub tests use a local stand-in via HF_ENDPOINT.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from mtlstm_hf import REGULARIZATION_OFF, MTLSTMConfig, MTLSTMForCausalLM  # noqa: E402


# The shared corpora (../shared/data beside the repository, see its README; PTB is never bundled).
DATA_ROOT = Path(os.environ.get("MTLSTM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
PTB_DIR = DATA_ROOT / "ptb"
WIKITEXT2_DIR = DATA_ROOT / "wikitext-2"


def tiny_config(**overrides) -> MTLSTMConfig:
    """A small multi-timescale LM (2 layers) with every dropout off unless overridden."""
    fields = dict(
        vocab_size=37,
        embedding_size=6,
        hidden_sizes=[10, 6],
        timescale_schedules=[{"type": "fixed", "values": [3.0, 4.0]}, None],
        **REGULARIZATION_OFF,
        pad_token_id=0,
        eos_token_id=1,
    )
    fields.update(overrides)
    return MTLSTMConfig(**fields)


def tiny_model(seed: int = 0, **overrides) -> MTLSTMForCausalLM:
    torch.manual_seed(seed)
    return MTLSTMForCausalLM(tiny_config(**overrides)).eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


REMOTE_LOAD = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mtlstm_hf" or name.startswith("mtlstm_hf."):
            raise ImportError("mtlstm_hf is blocked in this process")
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModelForCausalLM
folder, ids_path, out_path = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
assert "mtlstm_hf" not in sys.modules
ids = torch.load(ids_path)
with torch.no_grad():
    out = model(ids)
torch.save({"logits": out.logits, "class": type(model).__module__}, out_path)
"""


def load_in_fresh_process_without_package(folder, ids: torch.Tensor, work_dir) -> dict:
    """Load ``folder`` with ``trust_remote_code=True`` in a fresh Python process in which
    ``mtlstm_hf`` cannot be imported, run ``ids`` under ``no_grad`` and return
    ``{"logits", "class"}`` (``class`` is the module of the loaded class)."""
    import subprocess
    import sys
    from pathlib import Path

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(ids, work_dir / "ids.pt")
    script = work_dir / "load.py"
    script.write_text(REMOTE_LOAD)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(work_dir / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(script), str(folder), str(work_dir / "ids.pt"), str(work_dir / "out.pt")],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(work_dir / "out.pt")
    assert loaded["class"].startswith("transformers_modules"), loaded["class"]
    return loaded
