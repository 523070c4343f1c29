"""MTLSTMForTokenClassification: the per-position head, its losses against hand-written ones,
save/load, the Auto class and remote code."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_in_fresh_process_without_package
from transformers import AutoModelForTokenClassification

import mtlstm_hf
from mtlstm_hf import REGULARIZATION_OFF, MTLSTMConfig, MTLSTMForTokenClassification, MTLSTMModel

pytestmark = pytest.mark.usefixtures("one_thread")


def config(**overrides) -> MTLSTMConfig:
    fields = dict(
        vocab_size=7,
        embedding_size=5,
        hidden_sizes=[9],
        tie_word_embeddings=False,
        timescale_schedules=[{"type": "inverse_gamma", "alpha": 1.5, "beta": 1.0, "grid": "endpoint_free"}],
        frozen_biases="all",
        **REGULARIZATION_OFF,
        num_labels=3,
        problem_type="multi_label_classification",
    )
    fields.update(overrides)
    return MTLSTMConfig(**fields)


def model(seed: int = 0, **overrides) -> MTLSTMForTokenClassification:
    torch.manual_seed(seed)
    return MTLSTMForTokenClassification(config(**overrides)).eval()


def batch():
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 7, (3, 6), generator=generator)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    labels = torch.randint(0, 2, (3, 6, 3), generator=generator).float()
    labels[0, 1, 2] = -100.0  # one entry ignored
    labels[1, 4:] = -100.0  # padding, also masked
    return ids, mask, labels


def test_structure_and_frozen_biases():
    m = model()
    assert isinstance(m.model, MTLSTMModel) and m.classifier.out_features == 3
    trainable = {name for name, p in m.named_parameters() if p.requires_grad}
    assert trainable == {
        "model.embeddings.weight",
        "model.layers.0.weight_ih",
        "model.layers.0.weight_hh",
        "classifier.weight",
        "classifier.bias",
    }
    assert len(list(m.named_buffers())) == 4  # all four gate biases frozen
    assert m.assigned_timescales()[0].shape == (9,)


def test_multi_label_loss_is_bce_over_kept_entries():
    m = model()
    ids, mask, labels = batch()
    out = m(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (3, 6, 3)
    total, count = 0.0, 0
    for b in range(3):
        for t in range(6):
            for c in range(3):
                y = float(labels[b, t, c])
                if mask[b, t] == 0 or y == -100.0:
                    continue
                p = 1.0 / (1.0 + torch.exp(-out.logits[b, t, c].double()))
                total += -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
                count += 1
    assert count == 3 * 6 * 3 - 3 * (2 + 4) - 1
    torch.testing.assert_close(out.loss.double(), total / count, rtol=1e-6, atol=1e-7)
    # Padding is ignored however it is labelled; logits of kept steps do not depend on it.
    other = labels.clone()
    other[2, 2:] = 1.0
    again = m(ids, attention_mask=mask, labels=other)
    torch.testing.assert_close(again.loss, out.loss)
    # Without a mask, the -100 entries alone are left out.
    no_mask = m(ids, labels=labels)
    kept = labels != -100
    torch.testing.assert_close(
        no_mask.loss,
        torch.nn.functional.binary_cross_entropy_with_logits(no_mask.logits[kept], labels[kept]),
    )


def test_gradients_reach_only_kept_positions():
    m = model()
    ids, mask, labels = batch()
    embeds = m.get_input_embeddings()(ids).detach().requires_grad_(True)
    m(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss.backward()
    assert (embeds.grad[2, 2:] == 0).all() and (embeds.grad[1, 4:] == 0).all()
    assert embeds.grad[0].abs().sum() > 0


def test_single_label_loss_and_problem_type_inference():
    m = model(problem_type="single_label_classification")
    ids, mask, _ = batch()
    classes = torch.randint(0, 3, (3, 6), generator=torch.Generator().manual_seed(1))
    classes[0, 0] = -100
    out = m(ids, attention_mask=mask, labels=classes)
    keep = (mask == 1) & (classes != -100)
    expected = -torch.log_softmax(out.logits, -1)[keep].gather(1, classes[keep][:, None]).mean()
    torch.testing.assert_close(out.loss, expected)
    inferred = model(problem_type=None)
    torch.testing.assert_close(inferred(ids, attention_mask=mask, labels=classes).loss, out.loss)
    _, _, labels = batch()
    torch.testing.assert_close(
        inferred(ids, attention_mask=mask, labels=labels).loss, model()(ids, attention_mask=mask, labels=labels).loss
    )


def test_bad_labels_and_problem_type():
    m = model()
    ids, mask, labels = batch()
    with pytest.raises(ValueError, match=r"labels must have shape \(batch, sequence, num_labels\)"):
        m(ids, labels=labels[:, :, :2])
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        m(ids, labels=labels.tolist())
    single = model(problem_type="single_label_classification")
    with pytest.raises(ValueError, match="integer class ids"):
        single(ids, labels=labels)
    regression = model(problem_type="regression")
    with pytest.raises(ValueError, match="problem_type"):
        regression(ids, labels=labels)


def test_tuple_output_and_hidden_states():
    m = model()
    ids, mask, labels = batch()
    out = m(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert len(out.hidden_states) == 2 and out.hidden_states[-1].shape == (3, 6, 9)
    loss, logits, hidden = m(ids, attention_mask=mask, labels=labels, output_hidden_states=True, return_dict=False)
    torch.testing.assert_close(loss, out.loss)
    torch.testing.assert_close(logits, out.logits)


def test_save_load_round_trip_and_auto_class(tmp_path):
    m = model(seed=5)
    ids, mask, labels = batch()
    with torch.no_grad():
        expected = m(ids, attention_mask=mask).logits
    m.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForTokenClassification"].endswith("modeling_mtlstm.MTLSTMForTokenClassification")
    assert saved["problem_type"] == "multi_label_classification" and saved["frozen_biases"] == "all"
    for loaded in (
        MTLSTMForTokenClassification.from_pretrained(tmp_path),
        AutoModelForTokenClassification.from_pretrained(tmp_path),
    ):
        assert type(loaded) is MTLSTMForTokenClassification
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(ids, attention_mask=mask).logits, expected, rtol=0, atol=0)
        for name, value in m.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    assert mtlstm_hf.MTLSTMForTokenClassification is MTLSTMForTokenClassification
    assert type(AutoModelForTokenClassification.from_config(config())) is MTLSTMForTokenClassification


def test_loads_as_remote_code_without_the_package(tmp_path):
    m = model(seed=2)
    ids, _, _ = batch()
    with torch.no_grad():
        expected = m(ids).logits
    m.save_pretrained(tmp_path / "model")
    loaded = load_in_fresh_process_without_package(
        tmp_path / "model", ids, tmp_path / "remote", "AutoModelForTokenClassification"
    )
    assert loaded["class"].startswith("transformers_modules")
    torch.testing.assert_close(loaded["logits"], expected, rtol=0, atol=0)
