"""The model-folder loader: the
checkpoints of mtlstm-eval, mtlstm-analyze and mtlstm-push go through the same config.json check
as --init-from (one line naming the file, exit 2, nothing prompts), and a tensor of another shape
is named with both shapes."""

from __future__ import annotations

import builtins

import pytest
import torch
from conftest import corpus_and_saved_model
from safetensors.torch import load_file, save_file
from test_reliability_round2_b import damaged_folders

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_prompt(monkeypatch):
    def prompt(*args, **kwargs):
        raise AssertionError(f"prompted: {args}")

    monkeypatch.setattr(builtins, "input", prompt)


def commands(folder, corpus, out):
    from mtlstm_hf.analysis.cli import main as analyze
    from mtlstm_hf.evaluation.cli import main as evaluate
    from mtlstm_hf.hub.cli import main as push

    return {
        "mtlstm-eval": lambda: evaluate(
            [str(folder), "--data", str(corpus), "--split", "validation", "--threads", "1"]
        ),
        "mtlstm-analyze": lambda: analyze(
            [str(folder), "--data", str(corpus), "--output-dir", str(out), "--threads", "1"]
        ),
        "mtlstm-push": lambda: push([str(folder), "user/model", "--dry-run", str(out), "--threads", "1"]),
    }


def test_the_commands_refuse_a_config_that_is_no_mtlstm_one_naming_the_file(tmp_path, capsys, no_prompt):
    corpus, folders = damaged_folders(tmp_path)
    for kind, (folder, message) in folders.items():
        for name, run in commands(folder, corpus, tmp_path / f"out-{folder.name}").items():
            assert run() == 2, (name, kind)
            err = capsys.readouterr().err
            expected = message
            if name == "mtlstm-analyze" and kind == "gpt2":  # it reads other architectures: it names them
                expected = (
                    "has model_type='gpt2', which analyses do not read model_type 'gpt2'; supported architectures: "
                )
            assert f"{name}: error: checkpoint: " in err and expected in err, (name, kind, err)
            assert len(err.strip().splitlines()) == 1, err
            assert not (tmp_path / f"out-{folder.name}").exists()


def test_a_tensor_of_another_shape_is_named_with_both_shapes(tmp_path, capsys):
    from mtlstm_hf.evaluation.cli import main as evaluate
    from mtlstm_hf.model_folder import load_model_strictly

    corpus, folder = corpus_and_saved_model(tmp_path)
    (folder / "weights_sha256.json").unlink(missing_ok=True)
    tensors = load_file(folder / "model.safetensors")
    expected = tuple(tensors["model.layers.0.weight_hh"].shape)  # the oracle: what the saved config implies
    tensors["model.layers.0.weight_hh"] = torch.zeros(expected[0] + 4, expected[1])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    shown = f"of another shape than the configuration implies: model.layers.0.weight_hh saved ({expected[0] + 4}, {expected[1]}), expected {expected}"
    with pytest.raises(ValueError) as caught:
        load_model_strictly(folder)
    assert shown in str(caught.value)
    assert evaluate([str(folder), "--data", str(corpus), "--split", "validation", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert shown in err and "torch.Size" not in err
