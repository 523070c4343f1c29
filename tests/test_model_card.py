"""What the generated model card says, against what the run recorded.

Oracles: the training run itself (``TrainingResult.test_perplexity``, the ``TrainingSettings`` it
ran with), ``mtlstm-eval``'s result, the analysis report's own ``fit_note``, the card's YAML as
``huggingface_hub`` parses it, the README's set-up command, the checkpoint's own tokenizer files,
and every Python block of the card run as pasted in a fresh process (stdin closed, so a
"run the custom code? [y/N]" prompt shows up in the output instead of waiting).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import LocalHub, hub  # noqa: F401 - `hub` is the fixture
from huggingface_hub import ModelCard, metadata_load
from test_hub import EVAL_RESULTS, REPO, make_checkpoint
from transformers import AutoTokenizer

from mtlstm_hf.analysis.report import analyze_checkpoint
from mtlstm_hf.data import sample_corpus_dir
from mtlstm_hf.evaluation import evaluate_checkpoint
from mtlstm_hf.hub import push_checkpoint
from mtlstm_hf.training import TrainingSettings, train

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Do you wish to run the custom code"
# What the card leaves out of the hyperparameter table (where to write, how to log), and the
# fields only one optimizer reads (build_optimizer: SGD or AdamW; NT-ASGD only for awd).
BOOKKEEPING = {"output_dir", "overwrite_output_dir", "resume_from", "save_every_steps", "save_every_epochs",
               "keep_checkpoints", "log_every_steps", "tracker", "progress_bar", "cpu", "evaluate_test"}  # fmt: skip
ADAMW_ONLY = {"lr_scheduler", "warmup_steps", "adam_beta1", "adam_beta2", "adam_epsilon"}
AWD_ONLY = {"nonmono", "use_asgd", "replay_reference_loop"}
BLOCK_PACKAGE = """import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mtlstm_hf" or name.startswith("mtlstm_hf."):
            raise ImportError("mtlstm_hf is blocked in this process")
sys.meta_path.insert(0, Block())
"""  # the way conftest.load_in_fresh_process_without_package hides the package

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


# --- helpers -------------------------------------------------------------------------------------


def dry_run(checkpoint: Path, target: Path, **kwargs) -> tuple[str, dict]:
    """The card of a dry run: ``(README.md text, its YAML metadata as huggingface_hub reads it)``."""
    push_checkpoint(checkpoint, REPO, dry_run_dir=target, **kwargs)
    return (target / "README.md").read_text(encoding="utf-8"), metadata_load(target / "README.md")


def table_after(readme: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header line starts with ``header``."""
    lines = readme[readme.index(header) :].split("\n\n")[0].splitlines()[2:]
    return [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def hyperparameters(readme: str) -> dict[str, object]:
    """The card's hyperparameter table: field -> value (the JSON in backticks; ``None`` for "none ...")."""
    values = {}
    for name, cell in table_after(readme, "| Setting | Value |"):
        if cell.startswith("`"):
            values[name.strip("`")] = json.loads(cell.split("`")[1])
        else:
            assert cell.startswith(("none", "the WikiText-2 sample")), cell
            values[name.strip("`")] = None
    return values


def model_index(readme_path: Path) -> list:
    return ModelCard.load(readme_path).data.eval_results or []


# --- a real run: train, evaluate, analyse, publish -----------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny ``mtlstm-train`` run on a local corpus folder ``penn`` (test split scored at the end),
    then ``mtlstm-eval`` (batch size 1) and ``mtlstm-analyze`` (timescales) of its best model.
    Layer 2 gets an inverse-gamma schedule, so that the report has a layer with a fit and one
    (the fixed layer 1) without."""
    base = tmp_path_factory.mktemp("run")
    corpus = base / "penn"
    corpus.mkdir()
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    weights = [1.0 / (rank + 1) for rank in range(30)]
    for name, n_lines in (("train", 100), ("valid", 30), ("test", 20)):
        lines = [" ".join(rng.choices(words, weights, k=rng.randint(3, 9))) for _ in range(n_lines)]
        (corpus / f"{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    schedules = [{"type": "fixed", "values": [3.0, 4.0]}, {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}]
    config = TrainingSettings(
        data=str(corpus), preset="tiny", model_overrides={"timescale_schedules": schedules}, output_dir=str(base / "run"),
        batch_size=4, eval_batch_size=2, bptt=10, epochs=1, progress_bar=False, tracker="jsonl", cpu=True,
    )  # fmt: skip
    result = train(config)
    best = base / "run" / "best_model"
    assert result.test_perplexity is not None and best.is_dir()
    evaluation = evaluate_checkpoint(best, str(corpus), batch_size=1)
    (best / "eval_results.json").write_text(json.dumps(evaluation))
    report = analyze_checkpoint(best, None, best / "analysis", analyses=["timescales"], figures=False)
    return {"config": config, "result": result, "best": best, "evaluation": evaluation, "report": report, "base": base}


def test_the_card_of_a_real_run_reports_what_it_measured(trained_run, tmp_path: Path) -> None:
    """Each perplexity with its split and evaluation batch size: mtlstm-eval's test (batch 1), the
    run's own test of these weights (eval_batch_size, from the run log: best_model/ does not record
    it) and the validation of the saved weights. A local folder is named as one, never as a Hub
    dataset, so the model-index and datasets metadata stay empty."""
    config, result, evaluation = trained_run["config"], trained_run["result"], trained_run["evaluation"]
    readme, meta = dry_run(trained_run["best"], tmp_path / "dry")

    assert "datasets" not in meta and "model-index" not in meta  # nothing measured on a Hub dataset
    assert meta["language"] == "en"  # a Penn Treebank folder
    assert "Trained on a local corpus `penn` (a folder or file on the training machine, not a Hub dataset)" in readme
    rows = {(row[0], row[1], row[5]): row for row in table_after(readme, "| Split | Words |")}
    assert rows[("test", "all words", "`mtlstm-eval`")][2:5] == [
        f"{evaluation['perplexity']:.4g}",
        str(evaluation["n_tokens"]),
        "1",
    ]
    assert rows[("test", "all words", "end of training (run log)")][2:5] == [
        f"{result.test_perplexity:.4g}",
        "-",
        str(config.eval_batch_size),
    ]
    metrics = json.loads((trained_run["best"] / "training_metrics.json").read_text())
    validation = rows[("validation", "all words", f"training: the saved weights (step {metrics['global_step']})")]
    assert validation[2:5] == [f"{metrics['val_perplexity']:.4g}", "-", str(config.eval_batch_size)]

    # The hyperparameters are the run's: the awd default learning rate (30) it used, no AdamW constants.
    shown = hyperparameters(readme)
    expected = {
        name: value
        for name, value in json.loads(json.dumps(config.to_dict())).items()
        if name not in BOOKKEEPING | ADAMW_ONLY
    }
    expected["learning_rate"] = config.effective_learning_rate
    expected["data"] = "penn"  # local paths cut to their last part
    assert shown == expected and shown["learning_rate"] == 30.0

    # The same folder elsewhere has no run log: no test perplexity is claimed for it.
    copy = tmp_path / "copy" / "best_model"
    shutil.copytree(trained_run["best"], copy)
    readme, _ = dry_run(copy, tmp_path / "dry_copy")
    assert "end of training" not in readme


def test_a_later_best_model_without_its_test_gets_no_test_perplexity(trained_run, tmp_path: Path) -> None:
    """A resumed run that saved a new best model and stopped before scoring it: the last test in
    the log belongs to the previous weights."""
    run = tmp_path / "run"
    shutil.copytree(trained_run["best"].parent, run)
    metrics = json.loads((run / "best_model" / "training_metrics.json").read_text())
    log = run / "logs" / "metrics.jsonl"
    last_step = max(record.get("step") or 0 for record in map(json.loads, log.read_text().splitlines()))
    later = {**metrics, "global_step": last_step + 5, "val_loss": metrics["val_loss"] - 0.01}
    (run / "best_model" / "training_metrics.json").write_text(json.dumps(later))
    with log.open("a") as handle:
        handle.write(json.dumps({"step": later["global_step"], "eval/loss": later["val_loss"]}) + "\n")
    readme, _ = dry_run(run / "best_model", tmp_path / "dry")
    assert "end of training" not in readme


def test_timescale_fits_only_where_the_report_says_one_applies(trained_run, tmp_path: Path) -> None:
    """A layer whose report entry has a fit_note gets no fit (and no best family), only the
    note; a layer without one gets its inverse-gamma parameters. A format 1 report (no fit_note,
    layers from 0) gives the same rows from its per-unit timescales."""
    layers = trained_run["report"]["analyses"]["timescales"]["layers"]
    notes = {entry["layer"]: entry["fit_note"] for entry in layers}
    assert None in notes.values() and any(notes.values()), notes  # one layer each way
    assert all("alpha" in entry["fits"]["inverse_gamma"]["parameters"] for entry in layers)  # computed for every layer
    readme, _ = dry_run(trained_run["best"], tmp_path / "dry")
    rows = {int(row[0]): row for row in table_after(readme, "| Layer | Median T |")}
    assert sorted(rows) == sorted(notes)
    for entry in layers:
        row = rows[entry["layer"]]
        alpha = entry["fits"]["inverse_gamma"]["parameters"]["alpha"]
        if entry["fit_note"] is None:
            assert row[3] == entry["best_family"] and row[4].startswith(f"alpha {alpha:.4g}, beta "), row
        else:
            assert row[3:] == ["-", f"no fit: {entry['fit_note']}"], row

    legacy = json.loads((trained_run["best"] / "analysis" / "report.json").read_text())
    legacy["format_version"] = 1
    for entry in legacy["analyses"]["timescales"]["layers"]:
        entry["layer"] -= 1
        del entry["fit_note"]
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "report.json").write_text(json.dumps(legacy))
    legacy_readme, _ = dry_run(trained_run["best"], tmp_path / "dry_legacy", analysis_dir=tmp_path / "legacy")
    assert table_after(legacy_readme, "| Layer | Median T |") == table_after(readme, "| Layer | Median T |")


# --- what the card says the model was trained on ---------------------------------------------------


def test_a_run_on_the_embedded_sample_is_not_called_wikitext2(tmp_path: Path) -> None:
    """data null = the 256 KiB sample: no datasets metadata, no model-index entry (it names Hub
    datasets, and no number was measured on one), and --dataset cannot rename it."""
    make_checkpoint(tmp_path / "ckpt", training={"data": None, "dataset_config_name": None})
    evaluation = {**EVAL_RESULTS, "data": str(sample_corpus_dir())}  # mtlstm-eval's default: the recorded corpus
    (tmp_path / "ckpt" / "eval_results.json").write_text(json.dumps(evaluation))
    readme, meta = dry_run(tmp_path / "ckpt", tmp_path / "dry")
    assert "datasets" not in meta and "model-index" not in meta
    assert meta["language"] == "en"
    assert "It is not WikiText-2" in readme and "WikiText-2 sample embedded in `mtlstm_hf`" in readme

    with pytest.raises(ValueError, match="names the Hub dataset of a local corpus"):
        push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=tmp_path / "dry2", dataset="wikitext")
    assert not (tmp_path / "dry2").exists()


def test_a_run_on_a_hub_dataset_names_it_with_each_split_and_batch_size(tmp_path: Path) -> None:
    training = TrainingSettings(data="wikitext", dataset_config_name="wikitext-2-v1", eval_batch_size=10).to_dict()
    make_checkpoint(tmp_path / "ckpt", training=training)
    (tmp_path / "ckpt" / "eval_results.json").write_text(json.dumps({**EVAL_RESULTS, "data": "wikitext"}))
    readme, meta = dry_run(tmp_path / "ckpt", tmp_path / "dry")

    assert meta["datasets"] == ["wikitext"] and meta["language"] == "en"
    results = model_index(tmp_path / "dry" / "README.md")
    assert {(r.dataset_type, r.dataset_config) for r in results} == {("wikitext", "wikitext-2-v1")}
    found = {
        (r.dataset_split, (r.metric_args or {}).get("eval_batch_size"), r.metric_value)
        for r in results
        if "frequency" not in r.metric_name
    }
    assert found == {("test", 1, 88.5), ("validation", 10, 123.5)}  # mtlstm-eval's test, the run's validation
    assert "Trained on the Hub dataset `wikitext` (configuration `wikitext-2-v1`)" in readme


@pytest.mark.parametrize(
    ("data", "language"),
    [("/home/alice/data/penn", "en"), ("/home/alice/corpora/poems", None), ("./wikitext-103", "en")],
)
def test_a_local_folder_is_named_as_such_and_renamed_only_on_request(
    tmp_path: Path, data: str, language: str | None
) -> None:
    make_checkpoint(tmp_path / "ckpt", training={"data": data})
    (tmp_path / "ckpt" / "eval_results.json").unlink()
    readme, meta = dry_run(tmp_path / "ckpt", tmp_path / "dry")
    name = Path(data).name
    assert "datasets" not in meta and "model-index" not in meta and meta.get("language") == language
    assert f"Trained on a local corpus `{name}` (a folder or file on the training machine, not a Hub dataset)" in readme

    readme, meta = dry_run(tmp_path / "ckpt", tmp_path / "named", dataset="alice/my-corpus", dataset_config="v1")
    assert meta["datasets"] == ["alice/my-corpus"]
    [validation] = model_index(tmp_path / "named" / "README.md")
    assert (validation.dataset_type, validation.dataset_config, validation.dataset_split) == (
        "alice/my-corpus",
        "v1",
        "validation",
    )


@pytest.mark.parametrize("optimizer", ["awd", "adamw"])
def test_the_hyperparameter_table_holds_the_values_the_run_used(tmp_path: Path, optimizer: str) -> None:
    fields = {
        "awd": dict(learning_rate=20.0, clip_grad_norm=0.5, nonmono=3, use_asgd=False, weight_decay=2e-6),
        "adamw": dict(learning_rate=2e-3, clip_grad_norm=None, adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-6,
                      lr_scheduler="cosine", warmup_steps=7, weight_decay=0.01),
    }[optimizer]  # fmt: skip
    config = TrainingSettings(
        optimizer=optimizer, batch_size=8, bptt=35, epochs=3, seed=7, model_overrides={"weight_drop": 0.3}, **fields
    )
    make_checkpoint(tmp_path / "ckpt", extras=False)
    config.to_json_file(tmp_path / "ckpt" / "training_config.json")
    readme, _ = dry_run(tmp_path / "ckpt", tmp_path / "dry")
    shown = hyperparameters(readme)
    other = ADAMW_ONLY if optimizer == "awd" else AWD_ONLY
    assert shown == {name: value for name, value in config.to_dict().items() if name not in BOOKKEEPING | other}
    assert not set(shown) & other
    if optimizer == "adamw":
        assert "| `clip_grad_norm` | none (no clipping) |" in readme
        assert "AdamW at learning rate 0.002 (beta1 0.8; beta2 0.95; epsilon 1e-06" in readme
    else:
        assert "SGD at learning rate 20 without the switch to averaged SGD" in readme


# --- using the published model: every snippet, as pasted ------------------------------------------


def test_every_code_block_of_the_card_runs_as_pasted(hub: LocalHub, tmp_path: Path) -> None:
    """Pushed to the local Hub stand-in; each ```python block runs in a fresh process against it
    (only HF_ENDPOINT & co. point there), stdin closed: exit 0 and no remote-code prompt. The
    block without the package runs where mtlstm_hf cannot be imported. The install line is the
    README's set-up command, not a PyPI package."""
    make_checkpoint(tmp_path / "ckpt")
    push_checkpoint(tmp_path / "ckpt", REPO)
    readme = hub.files(REPO)["README.md"].decode()
    assert "pip install mtlstm_hf" not in readme
    install = "pip install -c constraints.txt -e ."
    assert install in readme and install in (REPO_ROOT / "README.md").read_text(encoding="utf-8")

    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) == 2 and "import mtlstm_hf" in blocks[0] and "import mtlstm_hf" not in blocks[1]
    for index, block in enumerate(blocks):
        with_package = "import mtlstm_hf" in block
        code = block if with_package else BLOCK_PACKAGE + block + "\nassert 'mtlstm_hf' not in sys.modules\n"
        env = {
            **os.environ,
            **hub.client_env(tmp_path / f"hf_home{index}"),
            "PYTHONPATH": str(REPO_ROOT) if with_package else "",
        }
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, (block, output[-3000:])
        assert PROMPT not in output, block
        assert done.stdout.strip(), block  # the generated text was printed
    assert hub.unhandled == []


# --- staged files as the checkpoint has them --------------------------------------------------------


def test_the_staged_tokenizer_config_is_the_checkpoints_without_runtime_keys(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "ckpt", extras=False)
    push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=tmp_path / "dry")
    staged = (tmp_path / "dry" / "tokenizer_config.json").read_bytes()
    assert b"is_local" not in staged and b"local_files_only" not in staged
    assert staged == (tmp_path / "ckpt" / "tokenizer_config.json").read_bytes()
    for name in ("tokenizer.json", "config.json", "generation_config.json"):
        assert json.loads((tmp_path / "dry" / name).read_text()) == json.loads(
            (tmp_path / "ckpt" / name).read_text()
        ), name

    # A checkpoint whose tokenizer was saved after loading it (a run given --tokenizer or
    # init_from does that) has the loading keys in its file already: published without them.
    loaded = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    shutil.copytree(tmp_path / "ckpt", tmp_path / "resaved")
    loaded.save_pretrained(tmp_path / "resaved")
    leaked = json.loads((tmp_path / "resaved" / "tokenizer_config.json").read_text())
    assert leaked["is_local"] is True  # what transformers writes (the defect's cause)
    push_checkpoint(tmp_path / "resaved", REPO, dry_run_dir=tmp_path / "dry2")
    assert (tmp_path / "dry2" / "tokenizer_config.json").read_bytes() == (
        tmp_path / "ckpt" / "tokenizer_config.json"
    ).read_bytes()


def test_staging_follows_no_symbolic_link(tmp_path: Path) -> None:
    """A link in the analysis folder to the Hub token file, a linked subfolder, a linked file in
    the checkpoint: none is staged, each is listed as skipped, and the token is in no staged file.
    An analysis folder or report.json that is a link is refused before anything is staged."""
    secret = "hf_SecretTokenThatMustNotBeStaged0123"
    (tmp_path / "token").write_text(secret)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "plot.png").write_text(secret)
    make_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "analysis" / "notes.json").symlink_to(tmp_path / "token")
    (tmp_path / "ckpt" / "analysis" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "ckpt" / "eval_copy.json").symlink_to(tmp_path / "token")
    result = push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=tmp_path / "dry")
    staged = [path for path in (tmp_path / "dry").rglob("*") if path.is_file()]
    assert staged and not any(secret in path.read_text(errors="replace") for path in staged)
    assert not any(path.is_symlink() for path in (tmp_path / "dry").rglob("*"))
    assert {"analysis/notes.json", "analysis/more", "eval_copy.json"} <= set(result.skipped)
    assert "analysis/report.json" in result.files  # the real files are still published

    linked = tmp_path / "linked"
    shutil.copytree(tmp_path / "ckpt", linked, symlinks=True)
    shutil.move(linked / "analysis", tmp_path / "analysis_real")
    (linked / "analysis").symlink_to(tmp_path / "analysis_real", target_is_directory=True)
    with pytest.raises(ValueError, match="is a symbolic link"):
        push_checkpoint(linked, REPO, dry_run_dir=tmp_path / "dry2")
    report = tmp_path / "analysis_real" / "report.json"
    shutil.move(report, tmp_path / "report.json")
    report.symlink_to(tmp_path / "report.json")
    with pytest.raises(ValueError, match="report.json' is a symbolic link"):
        push_checkpoint(tmp_path / "ckpt", REPO, dry_run_dir=tmp_path / "dry3", analysis_dir=tmp_path / "analysis_real")
    assert not (tmp_path / "dry2").exists() and not (tmp_path / "dry3").exists()


def test_a_run_given_a_loaded_tokenizer_saves_it_without_loading_keys(tmp_path: Path) -> None:
    """--tokenizer FOLDER: the tokenizer is loaded (transformers then writes is_local and
    local_files_only on save); best_model/ and the checkpoints hold the tokenizer's own file."""
    make_checkpoint(tmp_path / "source", extras=False)
    original = (tmp_path / "source" / "tokenizer_config.json").read_bytes()
    config = TrainingSettings(
        tokenizer=str(tmp_path / "source"), preset="tiny", output_dir=str(tmp_path / "run"), batch_size=4, eval_batch_size=2,
        bptt=10, max_steps=2, epochs=1, progress_bar=False, tracker="none", cpu=True, evaluate_test=False,
    )  # fmt: skip
    train(config)
    written = [tmp_path / "run" / "best_model", *sorted((tmp_path / "run" / "checkpoints").glob("step-*"))]
    assert len(written) >= 2
    for folder in written:
        assert (folder / "tokenizer_config.json").read_bytes() == original, folder


def test_a_corpus_given_by_a_relative_path_is_a_local_corpus_wherever_the_card_is_made(
    tmp_path: Path, monkeypatch
) -> None:
    """`--data data/penn` (the README's form) is recorded by its absolute path, so a card made from
    another folder, where `data/penn` does not exist, does not take it for a Hub dataset id."""
    (tmp_path / "work" / "data" / "penn").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    config = TrainingSettings(data="data/penn", optimizer="awd")
    assert config.data == str((tmp_path / "work" / "data" / "penn").resolve())
    make_checkpoint(tmp_path / "ckpt", training={"data": config.data})
    (tmp_path / "ckpt" / "eval_results.json").write_text(json.dumps({**EVAL_RESULTS, "data": config.data}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    readme, meta = dry_run(tmp_path / "ckpt", tmp_path / "dry")
    assert "datasets" not in meta and "model-index" not in meta
    assert "Trained on a local corpus `penn` (a folder or file on the training machine, not a Hub dataset)" in readme
    _, meta = dry_run(tmp_path / "ckpt", tmp_path / "named", dataset="ptb_text_only")
    assert meta["datasets"] == ["ptb_text_only"]
