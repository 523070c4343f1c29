"""Publishing to the Hub and loading back, against the local stand-in of ``hub_server.py``.

No internet: every client talks to :class:`hub_server.LocalHub` (see its docstring for how the
clients are pointed at it). Covered: one-commit push, bit-identical logits when loading with the
installed package and with remote code only (fresh process, ``mtlstm_hf`` blocked), revision
pinning, card metadata, dry run, branches, bad input refused before anything is sent, a failed
commit, tokens that never leak, the analysis report fetched back, the command line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import traceback
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from hub_server import LocalHub, hub  # noqa: F401 - `hub` is the fixture
from huggingface_hub import ModelCard, metadata_load
from transformers import AutoModelForCausalLM, AutoTokenizer

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.analysis.report import write_report
from mtlstm_hf.data.tokenizer import word_tokenizer_from_vocab
from mtlstm_hf.hub import CARD_SECTIONS, HubOfflineError, HubRequestError, HubUploadError, fetch_report, push_checkpoint
from mtlstm_hf.hub import publish as publish_module
from mtlstm_hf.hub.cli import main as push_main

REPO = "alice/mtlstm-tiny"
VOCAB = ["<unk>", "<eos>"] + [f"w{index}" for index in range(35)]  # 37 = tiny_config vocab_size
IDS = torch.tensor([[5, 9, 2, 30, 1, 7, 7, 3], [1, 2, 3, 4, 5, 6, 7, 8]])
FAKE_TOKEN = "hf_FakeTokenForTestsDoNotLeak0123456789"
EVAL_RESULTS = {
    "checkpoint": "/home/alice/runs/mts/best_model",
    "data": "/home/alice/data/penn",
    "split": "test",
    "count_splits": ["train"],
    "batch_size": 1,
    "window": 70,
    "bin_edges": [100, 1000, 10000],
    "n_stream_tokens": 5000,
    "perplexity": 88.5,
    "n_tokens": 4999,
    "nll_sum": 22400.0,
    "bins": {
        ">=10K": {"perplexity": 6.5, "n_tokens": 2000, "nll_sum": 3700.0},
        "1K-10K": {"perplexity": 27.0, "n_tokens": 1500, "nll_sum": 4900.0},
        "100-1K": {"perplexity": 170.25, "n_tokens": 1000, "nll_sum": 5100.0},
        "<100": {"perplexity": float("nan"), "n_tokens": 0, "nll_sum": 0.0},  # an empty bin
    },
}


FIXED_LAYER_NOTE = "the schedule fixes the timescales (T = 3|4); they follow no distribution"


def analysis_report(seed: int) -> dict:
    """A small report in the format of ``mtlstm-analyze`` (figures drawn separately as fake PNGs):
    layer 1 has a fixed schedule, so the report says no fit applies (``fit_note``) although it
    computed one; layer 2 has a fit."""

    def fits(alpha: float, beta: float) -> dict:
        return {"inverse_gamma": {"family": "inverse_gamma", "parameters": {"alpha": alpha, "beta": beta}}}

    layers = [
        {"layer": 1, "cell_type": "lstm", "summary": {"n_units": 10, "quantiles": {"0.5": 3.0, "1": 4.0}},
         "fits": fits(25.0, 80.0), "best_family": "gamma", "fit_note": FIXED_LAYER_NOTE},
        {"layer": 2, "cell_type": "lstm", "summary": {"n_units": 6, "quantiles": {"0.5": 2.5, "1": 40.0}},
         "fits": fits(1.6, 2.0), "best_family": "inverse_gamma", "fit_note": None},
    ]  # fmt: skip
    return {
        "format_version": 2,
        "library": "mtlstm_hf",
        "checkpoint": "/home/alice/runs/mts/best_model",
        "split": "validation",
        "n_stream_tokens": 500,
        "seed": seed,
        "analyses": {"timescales": {"layers": layers}},
        "skipped": {"state_gradients": "not requested"},
        "figures": {
            "timescales_layer1": "figures/timescales_layer1.png",
            "mutual_information": "figures/mutual_information.png",
        },
    }


def make_checkpoint(
    folder: Path, seed: int = 0, *, extras: bool = True, training: dict | None = None
) -> MTLSTMForCausalLM:
    """A tiny checkpoint as training + evaluation + analysis leave it; returns the model.
    ``training``: fields replacing those of the recorded training config (trained on the embedded sample)."""
    model = tiny_model(seed)
    model.save_pretrained(folder)
    word_tokenizer_from_vocab(VOCAB).save_pretrained(folder)
    if extras:
        training = {
            "data": None, "preset": "tiny", "optimizer": "awd", "bptt": 70, "eval_batch_size": 10, "seed": seed,
            "output_dir": "/home/alice/runs/mts", **(training or {}),
        }  # fmt: skip
        (folder / "training_config.json").write_text(json.dumps(training))
        (folder / "training_metrics.json").write_text(json.dumps({"val_perplexity": 123.5, "global_step": 40}))
        (folder / "eval_results.json").write_text(json.dumps(EVAL_RESULTS))
        write_report(analysis_report(seed), folder / "analysis")
        (folder / "analysis" / "figures").mkdir()
        for relative in analysis_report(seed)["figures"].values():
            (folder / "analysis" / relative).write_bytes(b"\x89PNG\r\n\x1a\n figure " + relative.encode())
        (folder / "analysis" / "scratch.txt").write_text("not a report file")
        (folder / "pytorch_model.bin").write_bytes(b"a pickle that must never be published")
        (folder / "notes.txt").write_text("local notes")
    return model


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


REMOTE_PULL = textwrap.dedent(
    """
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "mtlstm_hf" or name.startswith("mtlstm_hf."):
                raise ImportError("mtlstm_hf is blocked in this process")
    sys.meta_path.insert(0, Block())
    import torch
    from transformers import AutoModelForCausalLM
    repo_id, ids_path, out_path, *revisions = sys.argv[1:]
    ids, out = torch.load(ids_path), {}
    for revision in revisions:
        model = AutoModelForCausalLM.from_pretrained(repo_id, revision=revision, trust_remote_code=True).eval()
        with torch.no_grad():
            out[revision] = {"logits": model(ids).logits, "module": type(model).__module__}
    assert "mtlstm_hf" not in sys.modules
    torch.save(out, out_path)
    """
)


def test_push_then_pull_gives_identical_logits_with_pinned_revisions(hub: LocalHub, tmp_path: Path) -> None:
    first = make_checkpoint(tmp_path / "first", seed=0)
    second = make_checkpoint(tmp_path / "second", seed=1)
    assert not torch.equal(logits(first), logits(second))

    pushed_first = push_checkpoint(tmp_path / "first", REPO)
    pushed_second = push_checkpoint(tmp_path / "second", REPO)

    # One commit per push, holding exactly the announced files; never a pickle.
    assert len(hub.commit_requests(REPO)) == 2
    assert pushed_first.commit_oid != pushed_second.commit_oid
    stored = hub.files(REPO, pushed_first.commit_oid)
    assert set(stored) == set(pushed_first.files) | {".gitattributes"}
    assert not any(name.endswith(".bin") for name in stored)
    assert hub.repos[REPO].branches["main"] == pushed_second.commit_oid

    # Installed package: the registered class, pinned to each commit.
    for revision, model in ((pushed_first.commit_oid, first), ("main", second)):
        loaded = AutoModelForCausalLM.from_pretrained(REPO, revision=revision, trust_remote_code=False)
        assert isinstance(loaded, MTLSTMForCausalLM)
        assert torch.equal(logits(loaded.eval()), logits(model))
    tokenizer = AutoTokenizer.from_pretrained(REPO, revision=pushed_first.commit_oid)
    assert tokenizer.convert_ids_to_tokens(IDS[0].tolist())[:3] == ["w3", "w7", "w0"]

    # The report comes back as written (figures included), from the pinned commit.
    report = fetch_report(REPO, revision=pushed_first.commit_oid)
    assert {key: report[key] for key in analysis_report(0)} == analysis_report(0)
    assert Path(report["figure_paths"]["mutual_information"]).read_bytes().endswith(b"figures/mutual_information.png")
    assert fetch_report(REPO)["seed"] == 1

    # Remote code only: a fresh process where mtlstm_hf cannot be imported.
    torch.save(IDS, tmp_path / "ids.pt")
    (tmp_path / "pull.py").write_text(REMOTE_PULL)
    env = {**os.environ, **hub.client_env(tmp_path / "fresh_hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "pull.py", REPO, "ids.pt", "out.pt", pushed_first.commit_oid, "main"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    assert torch.equal(remote[pushed_first.commit_oid]["logits"], logits(first))
    assert torch.equal(remote["main"]["logits"], logits(second))
    assert all(entry["module"].startswith("transformers_modules") for entry in remote.values())
    assert hub.unhandled == []


def test_model_card_metadata_parses_and_holds_the_metrics(hub: LocalHub, tmp_path: Path) -> None:
    # Trained and evaluated on a local copy of PTB, named as the Hub dataset it is a copy of.
    make_checkpoint(tmp_path / "ckpt", training={"data": "/home/alice/data/penn"})
    push_checkpoint(tmp_path / "ckpt", REPO, dataset="ptb_text_only")
    card = ModelCard.load(REPO)  # downloaded README.md, parsed by huggingface_hub
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-generation"
    assert data.license == "bsd-3-clause"
    assert {"lstm", "multi-timescale", "custom_code"} <= set(data.tags)
    assert data.datasets == ["ptb_text_only"] and data.language == "en"
    metrics = {result.metric_name: result for result in data.eval_results}
    assert metrics["Test perplexity (eval batch size 1)"].metric_value == 88.5
    assert metrics["Test perplexity, word frequency >=10K (eval batch size 1)"].metric_value == 6.5
    assert metrics["Test perplexity, word frequency 100-1K (eval batch size 1)"].metric_value == 170.25
    assert metrics["Validation perplexity (eval batch size 10)"].metric_value == 123.5
    assert metrics["Validation perplexity (eval batch size 10)"].dataset_split == "validation"
    assert metrics["Test perplexity (eval batch size 1)"].dataset_split == "test"
    assert metrics["Test perplexity (eval batch size 1)"].metric_args["eval_batch_size"] == 1
    assert not any("<100" in name for name in metrics)  # the empty bin has no number to publish
    for result in data.eval_results:  # entries lacking one of these are dropped by the Hub tools
        assert result.task_type and result.dataset_type == "ptb_text_only" and result.metric_type == "perplexity"

    readme = hub.files(REPO)["README.md"].decode()
    (tmp_path / "README.md").write_text(readme)
    assert metadata_load(tmp_path / "README.md")["model-index"][0]["name"] == "mtlstm-tiny"
    headings = [line[3:] for line in readme.splitlines() if line.startswith("## ")]
    assert headings == list(CARD_SECTIONS)
    assert "| 1 | 10 | lstm | fixed (values=3, 4) | min 3, median 3, max 4 | forget_input |" in readme
    assert "![Timescales: timescales_layer1](analysis/figures/timescales_layer1.png)" in readme
    assert "![mutual_information](analysis/figures/mutual_information.png)" in readme
    # Estimated timescales of the report; a fit only where the report says one applies.
    assert f"| 1 | 3 | 4 | - | no fit: {FIXED_LAYER_NOTE.replace('|', chr(92) + '|')} |" in readme
    assert "| 2 | 2.5 | 40 | inverse_gamma | alpha 1.6, beta 2 |" in readme
    assert "| test | 100-1K | 170.2 | 1000 | 1 |" in readme and "| test | <100 | - | 0 | 1 |" in readme
    assert "| validation | all words | 123.5 | - | 10 |" in readme
    assert "| `bptt` | `70` |" in readme and "output_dir" not in readme
    assert "trust_remote_code=True" in readme
    for citation in ("2009.12727", "State gradients for analyzing memory", "1805.03716"):
        assert citation in readme
    assert "/home/alice" not in readme and b"/home/alice" not in hub.files(REPO)["eval_results.json"]


def test_dry_run_writes_exactly_the_expected_files_and_sends_nothing(hub: LocalHub, tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "ckpt")
    reference = tmp_path / "reference"
    model.save_pretrained(reference)  # which remote-code files the model folder needs
    remote_code = {path.name for path in reference.glob("*.py")}
    assert {"modeling_mtlstm.py", "configuration_mtlstm.py"} <= remote_code
    expected = remote_code | {
        "README.md", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
        "training_config.json", "training_metrics.json", "eval_results.json",
        "analysis/report.json", "analysis/figures/timescales_layer1.png", "analysis/figures/mutual_information.png",
    }  # fmt: skip
    target = tmp_path / "out" / "dry"

    result = push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=target)

    written = {path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file()}
    assert written == expected == set(result.files)
    assert sorted(result.skipped) == ["analysis/scratch.txt", "notes.txt", "pytorch_model.bin"]
    assert result.commit_oid is None and result.dry_run_dir == target
    assert os.listdir(tmp_path / "out") == ["dry"]  # the staging folder was renamed, nothing left over
    assert hub.requests == []
    assert json.loads((target / "training_config.json").read_text())["output_dir"] == "mts"
    loaded = AutoModelForCausalLM.from_pretrained(target, trust_remote_code=False)
    assert torch.equal(logits(loaded.eval()), logits(model))
    with pytest.raises(FileExistsError, match="not empty"):
        push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=target)


def test_push_to_a_new_branch_of_a_private_repo(hub: LocalHub, tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "ckpt", extras=False)
    first = push_checkpoint(tmp_path / "ckpt", REPO, private=True, revision="experiment", commit_message="try 1")
    second = push_checkpoint(tmp_path / "ckpt", REPO, private=True, revision="experiment", commit_message="try 2")
    repo = hub.repos[REPO]
    assert repo.private
    assert set(repo.branches) == {"main", "experiment"}
    assert set(hub.files(REPO, "main")) == {".gitattributes"}  # main untouched
    assert repo.branches["experiment"] == second.commit_oid
    assert [repo.commits[oid].message for oid in (first.commit_oid, second.commit_oid)] == ["try 1", "try 2"]
    assert {"README.md", "model.safetensors", "tokenizer.json"} <= set(hub.files(REPO, "experiment"))
    assert "No analysis report was published" in hub.files(REPO, "experiment")["README.md"].decode()
    with pytest.raises(FileNotFoundError, match="no analysis report"):
        fetch_report(REPO, revision="experiment")


def _break(folder: Path, case: str) -> None:
    if case == "not ours":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    elif case == "no config":
        (folder / "config.json").unlink()
    elif case == "no weights":
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").unlink()
    elif case == "no tokenizer":
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer_config.json").unlink()
    elif case == "vocabulary mismatch":
        word_tokenizer_from_vocab(VOCAB[:30]).save_pretrained(folder)
    elif case == "report without report.json":
        (folder / "analysis" / "report.json").unlink()
    elif case == "not an analysis report":
        (folder / "analysis" / "report.json").write_text(json.dumps({"alpha": 1.6}))
    elif case == "comparison instead of evaluation":
        (folder / "eval_results.json").write_text(json.dumps({"a": {}, "b": {}, "comparison": {}}))


@pytest.mark.parametrize(
    ("case", "repo_id", "revision", "error", "match"),
    [
        ("not ours", REPO, None, ValueError, "not an mtlstm checkpoint"),
        ("no config", REPO, None, ValueError, "no config.json"),
        ("no weights", REPO, None, FileNotFoundError, "no model weights"),
        ("no tokenizer", REPO, None, FileNotFoundError, "no tokenizer"),
        ("vocabulary mismatch", REPO, None, ValueError, "30 tokens"),
        ("report without report.json", REPO, None, FileNotFoundError, "no report.json"),
        ("not an analysis report", REPO, None, ValueError, "not an mtlstm analysis report"),
        ("comparison instead of evaluation", REPO, None, ValueError, "--compare"),
        (None, "not a valid repo!", None, ValueError, "invalid repo id"),
        (None, "no-namespace", None, ValueError, "invalid repo id"),
        (None, "alice/too/deep", None, ValueError, "invalid repo id"),
        (None, REPO, "0" * 40, ValueError, "invalid target revision"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    hub: LocalHub, tmp_path: Path, case, repo_id, revision, error, match
) -> None:
    make_checkpoint(tmp_path / "ckpt")
    if case is not None:
        _break(tmp_path / "ckpt", case)
    with pytest.raises(error, match=match):
        push_checkpoint(tmp_path / "ckpt", repo_id, revision=revision)
    assert hub.requests == []


def test_offline_mode_is_refused_before_loading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what the suite's conftest sets up
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE is set"):
        push_checkpoint(tmp_path, REPO)
    assert push_main([str(tmp_path), REPO]) == 4  # no network: an I/O failure, not bad input
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_failed_commit_is_a_clear_error_and_leaves_no_local_state(
    hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_checkpoint(tmp_path / "ckpt")
    before = {path: path.read_bytes() for path in (tmp_path / "ckpt").rglob("*") if path.is_file()}
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))  # where the staging folder goes
    hub.fail_commit_status = 500

    with pytest.raises(HubUploadError, match="failed while committing the files; nothing was committed") as caught:
        push_checkpoint(tmp_path / "ckpt", REPO)
    assert "500" in str(caught.value) and REPO in str(caught.value)
    assert len(hub.commit_requests(REPO)) == 1  # the server got the payload and failed it
    assert set(hub.files(REPO)) == {".gitattributes"}  # nothing committed
    assert list(temp_root.iterdir()) == []  # staging removed
    assert {path: path.read_bytes() for path in (tmp_path / "ckpt").rglob("*") if path.is_file()} == before

    # A dry run failing mid-way leaves neither its folder nor the staging folder behind.
    def broken_card(*args, **kwargs):
        raise RuntimeError("card generation failed")

    monkeypatch.setattr(publish_module, "build_model_card", broken_card)
    with pytest.raises(RuntimeError, match="card generation failed"):
        push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=tmp_path / "out" / "dry")
    assert list((tmp_path / "out").iterdir()) == []


def _collect_logs() -> tuple[list[str], logging.Handler]:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    return records, Collect(level=logging.DEBUG)


def test_token_never_appears_in_logs_errors_files_or_card(
    hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_checkpoint(tmp_path / "ckpt")
    records, handler = _collect_logs()
    loggers = [logging.getLogger(name) for name in ("", "huggingface_hub", "transformers", "mtlstm_hf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    errors: list[BaseException] = []
    try:
        push_checkpoint(tmp_path / "ckpt", REPO, token=FAKE_TOKEN)
        hub.fail_commit_status = 500
        with pytest.raises(HubUploadError) as failed:
            push_checkpoint(tmp_path / "ckpt", REPO, token=FAKE_TOKEN)
        errors.append(failed.value)
        hub.fail_commit_status = None

        # An error whose own text shows the token: redacted, and not chained.
        def leaky_commit(*args, **kwargs):
            raise RuntimeError(f"server echoed Authorization: Bearer {FAKE_TOKEN}")

        with monkeypatch.context() as patch:
            patch.setattr(publish_module.HfApi, "create_commit", leaky_commit)
            with pytest.raises(HubUploadError, match=r"Bearer \*\*\*") as leaked:
                push_checkpoint(tmp_path / "ckpt", REPO, token=FAKE_TOKEN)
        errors.append(leaked.value)
        assert leaked.value.__cause__ is None and leaked.value.__context__ is None

        (tmp_path / "token").write_text(FAKE_TOKEN + "\n")
        assert push_main([str(tmp_path / "ckpt"), REPO, "--token-file", str(tmp_path / "token")]) == 0
        assert (
            push_main(
                [
                    str(tmp_path / "ckpt"),
                    REPO,
                    "--token-file",
                    str(tmp_path / "token"),
                    "--dry-run",
                    str(tmp_path / "dry"),
                ]
            )
            == 0
        )
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)

    assert f"Bearer {FAKE_TOKEN}" in hub.authorizations  # the token was really used...
    output = capsys.readouterr()
    texts = [output.out, output.err, *records]
    texts += ["".join(traceback.format_exception(error)) + repr(error) for error in errors]
    texts += [content.decode("utf-8", "replace") for content in hub.files(REPO).values()]
    texts += [path.read_text("utf-8", "replace") for path in (tmp_path / "dry").rglob("*") if path.is_file()]
    assert not [text for text in texts if FAKE_TOKEN in text]  # ...and shown nowhere


def test_command_line(hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_checkpoint(tmp_path / "ckpt", extras=False)
    assert push_main([str(tmp_path / "ckpt"), "not a repo id", "--dry-run", str(tmp_path / "dry")]) == 2
    assert "mtlstm-push: error: invalid repo id" in capsys.readouterr().err
    assert not (tmp_path / "dry").exists() and hub.requests == []

    assert push_main([str(tmp_path / "ckpt"), REPO, "--dry-run", str(tmp_path / "dry")]) == 0
    assert "Dry run:" in capsys.readouterr().out and hub.requests == []

    assert push_main([str(tmp_path / "ckpt"), REPO, "--revision", "v1", "--commit-message", "first release"]) == 0
    out = capsys.readouterr().out
    oid = hub.repos[REPO].branches["v1"]
    assert f"in commit {oid}" in out and "+ model.safetensors" in out
    assert hub.repos[REPO].commits[oid].message == "first release"

    hub.fail_commit_status = 503
    assert push_main([str(tmp_path / "ckpt"), REPO]) == 4  # an I/O failure (mtlstm_hf.exit_codes)
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("mtlstm-push: upload failed:") and "503" in error[0]


def test_model_card_documentation_names_every_section() -> None:
    documentation = (Path(__file__).resolve().parents[1] / "MODEL_CARD.md").read_text(encoding="utf-8")
    for title in CARD_SECTIONS:
        assert f"## {title}" in documentation, title


@pytest.mark.parametrize("source", ["HF_TOKEN", "stored login"])
def test_token_found_by_huggingface_hub_is_redacted_too(
    hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """No token passed: huggingface_hub finds it in HF_TOKEN or in the stored login file
    (HF_TOKEN_PATH, by default under HF_HOME). A server that echoes the Authorization header in
    its errors must not get it shown: not by mtlstm-push, not in the exception, its chain or
    its traceback."""
    import huggingface_hub
    from huggingface_hub import constants

    make_checkpoint(tmp_path / "ckpt", extras=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)  # send the token found, as by default
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "hf_home" / "token"
    monkeypatch.setenv("HF_HOME", str(token_file.parent))
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_file))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))  # read from the environment at import
    if source == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    else:
        token_file.parent.mkdir()
        token_file.write_text(FAKE_TOKEN + "\n")
    assert huggingface_hub.get_token() == FAKE_TOKEN  # huggingface_hub's own lookup finds it there
    hub.echo_authorization_in_errors = True
    hub.fail_commit_status = 500

    with pytest.raises(HubUploadError) as upload:
        push_checkpoint(tmp_path / "ckpt", REPO)
    assert push_main([str(tmp_path / "ckpt"), REPO]) == 4
    with pytest.raises(HubRequestError) as download:
        fetch_report("alice/no-such-repo")  # an error on the download side, echoing the header too

    assert f"Bearer {FAKE_TOKEN}" in hub.authorizations  # the token was sent...
    assert "request had Authorization: Bearer ***" in str(upload.value)  # ...echoed, and redacted
    assert "Bearer ***" in str(download.value)
    output = capsys.readouterr()
    assert "mtlstm-push: upload failed:" in output.err and "500" in output.err
    texts = [output.out, output.err]
    for error in (upload.value, download.value):
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert not [text for text in texts if FAKE_TOKEN in text]


def test_push_restores_a_model_folder_a_crashed_training_run_left_aside(tmp_path: Path) -> None:
    """best_model/ moved to .best_model.old by a crash between the two renames of its replacement:
    mtlstm-push moves it back and publishes it (dry run: nothing is sent)."""
    make_checkpoint(tmp_path / "run" / "best_model", extras=False)
    before = (tmp_path / "run" / "best_model" / "model.safetensors").read_bytes()
    os.replace(tmp_path / "run" / "best_model", tmp_path / "run" / ".best_model.old")

    assert push_main([str(tmp_path / "run" / "best_model"), REPO, "--dry-run", str(tmp_path / "dry")]) == 0
    assert sorted(os.listdir(tmp_path / "run")) == ["best_model"]
    assert (tmp_path / "run" / "best_model" / "model.safetensors").read_bytes() == before
    assert "model.safetensors" in os.listdir(tmp_path / "dry")
