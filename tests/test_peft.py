"""PEFT LoRA on every weight of the model: the embedding and the output layer
as modules, the input and recurrent weights of every layer through ``target_parameters``.

Oracle: a plain model whose weights are set to ``W + (alpha / r) B A`` by hand (the LoRA
formula, Hu et al. 2021), not PEFT's own merge. The frozen timescale biases are buffers,
so no adapter and no optimiser can reach them.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForCausalLM

peft = pytest.importorskip("peft")

from mtlstm_hf import MTLSTMForCausalLM  # noqa: E402

RANK, ALPHA = 2, 4.0
SCALING = ALPHA / RANK


def lora_config(**overrides):
    fields = dict(
        r=RANK,
        lora_alpha=ALPHA,
        target_modules=["embeddings", "lm_head"],
        target_parameters=["weight_ih", "weight_hh"],
        init_lora_weights=False,  # B != 0: the adapter changes the function from the start
    )
    fields.update(overrides)
    return peft.LoraConfig(**fields)


def base_model(**overrides) -> MTLSTMForCausalLM:
    torch.manual_seed(0)
    # Both layers carry timescales (layer 2 by inverse gamma), so frozen buffers sit under both wrappers.
    schedules = [{"type": "fixed", "values": [3.0, 4.0]}, {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}]
    return MTLSTMForCausalLM(tiny_config(timescale_schedules=schedules, **overrides)).eval()


def adapter_tensors(peft_model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach() for name, tensor in peft_model.named_parameters() if "lora_" in name}


def merged_by_hand(plain: MTLSTMForCausalLM, peft_model) -> MTLSTMForCausalLM:
    """``plain`` with every targeted weight replaced by ``W + SCALING * B @ A``."""
    lora = adapter_tensors(peft_model)
    merged = copy.deepcopy(plain)
    prefix = "base_model.model.model."
    with torch.no_grad():
        embedding_delta = (
            lora[prefix + "embeddings.lora_embedding_B.default"] @ lora[prefix + "embeddings.lora_embedding_A.default"]
        )
        merged.model.embeddings.weight += SCALING * embedding_delta.T
        head = "base_model.model.lm_head."
        merged.lm_head.weight += SCALING * lora[head + "lora_B.default.weight"] @ lora[head + "lora_A.default.weight"]
        for index, layer in enumerate(merged.model.layers):
            # PEFT nests one wrapper per targeted parameter: the outer one holds weight_hh.
            outer, inner = f"{prefix}layers.{index}.", f"{prefix}layers.{index}.base_layer."
            for wrapper, name in ((outer, "weight_hh"), (inner, "weight_ih")):
                delta = lora[wrapper + "lora_B.default.weight"] @ lora[wrapper + "lora_A.default.weight"]
                getattr(layer, name).add_(SCALING * delta)
    return merged


def test_lora_on_every_weight_equals_the_hand_merged_model():
    ids = torch.randint(0, 37, (3, 9))
    plain = base_model(tie_word_embeddings=False)
    expected = plain(ids).logits
    adapted = peft.get_peft_model(copy.deepcopy(plain), lora_config())
    with torch.no_grad():
        logits = adapted(input_ids=ids).logits
        oracle = merged_by_hand(plain, adapted)(ids).logits
    assert (logits - expected).abs().max() > 1e-3  # the adapter is in the forward pass
    torch.testing.assert_close(logits, oracle, rtol=0, atol=1e-5)


def test_only_adapters_train_and_the_timescales_stay_fixed():
    ids = torch.randint(0, 37, (4, 8))
    plain = base_model(tie_word_embeddings=False)
    frozen = {name: t.clone() for name, t in plain.state_dict().items()}
    adapted = peft.get_peft_model(plain, lora_config(init_lora_weights=True)).train()
    trainable = [name for name, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # Every layer's input and recurrent weight has an adapter.
    for index in range(2):
        assert any(f"layers.{index}.lora_A" in name for name in trainable)
        assert any(f"layers.{index}.base_layer.lora_A" in name for name in trainable)
    optimizer = torch.optim.Adam([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = adapted(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    base_state = adapted.get_base_model().state_dict()
    for name, tensor in frozen.items():
        stored = [value for key, value in base_state.items() if key.replace("base_layer.", "") == name]
        assert len(stored) == 1, name
        assert torch.equal(stored[0], tensor), name  # base weights, free and frozen biases untouched
    assert torch.equal(adapted.get_base_model().assigned_timescales()[1], base_model().assigned_timescales()[1])


def test_adapter_save_reload_and_merge(tmp_path):
    ids = torch.randint(0, 37, (2, 6))
    plain = base_model(tie_word_embeddings=False)
    plain.save_pretrained(tmp_path / "base")
    adapted = peft.get_peft_model(copy.deepcopy(plain), lora_config()).eval()
    with torch.no_grad():
        reference = adapted(input_ids=ids).logits
    adapted.save_pretrained(tmp_path / "adapter")

    reloaded_base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    reloaded = peft.PeftModel.from_pretrained(reloaded_base, tmp_path / "adapter").eval()
    with torch.no_grad():
        # Same tensors; PEFT may nest the reloaded wrappers in another order (float rounding only).
        torch.testing.assert_close(reloaded(input_ids=ids).logits, reference, rtol=0, atol=1e-6)

    merged = reloaded.merge_and_unload()
    assert type(merged) is MTLSTMForCausalLM
    assert not any("lora" in name for name in merged.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference, rtol=0, atol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert torch.equal(again(ids).logits, merged(ids).logits)
    for before, after in zip(plain.assigned_timescales(), again.assigned_timescales()):
        assert torch.equal(before, after)


def test_generate_through_the_adapter_equals_the_merged_model():
    ids = torch.randint(2, 37, (2, 4))
    plain = base_model(tie_word_embeddings=False)
    adapted = peft.get_peft_model(copy.deepcopy(plain), lora_config()).eval()
    merged = merged_by_hand(plain, adapted)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(adapted.generate(input_ids=ids, **kwargs), merged.generate(ids, **kwargs))


def test_lora_on_a_tied_output_layer_reaches_both_uses_of_the_matrix():
    """With tied embeddings the output layer shares the embedding matrix: with
    ``ensure_weight_tying`` one adapter changes the lookup and the output layer alike."""
    ids = torch.randint(0, 37, (2, 6))
    plain = base_model()
    assert plain.lm_head.weight is plain.model.embeddings.weight
    adapted = peft.get_peft_model(
        copy.deepcopy(plain),
        lora_config(target_modules=["embeddings", "lm_head"], target_parameters=[], ensure_weight_tying=True),
    ).eval()
    lora = adapter_tensors(adapted)
    prefix = "base_model.model.model.embeddings."
    with torch.no_grad():
        adapter_logits = adapted(input_ids=ids).logits
        oracle = copy.deepcopy(plain)  # the delta enters the shared matrix once
        oracle.model.embeddings.weight += (
            SCALING * (lora[prefix + "lora_embedding_B.default"] @ lora[prefix + "lora_embedding_A.default"]).T
        )
        expected = oracle(ids).logits
    torch.testing.assert_close(adapter_logits, expected, rtol=0, atol=1e-5)
    # Not tested: merge_and_unload of a tied pair. PEFT 0.21 then adds the delta to the shared
    # matrix twice, for GPT-2 as for this model; the README says to untie before merging.


def load_example(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_lora_example_trains_saves_and_merges(tmp_path, _fresh_accelerate_state):
    """examples/finetune_lora.py on a tied tiny model with --merge: the saved adapter on the
    reloaded base gives the merged model's logits; the merged folder is a plain model whose
    frozen timescale biases and untouched weights equal the base's."""
    from conftest import corpus_and_saved_model

    corpus, model_dir = corpus_and_saved_model(tmp_path)
    out = tmp_path / "lora"
    example = load_example("finetune_lora")
    argv = [
        "--model",
        str(model_dir),
        "--data",
        str(corpus),
        "--output-dir",
        str(out),
        "--block-size",
        "6",
        "--batch-size",
        "4",
        "--max-steps",
        "4",
        "--eval-steps",
        "4",
        "--save-steps",
        "4",
        "--lora-rank",
        "2",
        "--merge",
    ]
    assert example.main(argv) == 0

    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    assert type(merged) is MTLSTMForCausalLM and not merged.config.tie_word_embeddings
    ids = torch.randint(0, base.config.vocab_size, (2, 7))
    untied_base = example.untie_output_layer(AutoModelForCausalLM.from_pretrained(model_dir)).eval()
    adapted = peft.PeftModel.from_pretrained(untied_base, out).eval()
    with torch.no_grad():
        merged_logits = merged(ids).logits
        torch.testing.assert_close(adapted(input_ids=ids).logits, merged_logits, rtol=0, atol=1e-5)
        assert (merged_logits - base(ids).logits).abs().max() > 1e-4  # the adapters trained
    base_state, merged_state = base.state_dict(), merged.state_dict()
    for name in ("model.layers.0.gate_biases.forget_gate", "model.layers.0.gate_biases.input_gate", "lm_head.bias"):
        assert torch.equal(base_state[name], merged_state[name]), name
    assert (out / "merged" / "tokenizer.json").is_file()
    assert (
        json.loads((out / "mtlstm_adapter.json").read_text())["vocab_size"] == base.config.vocab_size
    )  # saved by save_adapter


# --- saving and reloading ----------------------------------------------------


WORDS = "sha256:" + "0" * 64  # the vocabulary fingerprint of the base the adapters train on


def _trained_tied_adapter(steps: int = 5):
    """The README's recipe on a tied base: one adapter for the shared matrix, the recurrent
    weights by target_parameters; trained a few Adam steps on random text."""
    plain = base_model(vocab_fingerprint=WORDS)
    adapted = peft.get_peft_model(
        copy.deepcopy(plain),
        peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["embeddings", "lm_head"], target_parameters=["weight_ih", "weight_hh"],
                        task_type="CAUSAL_LM", ensure_weight_tying=True),
    )  # fmt: skip
    optimizer = torch.optim.Adam([p for p in adapted.parameters() if p.requires_grad], lr=5e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 37, (4, 8), generator=generator)
        adapted(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return plain, adapted.eval()


def test_a_tied_adapter_saved_with_save_adapter_reloads_as_trained(tmp_path):
    """PEFT 0.21 saves a tied adapter without lm_head in target_modules and its reload drops the
    output layer's adapter (GPT-2 the same); save_adapter's folder reloads bit for bit, through
    PEFT itself and through load_adapter, and the pair is tied again."""
    from mtlstm_hf.adapters import load_adapter, save_adapter

    plain, adapted = _trained_tied_adapter()
    ids = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        trained, before = adapted(input_ids=ids).logits, plain(ids).logits
    assert (trained - before).abs().max() > 1e-2  # the adapter changed the function
    save_adapter(adapted, tmp_path / "adapter")
    assert "lm_head" in json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"]
    for reloaded in (
        peft.PeftModel.from_pretrained(base_model(vocab_fingerprint=WORDS), tmp_path / "adapter").eval(),
        load_adapter(base_model(vocab_fingerprint=WORDS), tmp_path / "adapter").eval(),
    ):
        with torch.no_grad():
            assert torch.equal(reloaded(input_ids=ids).logits, trained)
        head, embeddings = reloaded.base_model.model.lm_head, reloaded.base_model.model.model.embeddings
        assert head.lora_A["default"].weight.data_ptr() == embeddings.lora_embedding_B["default"].data_ptr()


def test_an_adapter_is_refused_on_a_base_of_another_vocabulary(tmp_path):
    from mtlstm_hf.adapters import load_adapter, save_adapter

    _, adapted = _trained_tied_adapter(steps=1)
    save_adapter(adapted, tmp_path / "adapter")
    other_words = base_model(vocab_fingerprint="sha256:" + "1" * 64)
    with pytest.raises(
        ValueError, match="vocab_fingerprint .*this base has vocab_size 37 and vocab_fingerprint 'sha256:1111"
    ):
        load_adapter(other_words, tmp_path / "adapter")
    with pytest.raises(ValueError, match="vocab_size 37 .*this base has vocab_size 40"):
        load_adapter(base_model(vocab_size=40, vocab_fingerprint=WORDS), tmp_path / "adapter")
    (tmp_path / "adapter" / "mtlstm_adapter.json").unlink()  # saved by PEFT alone: loads, with a warning
    with pytest.warns(UserWarning, match="cannot be checked"):
        load_adapter(base_model(vocab_fingerprint=WORDS), tmp_path / "adapter")


def test_a_truncated_adapter_file_is_named(tmp_path):
    from mtlstm_hf.adapters import load_adapter, save_adapter

    _, adapted = _trained_tied_adapter(steps=1)
    save_adapter(adapted, tmp_path / "adapter")
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors' is not the file that was written"):
        load_adapter(base_model(vocab_fingerprint=WORDS), tmp_path / "adapter")
    (tmp_path / "adapter" / "weights_sha256.json").unlink()
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors' is not a readable safetensors file"):
        load_adapter(base_model(vocab_fingerprint=WORDS), tmp_path / "adapter")
