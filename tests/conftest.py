"""Shared test set-up: no network, deterministic seeds, small model factories."""

import os

# Tests never touch the network; the Hub tests use a local stand-in via HF_ENDPOINT.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# One intra-op thread unless the caller chose (set before torch is imported; subprocesses inherit it):
# the tests' models are tiny, and on 2 cores the multi-process tests' workers compete with OpenMP
# threads (the whole suite: 10 min 44 s with torch's default, 9 min 5 s with 1, on the 2-core EPYC).
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


def corpus_and_saved_model(tmp_path, **config):
    """A random-word corpus folder (train/valid, 30 words) and a tiny model with its word tokenizer
    saved in ``tmp_path/model``: returns ``(corpus_dir, model_dir)``."""
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for split, lines in (("train", 80), ("valid", 20)):
        text = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + "\n" for _ in range(lines))
        (corpus / f"{split}.txt").write_text(text)
    from mtlstm_hf.data import build_word_tokenizer

    tokenizer = build_word_tokenizer(corpus / "train.txt")
    torch.manual_seed(0)
    model = MTLSTMForCausalLM(
        tiny_config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **config,
        )
    )
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return corpus, model_dir


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def _device_params():
    """``cpu`` and ``cuda`` (skipped without CUDA); ``MTLSTM_TEST_DEVICE=cpu|cuda`` keeps one."""
    wanted = os.environ.get("MTLSTM_TEST_DEVICE")
    params = []
    for name in ("cpu", "cuda"):
        marks = []
        if wanted is not None and wanted != name:
            marks.append(pytest.mark.skip(reason=f"MTLSTM_TEST_DEVICE={wanted}"))
        elif name == "cuda" and not torch.cuda.is_available():
            marks.append(pytest.mark.skip(reason="needs CUDA"))
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.fixture(params=_device_params())
def device(request) -> torch.device:
    """The device a test's model runs on: every such test runs on the CPU and, where there is one,
    on CUDA (oracles stay on the CPU). TensorFloat-32 is off for the test, so that CUDA gives the
    CPU's float32 results to rounding."""
    from mtlstm_hf.devices import float32_precision

    with float32_precision("highest"):
        yield torch.device(request.param)


@pytest.fixture(scope="module")
def one_thread():
    """torch runs with one intra-op thread for the whole test module, restored afterwards. Tiny
    models gain nothing from intra-op threads, and on a loaded (shared 2-core) machine OpenMP
    threads competing with other processes make every small operation several times slower.
    Use it per module: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


REMOTE_LOAD = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mtlstm_hf" or name.startswith("mtlstm_hf."):
            raise ImportError("mtlstm_hf is blocked in this process")
sys.meta_path.insert(0, Block())
import torch
import transformers
folder, ids_path, out_path, auto_class = sys.argv[1:5]
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
assert "mtlstm_hf" not in sys.modules
ids = torch.load(ids_path)
with torch.no_grad():
    out = model(ids)
torch.save({"logits": out.logits, "class": type(model).__module__}, out_path)
"""


def load_in_fresh_process_without_package(
    folder, ids: torch.Tensor, work_dir, auto_class: str = "AutoModelForCausalLM"
) -> dict:
    """Load ``folder`` with ``transformers.<auto_class>`` and ``trust_remote_code=True`` in a fresh
    Python process in which ``mtlstm_hf`` cannot be imported, run ``ids`` under ``no_grad`` and
    return ``{"logits", "class"}`` (``class`` is the module of the loaded class)."""
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
        [sys.executable, str(script), str(folder), str(work_dir / "ids.pt"), str(work_dir / "out.pt"), auto_class],
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


# transformers' common-test tester for recurrent LMs: batch 13, sequence 7,
# vocabulary 99, embedding 32, two layers of 32 units (layer 1 fixed T=3|4, layer 2 inverse
# gamma), special ids = vocabulary - 1 as in transformers' Mamba / RWKV / xLSTM testers.
TESTER_BATCH, TESTER_SEQ, TESTER_VOCAB, TESTER_EMBED = 13, 7, 99, 32
TESTER_SPECIAL_ID = TESTER_VOCAB - 1


def common_config(**overrides) -> MTLSTMConfig:
    fields = dict(
        vocab_size=TESTER_VOCAB,
        embedding_size=TESTER_EMBED,
        hidden_sizes=[32, 32],
        timescale_schedules=[
            {"type": "fixed", "values": [3.0, 4.0]},
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0},
        ],
        **REGULARIZATION_OFF,
        bos_token_id=TESTER_SPECIAL_ID,
        eos_token_id=TESTER_SPECIAL_ID,
        pad_token_id=TESTER_SPECIAL_ID,
    )
    fields.update(overrides)
    return MTLSTMConfig(**fields)


def common_model(model_class=MTLSTMForCausalLM, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model_class(common_config(**overrides)).eval()


def common_inputs(seed: int = 0, batch: int = TESTER_BATCH, length: int = TESTER_SEQ):
    """``(input_ids, attention_mask)``: ids below the special id; the mask has zeros anywhere
    (left, right and inside, as transformers draws them) and at least one token per row."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TESTER_SPECIAL_ID, (batch, length), generator=generator)
    mask = (torch.rand(batch, length, generator=generator) > 0.3).long()
    mask[torch.arange(batch), torch.randint(0, length, (batch,), generator=generator)] = 1
    return ids, mask


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide singletons (``AcceleratorState``, ``GradientState``): each
    training run makes its own ``Accelerator``."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def fresh_accelerate_state():
    """:func:`reset_accelerate_state` after the test (``pytestmark = pytest.mark.usefixtures(...)``)."""
    yield
    reset_accelerate_state()
