"""The trainer's state is one record (issue 25): :class:`mtlstm_hf.training.state.TrainerState`
lists everything a checkpoint saves and restores, and the checkpoint functions read and write
that record, not the trainer's attributes.

* the record's fields (with the files each names) are exactly what a checkpoint of a tiny run holds;
* a resumed run's record equals the saved one, field by field;
* ``training/checkpoint.py`` touches no trainer object, and of the record only the fields it names.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import asdict, fields
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import reset_accelerate_state

import mtlstm_hf.training.checkpoint as ckpt
from mtlstm_hf.training import LanguageModelTrainer, TrainingSettings
from mtlstm_hf.training.config import BOOKKEEPING_FIELDS
from mtlstm_hf.training.state import TrainerState, TrainingProgress

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")

NOT_SAVED = {"output_dir", "last_checkpoint"}  # where the run writes, which checkpoint is the newest
CHECKPOINT_SOURCE = Path(ckpt.__file__)
# Patterns a field may leave unwritten: the tokenizer's names cover several kinds of tokenizer,
# the word-level tokenizer writes only tokenizer.json and tokenizer_config.json.
OPTIONAL_PATTERNS = {"special_tokens_map.json", "vocab*", "merges.txt"}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("corpus")
    words = [f"w{i}" for i in range(30)]
    rng = random.Random(0)
    for split, lines in (("train", 120), ("valid", 20), ("test", 20)):
        text = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) + "\n" for _ in range(lines))
        (directory / f"{split}.txt").write_text(text, encoding="utf-8")
    return directory


def tiny_run(corpus_dir: Path, output_dir: Path, **overrides) -> TrainingSettings:
    settings = dict(
        data=str(corpus_dir), preset="tiny", output_dir=str(output_dir), batch_size=4, eval_batch_size=2, bptt=8,
        epochs=1, max_steps=3, progress_bar=False, tracker="jsonl", evaluate_test=False, cpu=True,
    )  # fmt: skip
    settings.update(overrides)
    return TrainingSettings(**settings)


def saved_in(name: str) -> tuple[str, ...]:
    """The checkpoint files (patterns, ``<rank>`` as process 0) the record says hold field ``name``."""
    field = next(field for field in fields(TrainerState) if field.name == name)
    return tuple(pattern.replace("<rank>", "0") for pattern in field.metadata["files"])


@pytest.mark.parametrize("optimizer", ["awd", "adamw"])
def test_the_record_lists_exactly_what_a_checkpoint_holds(corpus_dir, tmp_path, optimizer):
    trainer = LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run", optimizer=optimizer))
    trainer.run()
    folder = trainer.state.last_checkpoint
    assert folder is not None and folder.parent.name == ckpt.CHECKPOINTS_DIRNAME
    present = {
        field.name: saved_in(field.name)
        for field in fields(TrainerState)
        if getattr(trainer.state, field.name) is not None
    }
    assert {field.name for field in fields(TrainerState) if not field.metadata["files"]} == NOT_SAVED
    files = {path.name for path in folder.iterdir()}
    # Every file is held by a field the run has ...
    unclaimed = [
        name for name in files
        if not any(fnmatch(name, pattern.split("#")[0]) for patterns in present.values() for pattern in patterns)
    ]  # fmt: skip
    assert unclaimed == []
    # ... and every field the run has is in a file (JSON keys of training_state.json included).
    document = json.loads((folder / ckpt.STATE_FILENAME).read_text(encoding="utf-8"))
    for name, patterns in present.items():
        for pattern in patterns:
            if "#" in pattern:
                file, key = pattern.split("#")
                assert file == ckpt.STATE_FILENAME and key in document, (name, pattern)
            else:
                assert any(fnmatch(file, pattern) for file in files) or pattern in OPTIONAL_PATTERNS, (name, pattern)
    # training_state.json: the format marker and the record's keys, the progress exactly TrainingProgress.
    keys = {pattern.split("#")[1] for patterns in present.values() for pattern in patterns if "#" in pattern}
    assert set(document) == keys | {"format"}
    assert set(document["progress"]) == {field.name for field in fields(TrainingProgress)}
    # The files of the registered objects are numbered in the record's order.
    assert len(trainer.state.checkpointed_objects) == len([name for name in files if name.startswith("custom_")])
    assert ("averaged_model" in present, "scheduler" in present) == (optimizer == "awd", optimizer == "adamw")
    assert "scaler" not in present  # fp16 only (CUDA): scaler.pt is tests/test_cuda.py's


def same(first, second) -> bool:
    """Equal, tensors and NumPy arrays by value, in nested dicts, lists and tuples."""
    if isinstance(first, torch.Tensor) or isinstance(second, torch.Tensor):
        return (
            isinstance(first, torch.Tensor)
            and isinstance(second, torch.Tensor)
            and first.shape == second.shape
            and torch.equal(first.cpu(), second.cpu())
        )
    if isinstance(first, np.ndarray) or isinstance(second, np.ndarray):
        return np.array_equal(first, second)
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(same(first[key], second[key]) for key in first)
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)):
        return len(first) == len(second) and all(same(a, b) for a, b in zip(first, second))
    return first == second


def carried(state) -> object:
    return None if state is None else (state.hidden, state.cell, state.seen_tokens)


def snapshot(state: TrainerState) -> dict[str, object]:
    """Each field of ``state`` as comparable values (copies: the objects are restored in place)."""
    import copy

    def state_dict(item):
        return None if item is None else copy.deepcopy(item.state_dict())

    return {
        "config": {k: v for k, v in state.config.to_dict().items() if k not in BOOKKEEPING_FIELDS},
        "accelerator": (
            state.accelerator.num_processes,
            torch.get_rng_state(),
            random.getstate(),
            np.random.get_state()[1],
        ),  # fmt: skip
        "unwrapped_model": state_dict(state.unwrapped_model),
        "optimizer": state_dict(state.optimizer),
        "scaler": state_dict(state.scaler),
        "iterator": state_dict(state.iterator),
        "averaged_model": state_dict(state.averaged_model),
        "scheduler": state_dict(state.scheduler),
        "tokenizer": state.tokenizer.get_vocab(),
        "carried_state": copy.deepcopy(carried(state.carried_state)),
        "progress": asdict(state.progress),
        "output_dir": state.output_dir,
        "last_checkpoint": state.last_checkpoint,
    }


@pytest.mark.parametrize("optimizer", ["awd", "adamw"])
def test_a_resumed_run_has_the_saved_state_field_by_field(corpus_dir, tmp_path, optimizer):
    run_dir = tmp_path / "run"

    def average_from_step_one(trainer: LanguageModelTrainer) -> None:
        if trainer.progress.global_step == 1:
            trainer.start_averaging()  # so that the running mean is saved with something in it

    callbacks = [average_from_step_one] if optimizer == "awd" else []
    first = LanguageModelTrainer(tiny_run(corpus_dir, run_dir, optimizer=optimizer), callbacks=callbacks)
    first.run()  # 3 steps into the epoch: the carried state is saved; the checkpoint is the run's last act
    saved = snapshot(first.state)
    assert saved["carried_state"] is not None and first.state.last_checkpoint is not None
    assert optimizer != "awd" or int(first.state.averaged_model.n_averaged) > 0
    del first
    reset_accelerate_state()
    resumed = LanguageModelTrainer(tiny_run(corpus_dir, run_dir, optimizer=optimizer, resume_from=str(run_dir)))
    restored = snapshot(resumed.state)
    assert set(saved) == {field.name for field in fields(TrainerState)}  # every field is compared
    different = [name for name in saved if not same(saved[name], restored[name])]
    assert different == []


def test_the_trainer_attributes_are_the_record_fields(corpus_dir, tmp_path):
    trainer = LanguageModelTrainer(tiny_run(corpus_dir, tmp_path / "run"))
    for field in fields(TrainerState):
        assert getattr(trainer, field.name) is getattr(trainer.state, field.name), field.name
    trainer.progress = TrainingProgress(global_step=7)
    trainer.carried_state = None
    assert trainer.state.progress.global_step == 7 and trainer.state.carried_state is None
    assert trainer.checkpointed_objects == trainer.state.checkpointed_objects
    assert trainer.state.scaler is trainer.accelerator.scaler


# What training/checkpoint.py reads of a run's state (before issue 25: nine attributes of an
# untyped trainer, 34 accesses): the record's fields and its checkpointed_objects, nothing else.
CHECKPOINT_READS = {
    "accelerator", "carried_state", "checkpointed_objects", "config", "last_checkpoint", "output_dir", "progress",
    "scaler", "tokenizer", "unwrapped_model",
}  # fmt: skip


def test_the_checkpoint_functions_touch_the_record_only():
    tree = ast.parse(CHECKPOINT_SOURCE.read_text(encoding="utf-8"))
    record_names = {field.name for field in fields(TrainerState)} | {"checkpointed_objects"}
    takers, reads = [], set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        parameters = {argument.arg: argument.annotation for argument in function.args.args}
        # No trainer object: no parameter named trainer, none typed Any for the run's state.
        assert "trainer" not in parameters, function.name
        record = [name for name, note in parameters.items() if note is not None and ast.unparse(note) == "TrainerState"]
        if not record:
            continue
        takers.append(function.name)
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in record:
                reads.add(node.attr)
    assert not any(
        isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trainer"
        for node in ast.walk(tree)
    )
    assert sorted(takers) == [
        "_write_checkpoint", "restore_from_checkpoint", "save_best_model", "save_checkpoint", "start_run_folder",
    ]  # fmt: skip
    assert reads <= record_names
    assert reads == CHECKPOINT_READS
