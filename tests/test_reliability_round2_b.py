"""Token classification and Dyck-2 inputs, mtlstm-reproduce's
settings and device, and the files the commands read.

Every kind of fault gets one test against a real oracle: the causal LM's warning for a batch
without targets; the loss written out by hand for labels that are fine; numpy's own limit for
seeds; a spy that fails the test if anything trains; the file system (nothing written); and
transformers' own prompt (``input``), which must never be reached. Each test fails on the code
before the fix, except the ``cuda`` cases of the device test, which guard the probe that was
already there (the worked example); ``mps``, ``xpu`` and ``hpu`` trained before failing."""

from __future__ import annotations

import builtins
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import corpus_and_saved_model, tiny_model

from mtlstm_hf import MTLSTMConfig, MTLSTMForTokenClassification

pytestmark = pytest.mark.usefixtures("one_thread")

NO_TARGET = "No position has a target"


# --- item 8: token classification warns, and checks label values, as the causal LM does ----------


def token_classifier(**overrides) -> MTLSTMForTokenClassification:
    torch.manual_seed(0)
    fields = dict(
        vocab_size=7, embedding_size=4, hidden_sizes=[6], num_labels=2, pad_token_id=0, tie_word_embeddings=False
    )
    fields.update(overrides)
    return MTLSTMForTokenClassification(MTLSTMConfig(**fields)).eval()


def warnings_in(caplog) -> int:
    return sum(NO_TARGET in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("problem", ["multi_label_classification", "single_label_classification"])
def test_token_classification_without_targets_warns_as_the_causal_lm(caplog, problem):
    """Oracle: the causal LM's warning for labels that are all -100 (same text, one home)."""
    ids = torch.randint(1, 7, (2, 4))
    with caplog.at_level(logging.WARNING):
        assert torch.isnan(tiny_model()(torch.randint(0, 37, (2, 4)), labels=torch.full((2, 4), -100)).loss)
    assert warnings_in(caplog) == 1
    model = token_classifier(problem_type=problem)
    if problem == "multi_label_classification":
        labels = torch.randint(0, 2, (2, 4, 2)).float()
        ignored = torch.full_like(labels, -100.0)
    else:
        labels = torch.randint(0, 2, (2, 4))
        ignored = torch.full_like(labels, -100)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert torch.isnan(model(ids, labels=ignored).loss)  # every label -100
        assert torch.isnan(model(ids, attention_mask=torch.zeros_like(ids), labels=labels).loss)  # a mask of zeros
    assert warnings_in(caplog) == 2
    caplog.clear()
    mask = torch.zeros_like(ids)
    mask[0, 0] = 1  # one kept position: a finite loss, no warning
    with caplog.at_level(logging.WARNING):
        assert torch.isfinite(model(ids, attention_mask=mask, labels=labels).loss)
    assert warnings_in(caplog) == 0


@pytest.mark.parametrize("bad", [2.0, -1.0, 1.5, float("nan")])
def test_multi_label_targets_outside_zero_one_are_refused(bad):
    model = token_classifier()
    ids = torch.randint(1, 7, (1, 3))
    labels = torch.tensor([[[0.0, 1.0], [0.25, -100.0], [1.0, 0.0]]])
    logits = model(ids).logits
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[0, [0, 0, 1, 2, 2], [0, 1, 0, 0, 1]], torch.tensor([0.0, 1.0, 0.25, 1.0, 0.0])
    )  # the oracle for labels that are fine: BCE written out over the kept entries
    assert torch.allclose(model(ids, labels=labels).loss, expected)
    labels[0, 2, 1] = bad
    with pytest.raises(
        ValueError, match=r"labels for multi_label_classification must lie in \[0, 1\].*got values \[(nan|-?\d)"
    ):
        model(ids, labels=labels)


@pytest.mark.parametrize("bad", [2, 7, -1, -5])
def test_single_label_class_ids_outside_the_labels_are_refused(bad):
    model = token_classifier()
    ids = torch.randint(1, 7, (1, 3))
    labels = torch.tensor([[0, 1, -100]])
    expected = torch.nn.functional.cross_entropy(model(ids).logits[0, :2], torch.tensor([0, 1]))
    assert torch.allclose(model(ids, labels=labels).loss, expected)
    labels[0, 1] = bad
    with pytest.raises(
        ValueError, match=rf"class ids in \[0, 2\) \(config.num_labels\) or -100 .*got values \[{bad}\]"
    ):
        model(ids, labels=labels)


def test_a_single_string_is_not_taken_for_a_list_of_dyck_words():
    from mtlstm_hf.data.dyck import collate_dyck, stack_top_targets
    from mtlstm_hf.reproduce.dyck import ARMS, DyckSettings, EncodedWords, run_dyck_experiment, sequence_correct

    batch = collate_dyck(["(())"])  # the list works: the oracle
    assert torch.equal(batch["labels"][0], torch.from_numpy(stack_top_targets("(())")))
    for call in (lambda: collate_dyck("(())"), lambda: EncodedWords("(())"),
                 lambda: sequence_correct([np.zeros((4, 2), bool)], "(())")):  # fmt: skip
        with pytest.raises(
            ValueError, match=r"words must be a list of words, got the single string '\(\(\)\)'; write \['\(\(\)\)'\]"
        ):
            call()
    with pytest.raises(ValueError, match="arms must be a list of names .* got the single string 'baseline'"):
        run_dyck_experiment(DyckSettings(), seeds=[1], arms=ARMS[0])


# --- item 11: mtlstm-reproduce refuses what it would ignore, and probes the device first ---------


def reproduce(*arguments: str) -> int:
    from mtlstm_hf.reproduce.cli import main

    return main([*arguments, "--threads", "1", "--no-progress-bar"])


@pytest.fixture
def nothing_trains(monkeypatch):
    """A spy: any training or run of an experiment fails the test."""
    from mtlstm_hf.reproduce import dyck, experiment, lm

    def trained(*args, **kwargs):
        raise AssertionError("something was trained")

    for module, name in ((experiment, "run"), (dyck, "run_dyck_seed"), (lm, "train_run")):
        monkeypatch.setattr(module, name, trained)


@pytest.mark.parametrize("recipe", ["reference", "library"])
def test_dyck2_refuses_a_recipe_instead_of_ignoring_it(tmp_path, capsys, nothing_trains, recipe):
    out = tmp_path / "out"
    assert reproduce("dyck2", "--scale", "smoke", "--recipe", recipe, "--output-dir", str(out)) == 2
    assert f"--recipe {recipe} applies to the language-model experiments" in capsys.readouterr().err
    assert not out.exists()


def test_language_models_still_default_to_the_library_recipe(tmp_path):
    from mtlstm_hf.reproduce.experiment import prepare
    from mtlstm_hf.reproduce.settings import ReproduceSettings

    prepared = prepare("lm-ptb", ReproduceSettings(scale="smoke", output_dir=str(tmp_path / "out")))
    assert prepared.settings.recipe == prepared.configuration["recipe"] == "library"
    assert prepare("dyck2", ReproduceSettings(scale="smoke", output_dir=str(tmp_path / "d"))).settings.recipe is None


def _absent_devices() -> list[str]:
    candidates = ["mps", "xpu", "xpu:1", "hpu"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:1"])
    return [
        name
        for name in candidates
        if not getattr(getattr(torch, name.split(":")[0], None), "is_available", lambda: False)()
    ]


@pytest.mark.parametrize("device", _absent_devices())
def test_a_device_this_machine_lacks_exits_3_before_anything_trains(tmp_path, capsys, nothing_trains, device):
    out = tmp_path / "out"
    assert reproduce("dyck2", "--scale", "smoke", "--device", device, "--output-dir", str(out)) == 3
    err = capsys.readouterr().err
    assert f"device {device!r}: " in err and "is not available on this machine" in err
    assert not out.exists()


# --- item 13: seeds, corpora, reproduce's damaged files --------------------------------------------


def test_the_seed_limit_is_numpys():
    from mtlstm_hf.command_line import SEED_LIMIT, check_seed

    np.random.seed(SEED_LIMIT - 1)  # the oracle: numpy's global seed, which transformers.set_seed sets
    with pytest.raises(ValueError):
        np.random.seed(SEED_LIMIT)
    assert check_seed(SEED_LIMIT - 1) == SEED_LIMIT - 1
    for bad in (SEED_LIMIT, 2**40, -1, True, 1.0):
        with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\*\*32 - 1"):
            check_seed(bad)


@pytest.mark.parametrize("experiment", ["dyck2", "lm-ptb"])
def test_a_seed_numpy_cannot_take_is_refused_naming_seeds_before_anything_is_written(
    tmp_path, capsys, nothing_trains, experiment
):
    out = tmp_path / "out"
    assert reproduce(experiment, "--scale", "smoke", "--seeds", "1", str(2**40), "--output-dir", str(out)) == 2
    assert (
        f"each of --seeds must be an integer from 0 to 2**32 - 1 = 4294967295, got {2**40}" in capsys.readouterr().err
    )
    assert not out.exists()


def test_mtlstm_train_refuses_such_a_seed_naming_it(tmp_path, capsys):
    from mtlstm_hf.training.cli import main

    out = tmp_path / "run"
    assert main(["--seed", str(2**40), "--output-dir", str(out), "--cpu", "--threads", "1"]) == 2
    assert f"seed must be an integer from 0 to 2**32 - 1 = 4294967295, got {2**40}" in capsys.readouterr().err
    assert not out.exists()


def binary_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.txt").write_bytes(b"a b c\n" * 3 + bytes(range(128, 256)) + b"\n")
    for split in ("valid", "test"):
        (folder / f"{split}.txt").write_text("a b c\n")
    return folder


def test_a_corpus_that_is_not_utf8_is_named_with_its_line(tmp_path, capsys):
    from mtlstm_hf.training.cli import main

    corpus, out = binary_corpus(tmp_path / "corpus"), tmp_path / "run"
    with pytest.raises(UnicodeDecodeError):  # the oracle: Python's codec refuses the file
        (corpus / "train.txt").read_text(encoding="utf-8")
    assert main(["--data", str(corpus), "--output-dir", str(out), "--cpu", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert f"corpus file {str(corpus / 'train.txt')!r} is not UTF-8 text: byte 0x80 at offset 18 (line 4)" in err
    assert not out.exists()


def test_reproduce_checks_the_corpus_encoding_before_anything_is_written(tmp_path, capsys, nothing_trains):
    corpus, out = binary_corpus(tmp_path / "corpus"), tmp_path / "out"
    assert reproduce("lm-ptb", "--scale", "cpu", "--data", str(corpus), "--output-dir", str(out)) == 2
    assert f"--data: corpus file {str(corpus / 'train.txt')!r} is not UTF-8 text" in capsys.readouterr().err
    assert not out.exists()


def test_each_damaged_file_of_a_reproduction_says_what_lets_the_command_run_again(tmp_path, capsys):
    """Oracle: doing what the message says, then running the same command again, works."""
    from mtlstm_hf.reproduce.output import CONFIG_FILENAME, REPORT_FILENAME, RUN_RECORD_FILENAME, run_dir

    out = tmp_path / "out"
    command = ("dyck2", "--scale", "smoke", "--seeds", "1", "--output-dir", str(out))
    assert reproduce(*command) == 0
    capsys.readouterr()

    (out / REPORT_FILENAME).write_text("{garbled")
    assert reproduce(*command) == 2
    assert "move it away" in capsys.readouterr().err
    (out / REPORT_FILENAME).rename(tmp_path / "report.json.old")
    assert reproduce(*command) == 0

    record = run_dir(out, "baseline", 1) / RUN_RECORD_FILENAME
    record.write_text("{garbled")
    assert reproduce(*command) == 2
    assert f"delete the run's folder {str(run_dir(out, 'baseline', 1))!r}" in capsys.readouterr().err
    shutil.rmtree(run_dir(out, "baseline", 1))
    assert reproduce(*command) == 0
    assert record.is_file()

    saved = (out / CONFIG_FILENAME).read_text()
    for damage in ("{garbled", "[1, 2, 3]"):
        (out / CONFIG_FILENAME).write_text(damage)
        capsys.readouterr()
        assert reproduce(*command) == 2
        err = capsys.readouterr().err
        assert CONFIG_FILENAME in err and "move it away" not in err  # moving it away is refused as well
        assert "restore it from a copy, or choose another --output-dir" in err
    (out / CONFIG_FILENAME).rename(tmp_path / "config.old")
    assert reproduce(*command) == 2  # what "move it away" led to: another error
    (out / CONFIG_FILENAME).write_text(saved)  # restored: it runs
    assert reproduce(*command) == 0


# --- item 13: the config.json the commands read; nothing prompts, nothing runs -----------------------


@pytest.fixture
def no_prompt(monkeypatch):
    """transformers asks 'Do you wish to run the custom code?' with input(): it must never be asked."""

    def prompt(*args, **kwargs):
        raise AssertionError(f"prompted: {args}")

    monkeypatch.setattr(builtins, "input", prompt)


def damaged_folders(tmp_path: Path) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """A corpus, and model folders each with one kind of bad config.json (the message expected)."""
    from transformers import GPT2Config

    corpus, model = corpus_and_saved_model(tmp_path)
    folders: dict[str, tuple[Path, str]] = {}

    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(model, folder)
        return folder

    saved = json.loads((model / "config.json").read_text())
    assert "auto_map" in saved  # what made transformers ask to run the folder's code
    del saved["model_type"]
    (folder := copy("no-model-type")).joinpath("config.json").write_text(json.dumps(saved))
    folders["no model_type"] = folder, f"{str(folder / 'config.json')!r} has no model_type; expected 'mtlstm'"
    (folder := copy("array")).joinpath("config.json").write_text("[1, 2, 3]")
    folders["array"] = (
        folder,
        f"{str(folder / 'config.json')!r} must hold a JSON object (the model's configuration), got an array",
    )
    (folder := copy("not-json")).joinpath("config.json").write_bytes(b"\xff\xfe{")
    folders["not json"] = folder, f"{str(folder / 'config.json')!r} is not valid JSON"
    folder = copy("gpt2")
    GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=37, n_positions=16).save_pretrained(folder)
    folders["gpt2"] = folder, "has model_type='gpt2', expected 'mtlstm'"
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (folder / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{trunc")
    folders["adapter"] = folder, f"{str(folder)!r} holds a PEFT adapter (adapter_config.json), not a model"
    return corpus, folders


def test_read_model_config_names_each_kind_of_bad_config(tmp_path):
    from mtlstm_hf.input_files import read_model_config

    corpus, folders = damaged_folders(tmp_path)
    assert read_model_config(tmp_path / "model")["model_type"] == "mtlstm"
    for folder, message in folders.values():
        with pytest.raises(ValueError) as caught:
            read_model_config(folder, "init_from")
        assert str(caught.value).startswith("init_from: ") and message in str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(FileNotFoundError, match="init_from: .* does not exist"):
        read_model_config(tmp_path / "nowhere", "init_from")


def test_init_from_a_folder_that_is_no_mtlstm_model_is_refused_before_anything_reads_it(tmp_path, capsys, no_prompt):
    from mtlstm_hf.training.cli import main

    corpus, folders = damaged_folders(tmp_path)
    for kind, (folder, message) in folders.items():
        out = tmp_path / f"run-{folder.name}"
        code = main(["--init-from", str(folder), "--data", str(corpus), "--output-dir", str(out), "--cpu", "--threads", "1",
                     "--max-steps", "1", "--batch-size", "2", "--eval-batch-size", "2", "--bptt", "5"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, (kind, err)
        assert "mtlstm-train: error: init_from: " in err and message in err, (kind, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_resume_from_a_checkpoint_whose_config_is_damaged_is_refused_naming_it(tmp_path, capsys, no_prompt):
    from mtlstm_hf.training.cli import main

    corpus, model = corpus_and_saved_model(tmp_path)
    out = tmp_path / "run"
    arguments = ["--data", str(corpus), "--output-dir", str(out), "--cpu", "--threads", "1", "--max-steps", "1",
                 "--batch-size", "2", "--eval-batch-size", "2", "--bptt", "5", "--preset", "tiny", "--no-progress-bar"]  # fmt: skip
    assert main(arguments) == 0
    config = next((out / "checkpoints").glob("step-*")) / "config.json"
    config.write_text("[1, 2, 3]")
    capsys.readouterr()
    assert main(["--resume", str(out), "--max-steps", "2", "--cpu", "--threads", "1"]) == 2
    assert f"resume_from: {str(config)!r} must hold a JSON object" in capsys.readouterr().err


def test_mtlstm_eval_refuses_a_bootstrap_seed_numpy_and_torch_cannot_take_before_scoring(tmp_path, capsys):
    """--seed 2**70 reached torch.Generator().manual_seed after both models were scored."""
    from mtlstm_hf.evaluation.bootstrap import paired_block_bootstrap
    from mtlstm_hf.evaluation.cli import main as evaluate

    missing = tmp_path / "no-such-checkpoint"  # the seed is refused before the folder is even looked at
    assert evaluate([str(missing), "--seed", str(2**70)]) == 2
    error = capsys.readouterr().err
    assert "--seed must be an integer from 0 to 2**32 - 1" in error and str(2**70) in error
    with pytest.raises(ValueError, match="bootstrap seed"):
        paired_block_bootstrap(torch.zeros(10), torch.zeros(10), block_size=2, n_resamples=5, generator=-1)


@pytest.mark.parametrize("name", ["labels", "shift_labels"])
def test_the_causal_lm_refuses_labels_outside_the_vocabulary(name):
    """A label id >= vocab_size (or negative, other than -100) was cross_entropy's IndexError (a
    device-side assert on CUDA); check_values=False skips the read, as for the inputs."""
    from conftest import tiny_config

    from mtlstm_hf import MTLSTMForCausalLM

    model = MTLSTMForCausalLM(tiny_config()).eval()
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (2, 5))
    labels = ids.clone()
    labels[0, 2], labels[1, 3] = vocab + 3, -7
    with pytest.raises(
        ValueError, match=rf"{name} must be token ids in \[0, {vocab}\) or -100 \(ignored\), got \[-7, {vocab + 3}\]"
    ):
        model(ids, **{name: labels})
    labels[labels == vocab + 3] = -100
    labels[labels == -7] = 1
    assert torch.isfinite(model(ids, **{name: labels}).loss)
