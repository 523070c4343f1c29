"""Our commands load a checkpoint strictly and
refuse a tokenizer whose word -> id table is not the model's. Each damaged folder is made
from a good one, and the good one is checked to load, so a loader that refuses everything
fails these tests too."""

import json
import shutil

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.data import build_word_tokenizer, vocabulary_fingerprint
from mtlstm_hf.evaluation import evaluate_checkpoint, load_checkpoint
from mtlstm_hf.evaluation.cli import main as eval_main

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    words = [f"w{i}" for i in range(12)]
    for split, lines in (("train", 40), ("valid", 8), ("test", 8)):
        text = "".join(" ".join(words[(i * 7 + j) % 12] for j in range(5)) + "\n" for i in range(lines))
        (directory / f"{split}.txt").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def good(corpus_dir, tmp_path_factory):
    tokenizer = build_word_tokenizer(corpus_dir / "train.txt")
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        vocab_fingerprint=vocabulary_fingerprint(tokenizer),
    )
    folder = tmp_path_factory.mktemp("good")
    MTLSTMForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def damaged(good, tmp_path, change):
    folder = tmp_path / "damaged"
    shutil.copytree(good, folder)
    change(folder)
    return folder


def edit_weights(edit):
    def change(folder):
        tensors = load_file(str(folder / WEIGHTS))
        edit(tensors)
        save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})

    return change


def test_the_good_checkpoint_loads(good, corpus_dir):
    model, tokenizer = load_checkpoint(good)
    assert model.config.vocab_fingerprint == vocabulary_fingerprint(tokenizer)
    assert evaluate_checkpoint(good, corpus_dir)["perplexity"] > 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("model.layers.0.weight_hh"), r"missing: model\.layers\.0\.weight_hh"),
        (lambda t: t.update(extra=torch.zeros(2)), r"unexpected: extra"),
        (lambda t: t.update({"model.layers.0.weight_hh": torch.zeros(3, 3)}), "another shape than the configuration"),
        (
            lambda t: t["model.layers.1.weight_ih"].__setitem__((0, 0), float("nan")),
            r"non-finite .* model\.layers\.1\.weight_ih",
        ),
        (lambda t: t["lm_head.bias"].__setitem__(0, float("inf")), r"non-finite .* lm_head\.bias"),
    ],
)
def test_partial_or_broken_weights_are_refused(good, tmp_path, edit, message):
    folder = damaged(good, tmp_path, edit_weights(edit))
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(folder)
    assert str(folder / WEIGHTS) in str(error.value)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), "cannot be loaded"),
        (lambda path: path.write_bytes(b""), "cannot be loaded"),
    ],
)
def test_truncated_or_empty_weights_name_the_file(good, tmp_path, write, message):
    folder = damaged(good, tmp_path, lambda f: write(f / WEIGHTS))
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(folder)
    assert str(folder / WEIGHTS) in str(error.value)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_only_checkpoint_is_refused_without_unpickling(good, tmp_path, capsys):
    def to_pickle(folder):
        (folder / WEIGHTS).unlink()
        torch.save({"payload": _Payload()}, folder / "pytorch_model.bin")

    folder = damaged(good, tmp_path, to_pickle)
    with pytest.raises(ValueError, match="pickle that cannot be loaded safely"):
        load_checkpoint(folder)
    assert "this must never run" not in capsys.readouterr().out


def test_eval_command_reports_damaged_weights_in_one_line(good, tmp_path, corpus_dir, capsys):
    folder = damaged(good, tmp_path, edit_weights(lambda t: t.pop("model.layers.0.weight_hh")))
    assert eval_main([str(folder), "--data", str(corpus_dir)]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "model.layers.0.weight_hh" in error[0] and str(folder / WEIGHTS) in error[0]


def _rotate_ids(folder):
    path = folder / "tokenizer.json"
    saved = json.loads(path.read_text())
    vocab = saved["model"]["vocab"]
    words = [w for w, _ in sorted(vocab.items(), key=lambda item: item[1]) if not w.startswith("<")]
    ids = sorted(vocab[w] for w in words)
    saved["model"]["vocab"].update(dict(zip(words, ids[1:] + ids[:1])))
    path.write_text(json.dumps(saved))


def test_a_tokenizer_with_other_word_ids_is_refused(good, tmp_path, corpus_dir):
    folder = damaged(good, tmp_path, _rotate_ids)
    with pytest.raises(ValueError, match="not the one the model was trained with"):
        load_checkpoint(folder)
    with pytest.raises(ValueError, match="not the one the model was trained with"):
        evaluate_checkpoint(folder, corpus_dir)


def test_a_model_saved_before_fingerprints_still_loads(good, tmp_path):
    def drop_fingerprint(folder):
        path = folder / "config.json"
        saved = json.loads(path.read_text())
        del saved["vocab_fingerprint"]
        path.write_text(json.dumps(saved))

    folder = damaged(good, tmp_path, drop_fingerprint)
    model, _ = load_checkpoint(folder)
    assert model.config.vocab_fingerprint is None


def test_cuda_device_without_cuda_is_named(good):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        load_checkpoint(good, device="cuda")
    with pytest.raises(ValueError, match="is not a torch device"):
        load_checkpoint(good, device="gpu0")


def test_eval_command_with_cuda_on_a_machine_without_it_exits_3(good, corpus_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert eval_main([str(good), "--data", str(corpus_dir), "--device", "cuda"]) == 3
    assert "CUDA is not available on this machine" in capsys.readouterr().err


# --- training: --init-from, --resume, an empty split -------------------------------------------


def _run(corpus_dir, output_dir, **overrides):
    from mtlstm_hf.training import TrainingSettings

    fields = dict(
        data=str(corpus_dir),
        preset="tiny",
        output_dir=str(output_dir),
        batch_size=2,
        eval_batch_size=2,
        bptt=5,
        epochs=1,
        max_steps=2,
        progress_bar=False,
        tracker="none",
        evaluate_test=False,
    )
    fields.update(overrides)
    return TrainingSettings(**fields)


@pytest.fixture
def _fresh_accelerate():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_init_from_damaged_weights_or_another_vocabulary_is_refused(good, tmp_path, corpus_dir, _fresh_accelerate):
    from mtlstm_hf.training import train

    folder = damaged(good, tmp_path, edit_weights(lambda t: t.pop("model.layers.0.weight_hh")))
    with pytest.raises(ValueError, match=r"missing: model\.layers\.0\.weight_hh"):
        train(_run(corpus_dir, tmp_path / "run", init_from=str(folder)))
    assert not (tmp_path / "run").exists()
    rotated = tmp_path / "rotated"
    shutil.copytree(good, rotated)
    _rotate_ids(rotated)
    with pytest.raises(ValueError, match="init_from: the tokenizer's vocabulary is not the one"):
        train(_run(corpus_dir, tmp_path / "run2", init_from=str(rotated)))
    result = train(_run(corpus_dir, tmp_path / "run3", init_from=str(good)))  # the good folder trains
    assert result.progress.global_step == 2


def test_resume_from_a_damaged_checkpoint_is_refused(tmp_path, corpus_dir, _fresh_accelerate):
    from accelerate.state import AcceleratorState

    from mtlstm_hf.training import resolve_resume_checkpoint, train

    train(_run(corpus_dir, tmp_path / "run"))
    AcceleratorState._reset_state(reset_partial_state=True)
    weights = resolve_resume_checkpoint(tmp_path / "run") / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"resume_from: .*model\.safetensors' is not the file that was written"):
        train(_run(corpus_dir, tmp_path / "run", max_steps=4, resume_from=str(tmp_path / "run")))
    AcceleratorState._reset_state(reset_partial_state=True)
    (weights.parent / "weights_sha256.json").unlink()  # a checkpoint without the record: the file itself is read
    with pytest.raises(ValueError, match=r"resume_from: .*model\.safetensors.* cannot be read"):
        train(_run(corpus_dir, tmp_path / "run", max_steps=4, resume_from=str(tmp_path / "run")))


def test_a_training_split_without_words_is_refused(tmp_path, corpus_dir, _fresh_accelerate):
    from mtlstm_hf.training import train

    empty = tmp_path / "empty"
    shutil.copytree(corpus_dir, empty)
    (empty / "train.txt").write_text("\n" * 50, encoding="utf-8")
    with pytest.raises(ValueError, match="has no words"):
        train(_run(empty, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_load_checkpoint_repairs_a_folder_a_crash_left_aside(good, tmp_path):
    """Every reader goes through load_checkpoint: a folder moved aside by a crash between the two
    renames of a replacement is moved back before reading (the library call, not only the CLIs)."""
    folder = tmp_path / "best_model"
    shutil.copytree(good, tmp_path / ".best_model.old")
    model, _ = load_checkpoint(folder)
    assert folder.is_dir() and not (tmp_path / ".best_model.old").exists()
    reference, _ = load_checkpoint(good)
    assert torch.equal(model.lm_head.bias, reference.lm_head.bias)


def test_a_config_whose_timescales_disagree_with_the_saved_biases_says_which_wins(good, tmp_path, caplog):
    """config.json edited to T=30|40 while the saved frozen biases hold T=3|4: from_pretrained warns
    that the saved biases are used (oracle: they are: the model's timescales are 3|4); the strict
    loader of the commands refuses the folder naming both files."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    def edit_config(folder):
        config = json.loads((folder / "config.json").read_text())
        config["timescale_schedules"][0] = {"type": "fixed", "values": [30.0, 40.0]}
        (folder / "config.json").write_text(json.dumps(config))

    folder = damaged(good, tmp_path, edit_config)
    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            model = AutoModelForCausalLM.from_pretrained(folder)
    finally:
        hf_logging.disable_propagation()
    assert "Layer 1: config.timescale_schedules[0]" in caplog.text and "The saved biases are used" in caplog.text
    assert sorted(set(model.assigned_timescales()[0].round(decimals=6).tolist())) == [3.0, 4.0]
    with pytest.raises(ValueError, match=r"config\.json.*model\.safetensors.*disagree: Layer 1"):
        load_checkpoint(folder)
    caplog.clear()
    with caplog.at_level("WARNING"):
        AutoModelForCausalLM.from_pretrained(good)
    assert "Layer 1" not in caplog.text  # the good folder agrees with itself
