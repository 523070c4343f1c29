"""Reliability of reading and writing folders: interrupted folder replacements are
repaired by every reader, output paths are checked before the work, a failed write loses
nothing, and every command maps failures to the documented exit codes (mtlstm_hf.exit_codes).

The training loop's side (resume after a crash, a full disk while checkpointing, a read-only
run folder, an offline Hub dataset) is tested in test_training.py, the token in Hub errors in
test_hub.py.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from mtlstm_hf import MTLSTMForCausalLM, exit_codes
from mtlstm_hf.data import build_word_tokenizer
from mtlstm_hf.evaluation import evaluate_checkpoint
from mtlstm_hf.evaluation.cli import main as eval_main
from mtlstm_hf.training import checkpoint as ckpt


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    rng = random.Random(3)
    words = [f"w{i}" for i in range(20)]
    directory = tmp_path_factory.mktemp("corpus")
    for name, n_lines in (("train", 60), ("valid", 10), ("test", 12)):
        lines = [" ".join(rng.choices(words, k=rng.randint(3, 8))) for _ in range(n_lines)]
        (directory / f"{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def model_dir(corpus_dir, tmp_path_factory) -> Path:
    tokenizer = build_word_tokenizer(corpus_dir / "train.txt")
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    folder = tmp_path_factory.mktemp("model") / "best_model"
    MTLSTMForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _one_error_line(stderr: str, prog: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    return lines[0]


# --- interrupted replacements ----------------------------------------------------------------


def _folder(path: Path, content: str) -> Path:
    path.mkdir(parents=True)
    (path / "a.txt").write_text(content)
    return path


def test_repair_moves_a_folder_left_aside_back_and_cleans_up_only_when_asked(tmp_path):
    target = tmp_path / "best_model"
    aside, tmp = tmp_path / ".best_model.old", tmp_path / ".best_model.tmp"

    assert ckpt.repair_interrupted_replacement(target) is False  # nothing there: nothing done
    assert list(tmp_path.iterdir()) == []

    _folder(aside, "old")  # a crash between the two renames
    assert ckpt.repair_interrupted_replacement(target) is True
    assert (target / "a.txt").read_text() == "old" and not aside.exists()

    # A crash after the second rename: the new folder is complete, the old one still aside.
    _folder(aside, "stale")
    _folder(tmp, "unfinished build")
    assert ckpt.repair_interrupted_replacement(target) is False  # a reader deletes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best_model.old", ".best_model.tmp", "best_model"]
    assert ckpt.repair_interrupted_replacement(target, clean_up=True) is False  # the writer does
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]
    assert (target / "a.txt").read_text() == "old"


def test_replace_directory_survives_a_reader_repairing_between_its_renames(tmp_path, monkeypatch):
    """A reader (mtlstm-eval) that finds best_model/ missing during the instant between the two
    renames moves the old folder back; the replacement must still complete."""
    target = _folder(tmp_path / "best_model", "old")
    real_replace = os.replace
    repaired = []

    def replace(source, destination):
        real_replace(source, destination)
        if Path(destination).name == ".best_model.old" and not repaired:
            repaired.append(ckpt.repair_interrupted_replacement(target))  # the reader, right now

    monkeypatch.setattr(ckpt.os, "replace", replace)
    ckpt.replace_directory(lambda folder: (folder / "a.txt").write_text("new"), target)
    assert repaired == [True]
    assert (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]


def test_mtlstm_eval_reads_a_model_folder_a_crash_left_aside(model_dir, corpus_dir, tmp_path, capsys):
    folder = tmp_path / "run" / "best_model"
    shutil.copytree(model_dir, folder)
    expected = evaluate_checkpoint(folder, corpus_dir, window=5)["perplexity"]
    os.replace(folder, tmp_path / "run" / ".best_model.old")

    output = tmp_path / "results.json"
    assert eval_main([str(folder), "--data", str(corpus_dir), "--window", "5", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["perplexity"] == pytest.approx(expected, rel=1e-12)
    assert sorted(os.listdir(tmp_path / "run")) == ["best_model"]
    capsys.readouterr()


# --- mtlstm-eval output and exit codes ---------------------------------------------------------


def test_mtlstm_eval_checks_its_output_path_before_evaluating(model_dir, corpus_dir, tmp_path, capsys, monkeypatch):
    from mtlstm_hf.evaluation import checkpoint as evaluation

    def not_reached(*args, **kwargs):
        raise AssertionError("the evaluation ran although its output cannot be written")

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", not_reached)
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = {
        tmp_path / "a_folder": "--output: this is a folder; give a file name",
        tmp_path / "a_file" / "results.json": "cannot be created there",
    }
    for output, expected in cases.items():
        assert eval_main([str(model_dir), "--data", str(corpus_dir), "--output", str(output)]) == exit_codes.IO_FAILURE
        captured = capsys.readouterr()
        message = _one_error_line(captured.err, "mtlstm-eval")
        assert message.startswith(f"mtlstm-eval: error: {output if output.is_dir() else output.parent}: ")
        assert expected in message and captured.out == ""


def test_mtlstm_eval_a_full_disk_leaves_the_earlier_results_file(model_dir, corpus_dir, tmp_path, capsys, monkeypatch):
    output = tmp_path / "results.json"
    output.write_text('{"earlier": true}\n')
    real_fsync = os.fsync

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    status = eval_main([str(model_dir), "--data", str(corpus_dir), "--window", "5", "--output", str(output)])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert status == exit_codes.IO_FAILURE
    captured = capsys.readouterr()
    message = _one_error_line(captured.err, "mtlstm-eval")
    assert "No space left on device" in message and f"{output} was not written" in message
    assert "overall" in captured.out  # the table was printed before the write
    assert output.read_text() == '{"earlier": true}\n'
    assert sorted(os.listdir(tmp_path)) == ["results.json"]  # no temporary file left


def test_mtlstm_eval_offline_hub_dataset_and_bad_checkpoint_exit_codes(model_dir, tmp_path, capsys, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty_cache")
    assert eval_main([str(model_dir), "--data", "mtlstm-tests/no-such-dataset"]) == exit_codes.IO_FAILURE
    message = _one_error_line(capsys.readouterr().err, "mtlstm-eval")
    assert "'mtlstm-tests/no-such-dataset'" in message and "needs network access" in message

    assert eval_main([str(tmp_path / "missing"), "--data", str(tmp_path)]) == exit_codes.BAD_INPUT
    assert "does not exist" in _one_error_line(capsys.readouterr().err, "mtlstm-eval")


# --- the shared helpers and the documentation ----------------------------------------------------


def test_output_checks_name_the_path_and_the_cause(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as caught:
        exit_codes.check_output_dir(tmp_path / "file", "--output-dir")
    assert caught.value.errno == errno.ENOTDIR and caught.value.filename == str(tmp_path / "file")
    assert exit_codes.describe_io_failure(caught.value).startswith(f"{tmp_path / 'file'}: --output-dir: this is a file")
    with pytest.raises(NotADirectoryError):
        exit_codes.check_output_dir(tmp_path / "file" / "deeper" / "run", "--output-dir")
    with pytest.raises(IsADirectoryError):
        exit_codes.check_output_file(tmp_path, "--output")
    assert exit_codes.check_output_dir(tmp_path / "new" / "run", "--output-dir") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checked, not created
    assert exit_codes.check_output_file(tmp_path / "file", "--output") == tmp_path / "file"

    assert exit_codes.is_io_failure(PermissionError(errno.EACCES, "Permission denied", "x"))
    assert exit_codes.is_io_failure(ConnectionError("offline"))
    assert not exit_codes.is_io_failure(FileNotFoundError("corpus path 'x' does not exist"))
    assert not exit_codes.is_io_failure(ValueError("bad"))
    message = exit_codes.describe_io_failure(OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/run"))
    assert (
        message
        == f"/mnt/ro/run: {os.strerror(errno.EROFS)}; that file system is mounted read-only: choose a writable location"
    )


def test_every_command_documents_the_exit_codes():
    import importlib

    for module_name in ("mtlstm_hf.training.cli", "mtlstm_hf.evaluation.cli", "mtlstm_hf.hub.cli"):
        module = importlib.import_module(module_name)
        help_text = " ".join(module.build_parser().format_help().split())
        docstring = " ".join(module.__doc__.split())
        for text in (help_text, docstring):
            assert "2 bad input" in text and "4 I/O failure" in text and "130 interrupted" in text, module_name
        assert ("1 non-finite loss" in help_text) == (module_name == "mtlstm_hf.training.cli")


def test_a_symlinked_output_folder_is_refused_not_replaced(tmp_path):
    """A folder replaced in one piece (mtlstm-convert's OUTPUT_DIR, best_model/) that is a symbolic
    link: refused before anything is built; the link and its target stay as they were (before, the
    link was replaced and left as .NAME.old)."""
    from mtlstm_hf.training.checkpoint import replace_directory

    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "outlink"
    link.symlink_to(target)
    built = []
    with pytest.raises(ValueError, match="is a symbolic link.*give the folder itself"):
        replace_directory(lambda folder: built.append(folder), link)
    assert built == [] and link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outlink", "target"] and not any(target.iterdir())
