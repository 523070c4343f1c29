"""transformers' common model and config tests (``ModelTesterMixin``, ``ConfigTester``), the cases
that apply to a recurrent causal LM, built into our suite on the common tester (batch 13,
sequence 7, vocabulary 99, embedding 32, two layers of 32: T=3|4 and inverse gamma).

transformers' test files are not shipped in its wheel, so the cases are written here, each
against an independent oracle: a plain forward, each row alone, a reload, the layers run by
hand, or a GPT-2 built from a small ``GPT2Config`` under the same call.

Not applicable here (transformers' own RWKV / Mamba / xLSTM tests skip or never reach them):
attention outputs, head masking/pruning, SDPA / flash / flex attention and attention-
implementation switching (no attention); position-embedding resizing (no positions);
feed-forward chunking; gradient checkpointing (``supports_gradient_checkpointing = False``, the
refusal is tested); problem types and mismatched ``num_labels`` heads (no sequence-classification
head); TorchScript (replaced by ``torch.export``, tests/test_export.py); multi-GPU data / model
parallelism, CPU and disk offload (need an accelerator); checkpoint conversion mappings (none).
"""

import copy
import inspect
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    TESTER_BATCH,
    TESTER_EMBED,
    TESTER_SEQ,
    TESTER_SPECIAL_ID,
    TESTER_VOCAB,
    common_config,
    common_inputs,
    common_model,
)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GenerationMixin, GPT2Config, GPT2LMHeadModel, PretrainedConfig

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM, MTLSTMModel
from mtlstm_hf.models.mtlstm.state import MTLSTMState
from mtlstm_hf.models.mtlstm.timescales import (
    forget_bias_from_timescale,
    realize_timescales,
    timescale_from_forget_bias,
)

MODEL_CLASSES = [MTLSTMModel, MTLSTMForCausalLM]
NUM_LAYERS = 2


def _main_output(model, **inputs) -> torch.Tensor:
    out = model(**inputs)
    return out.logits if isinstance(model, MTLSTMForCausalLM) else out.last_hidden_state


def _small_gpt2(**overrides) -> GPT2LMHeadModel:
    """The GPT-2 oracle: same vocabulary and width as the tester, one tiny block."""
    fields = dict(
        vocab_size=TESTER_VOCAB,
        n_embd=TESTER_EMBED,
        n_layer=1,
        n_head=2,
        n_positions=32,
        bos_token_id=TESTER_SPECIAL_ID,
        eos_token_id=TESTER_SPECIAL_ID,
        pad_token_id=TESTER_SPECIAL_ID,
    )
    fields.update(overrides)
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**fields)).eval()


# --- save / load --------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_save_load_round_trip_in_safetensors(model_class, tmp_path):
    model = common_model(model_class)
    ids, mask = common_inputs()
    with torch.no_grad():
        before = _main_output(model, input_ids=ids, attention_mask=mask)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "pytorch_model.bin").exists()
    saved = load_file(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in saved  # the tied copy is not stored twice
    reloaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # nothing missing, unexpected or mismatched
    with torch.no_grad():
        after = _main_output(reloaded.eval(), input_ids=ids, attention_mask=mask)
    # The reloaded tensors are read from the file at another memory alignment, and AVX2 kernels
    # (the packed LSTM path) round differently by alignment (3.7e-9 measured on an AVX2 EPYC):
    # the outputs agree to float32 rounding, the tensors bit for bit.
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-6)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name
    # Saving the reloaded model again gives the same file content.
    reloaded.save_pretrained(tmp_path / "again")
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved)


def test_untied_weights_are_saved_and_reloaded_separately(tmp_path):
    model = common_model(tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.model.embeddings.weight.data_ptr()
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" in load_file(tmp_path / "model.safetensors")
    reloaded = MTLSTMForCausalLM.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight.data_ptr() != reloaded.model.embeddings.weight.data_ptr()
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
    assert torch.equal(reloaded.model.embeddings.weight, model.model.embeddings.weight)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_torch_save_load_of_the_state_dict(model_class, tmp_path):
    model = common_model(model_class, seed=1)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    other = common_model(model_class, seed=2)
    other.load_state_dict(torch.load(tmp_path / "state.pt"))
    ids, mask = common_inputs()
    with torch.no_grad():
        assert torch.equal(
            _main_output(model, input_ids=ids, attention_mask=mask),
            _main_output(other, input_ids=ids, attention_mask=mask),
        )


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_from_pretrained_without_a_checkpoint_takes_the_state_dict(model_class):
    model = common_model(model_class, seed=3)
    built = model_class.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, built.state_dict()[name]), name
    if model_class is MTLSTMForCausalLM:
        assert built.lm_head.weight is built.model.embeddings.weight


def test_base_and_head_checkpoints_load_into_each_other(tmp_path):
    """transformers' ``test_correct_missing_keys``: the base model's checkpoint misses only the
    head's own tensors in the LM (the tied weight is not missing; the bias starts at zero, as
    ``_init_weights`` sets it), and the LM's checkpoint has only the head as unexpected keys."""
    lm = common_model(seed=4)
    lm.lm_head.bias.data.uniform_(-1, 1)
    lm.model.save_pretrained(tmp_path / "base")
    lm.save_pretrained(tmp_path / "lm")

    from_base, info = MTLSTMForCausalLM.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert set(info["missing_keys"]) == {"lm_head.bias"} and not info["unexpected_keys"]
    assert torch.equal(from_base.lm_head.bias, torch.zeros(TESTER_VOCAB))
    assert from_base.lm_head.weight is from_base.model.embeddings.weight
    for name, tensor in lm.model.state_dict().items():
        assert torch.equal(from_base.model.state_dict()[name], tensor), name

    base, info = MTLSTMModel.from_pretrained(tmp_path / "lm", output_loading_info=True)
    assert set(info["unexpected_keys"]) == {"lm_head.bias"} and not info["missing_keys"]
    for name, tensor in lm.model.state_dict().items():
        assert torch.equal(base.state_dict()[name], tensor), name


def test_mismatched_sizes_raise_unless_ignored_then_only_they_are_reinitialised(tmp_path):
    """``from_pretrained(..., vocab_size=109)``: an error as for GPT-2 under the same call; with
    ``ignore_mismatched_sizes=True`` the two vocabulary-sized tensors are set by ``_init_weights``
    (embedding in U(-r, r), decoder bias zero), everything else is the checkpoint's, still tied."""
    model = common_model(seed=5)
    model.lm_head.bias.data.fill_(0.5)
    model.save_pretrained(tmp_path / "ours")
    gpt2 = _small_gpt2()
    gpt2.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(RuntimeError) as gpt2_error:
        GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2", vocab_size=TESTER_VOCAB + 10)
    with pytest.raises(type(gpt2_error.value), match="ignore_mismatched_sizes"):
        MTLSTMForCausalLM.from_pretrained(tmp_path / "ours", vocab_size=TESTER_VOCAB + 10)

    grown, info = MTLSTMForCausalLM.from_pretrained(
        tmp_path / "ours", vocab_size=TESTER_VOCAB + 10, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert {key for key, *_ in info["mismatched_keys"]} == {"model.embeddings.weight", "lm_head.bias"}
    embedding = grown.model.embeddings.weight
    assert embedding.shape == (TESTER_VOCAB + 10, TESTER_EMBED) and grown.lm_head.weight is embedding
    r = grown.config.embedding_init_range
    assert bool((embedding.abs() <= r).all()) and embedding.std() > r / 4  # U(-r, r), not zeros or leftovers
    assert torch.equal(grown.lm_head.bias, torch.zeros(TESTER_VOCAB + 10))
    for name, tensor in model.state_dict().items():
        if name not in ("model.embeddings.weight", "lm_head.weight", "lm_head.bias"):
            assert torch.equal(grown.state_dict()[name], tensor), name
    ids = torch.tensor([[TESTER_VOCAB + 9, 3, 4]])
    assert grown(ids).logits.shape == (1, 3, TESTER_VOCAB + 10)


@pytest.mark.parametrize("keyword", ["dtype", "torch_dtype"])
def test_load_in_half_precision_keeps_timescale_biases_in_float32(keyword, tmp_path):
    model = common_model(seed=6)
    model.save_pretrained(tmp_path / "f32")
    half = MTLSTMForCausalLM.from_pretrained(tmp_path / "f32", **{keyword: torch.bfloat16})
    assert half.lm_head.weight.dtype == half.model.layers[0].weight_ih.dtype == torch.bfloat16
    for layer, reference in zip(half.model.layers, model.model.layers):
        assert layer.gate_biases.forget_gate.dtype == torch.float32  # _keep_in_fp32_modules_strict
        assert torch.equal(layer.gate_biases.forget_gate, reference.gate_biases.forget_gate)
    ids, mask = common_inputs()
    with torch.no_grad():
        logits = half(ids, attention_mask=mask).logits
        reference = model(ids, attention_mask=mask).logits
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.05
    # dtype="auto" takes the dtype the checkpoint was saved in.
    half.save_pretrained(tmp_path / "bf16")
    auto = MTLSTMForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert auto.lm_head.weight.dtype == torch.bfloat16


# --- initialisation -----------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("empty", ["torch.device", "init_empty_weights"])
def test_init_weights_sets_every_parameter_and_buffer_of_a_meta_model(model_class, empty):
    """A model built without storage (``from_config`` on the meta device) and initialised by
    transformers gets every tensor set: NaN-filled storage leaves no NaN, the timescale biases
    equal the schedules' values, the rest is drawn in its range (oracle: the schedules and
    a model built normally)."""
    if empty == "torch.device":
        with torch.device("meta"):
            model = model_class._from_config(common_config())
    else:
        from accelerate import init_empty_weights

        with init_empty_weights():
            model = model_class._from_config(common_config())
        # Outside a meta-device context post_init already ran the (then empty) initialisation and
        # marked the modules done, as for GPT-2: unmark them to initialise again.
        for module in model.modules():
            module.__dict__.pop("_is_hf_initialized", None)
    # Both put the parameters on the meta device (init_empty_weights keeps buffers by default).
    assert all(parameter.device.type == "meta" for parameter in model.parameters())
    model = model.to_empty(device="cpu")
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data.fill_(float("nan"))
    model.init_weights()
    state = model.state_dict()
    assert not [name for name, tensor in state.items() if torch.isnan(tensor).any()]
    normal = common_model(model_class, seed=7).state_dict()
    assert state.keys() == normal.keys()
    config = model.config
    for index in range(NUM_LAYERS):
        prefix = "" if model_class is MTLSTMModel else "model."
        forget = forget_bias_from_timescale(realize_timescales(config.timescale_schedules[index], 32)).float()
        assert torch.equal(state[f"{prefix}layers.{index}.gate_biases.forget_gate"], forget)
        assert torch.equal(state[f"{prefix}layers.{index}.gate_biases.input_gate"], -forget)
    for name, tensor in state.items():
        # Drawn tensors: in their documented range (U(-r, r) embedding; nn.LSTM's U(-1/sqrt(H),
        # 1/sqrt(H)) weights, free biases the sum of two such draws), and not constant.
        if "forget_gate" in name or "input_gate" in name or name == "lm_head.bias":
            continue
        if "embeddings" in name or name == "lm_head.weight":
            bound = config.embedding_init_range
        else:
            bound = (2.0 if "gate_biases" in name else 1.0) / 32**0.5
        assert tensor.abs().max() <= bound + 1e-6 and tensor.std() > bound / 4, name
        assert normal[name].abs().max() <= bound + 1e-6, name
    if model_class is MTLSTMForCausalLM:
        assert torch.equal(state["lm_head.bias"], torch.zeros(TESTER_VOCAB))
        assert model.lm_head.weight is model.model.embeddings.weight


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("frozen_biases", ["forget_input", "all"])
def test_init_weights_can_init_buffers_as_construction_sets_them(model_class, frozen_biases):
    """transformers' ``test_init_weights_can_init_buffers``: a model built with the initialisation
    skipped (``no_init_weights``, as ``from_pretrained`` builds it) has the same buffers as one
    built on the meta device and initialised by ``init_weights()``. The frozen timescale biases are
    a function of the configuration (oracle: the schedules' values), so they are right after
    construction alone; the other frozen biases (``frozen_biases="all"``) are drawn with the
    weights, so only the timescale ones are compared there."""
    from transformers.initialization import no_init_weights

    config = common_config(frozen_biases=frozen_biases)
    with no_init_weights():
        skipped = model_class(copy.deepcopy(config))
    with torch.device("meta"):
        on_meta = model_class(copy.deepcopy(config))
    on_meta.to_empty(device="cpu")
    on_meta.init_weights()
    buffers, meta_buffers = dict(skipped.named_buffers()), dict(on_meta.named_buffers())
    assert sorted(buffers) == sorted(meta_buffers)
    prefix = "" if model_class is MTLSTMModel else "model."
    timescale_buffers = set()
    for index in range(NUM_LAYERS):
        forget = forget_bias_from_timescale(realize_timescales(config.timescale_schedules[index], 32)).float()
        for gate, value in (("forget_gate", forget), ("input_gate", -forget)):
            name = f"{prefix}layers.{index}.gate_biases.{gate}"
            assert torch.equal(buffers[name], value), name
            timescale_buffers.add(name)
    compared = buffers if frozen_biases == "forget_input" else timescale_buffers
    assert timescale_buffers <= set(compared)
    for name in compared:
        assert torch.equal(buffers[name], meta_buffers[name]), name


def test_a_drawn_schedule_is_set_by_the_initialisation_alone():
    """chrono draws its timescales (an initialisation, like the weights): construction leaves them
    to ``_init_weights``, whose draw lies in chrono's range ``b_f = log u, u in [1, max - 1]``
    (the timescale ``-1/ln sigmoid(log u)`` from 1.44 to under ``max``), and two builds with one
    seed agree."""
    config = common_config(timescale_schedules=[{"type": "chrono", "max_timescale": 50}, "none"])
    torch.manual_seed(11)
    model = MTLSTMModel(copy.deepcopy(config))
    forget = model.layers[0].gate_biases.forget_gate
    assert forget.abs().sum() > 0 and torch.equal(model.layers[0].gate_biases.input_gate, -forget)
    timescales = timescale_from_forget_bias(forget.double())
    assert float(timescales.min()) >= 1.44 and float(timescales.max()) <= 50.0
    torch.manual_seed(11)
    assert torch.equal(MTLSTMModel(copy.deepcopy(config)).layers[0].gate_biases.forget_gate, forget)


def test_every_tensor_is_a_parameter_or_a_buffer():
    """``model.to(...)`` reaches every tensor (none hides in a plain attribute)."""
    model = common_model().to(torch.float64)
    for module in model.modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                pytest.fail(f"{type(module).__name__}.{name} is a tensor attribute, not a parameter or buffer")
    assert all(t.dtype == torch.float64 for t in model.state_dict().values())
    ids, mask = common_inputs()
    assert model(ids, attention_mask=mask).logits.dtype == torch.float64


# --- forward ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_determinism(model_class):
    model = common_model(model_class)
    ids, mask = common_inputs()
    with torch.no_grad():
        first = _main_output(model, input_ids=ids, attention_mask=mask)
        second = _main_output(model, input_ids=ids, attention_mask=mask)
    assert torch.equal(first, second) and not torch.isnan(first).any()


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_batching_equivalence_each_row_alone_equals_its_row_in_the_batch(model_class):
    model = common_model(model_class)
    ids, mask = common_inputs(seed=1)
    with torch.no_grad():
        batch = model(ids, attention_mask=mask, output_hidden_states=True)
        for row in range(TESTER_BATCH):
            alone = model(ids[row : row + 1], attention_mask=mask[row : row + 1], output_hidden_states=True)
            for name in ("logits", "last_hidden_state"):
                if name in batch:
                    torch.testing.assert_close(alone[name][0], batch[name][row], atol=1e-6, rtol=1e-5)
            for layer in range(NUM_LAYERS + 1):
                torch.testing.assert_close(
                    alone.hidden_states[layer][0], batch.hidden_states[layer][row], atol=1e-6, rtol=1e-5
                )
            for layer in range(NUM_LAYERS):
                torch.testing.assert_close(
                    alone.cache.hidden[layer][0], batch.cache.hidden[layer][row], atol=1e-6, rtol=1e-5
                )
                torch.testing.assert_close(
                    alone.cache.cell[layer][0], batch.cache.cell[layer][row], atol=1e-6, rtol=1e-5
                )


def test_an_all_ones_mask_equals_no_mask():
    model = common_model()
    ids, _ = common_inputs()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids, attention_mask=torch.ones_like(ids)).logits)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_forward_signature_and_main_input_name(model_class):
    parameters = list(inspect.signature(model_class.forward).parameters)
    assert parameters[1] == "input_ids" == model_class.main_input_name
    expected = {
        "attention_mask",
        "inputs_embeds",
        "cache",
        "past_key_values",
        "use_cache",
        "output_hidden_states",
        "return_dict",
    }
    if model_class is MTLSTMForCausalLM:
        expected |= {"labels", "logits_to_keep"}
    assert expected <= set(parameters)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("switch", ["argument", "config"])
def test_hidden_states_count_shapes_and_values(model_class, switch):
    """``L + 1`` tensors: the embedding and each layer's output (oracle: the layers run by hand)."""
    config = common_config(output_hidden_states=switch == "config")
    torch.manual_seed(0)
    model = model_class(config).eval()
    ids, _ = common_inputs()
    kwargs = {"output_hidden_states": True} if switch == "argument" else {}
    with torch.no_grad():
        out = model(ids, **kwargs)
    hidden = out.hidden_states
    assert isinstance(hidden, tuple) and len(hidden) == config.num_hidden_layers + 1 == NUM_LAYERS + 1
    assert [h.shape for h in hidden] == [(TESTER_BATCH, TESTER_SEQ, size) for size in (TESTER_EMBED, 32, 32)]
    base = model if model_class is MTLSTMModel else model.model
    with torch.no_grad():
        assert torch.equal(hidden[0], base.embeddings(ids))
        layer_input = hidden[0]
        for index, layer in enumerate(base.layers):
            zeros = torch.zeros(TESTER_BATCH, 32)
            layer_output, _, _ = layer(layer_input, zeros, zeros, None)
            torch.testing.assert_close(hidden[index + 1], layer_output, atol=1e-6, rtol=1e-6)
            layer_input = layer_output
    if model_class is MTLSTMModel:
        assert torch.equal(hidden[-1], out.last_hidden_state)
    else:
        torch.testing.assert_close(out.logits, model.lm_head(hidden[-1]))
    # Off by default and when asked off.
    assert model(ids, output_hidden_states=False).hidden_states is None


def test_hidden_states_retain_their_gradient():
    """transformers' ``test_retain_grad_hidden_states_attentions`` (hidden states only): the
    gradient kept on ``hidden_states[0]`` equals the gradient with respect to the same
    embeddings fed as a leaf through ``inputs_embeds`` (oracle)."""
    model = common_model().train()
    ids, mask = common_inputs()
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    for hidden in out.hidden_states:
        hidden.retain_grad()
    out.logits.sum().backward()
    assert all(hidden.grad is not None for hidden in out.hidden_states)

    leaf = model.model.embeddings(ids).detach().requires_grad_(True)
    model(inputs_embeds=leaf, attention_mask=mask).logits.sum().backward()
    kept = mask.bool()
    torch.testing.assert_close(out.hidden_states[0].grad[kept], leaf.grad[kept])


@pytest.mark.parametrize(
    "model_class, with_labels", [(MTLSTMModel, False), (MTLSTMForCausalLM, False), (MTLSTMForCausalLM, True)]
)
@pytest.mark.parametrize("with_hidden", [False, True])
def test_tuple_output_equals_the_dict_output_as_tuple(model_class, with_labels, with_hidden):
    model = common_model(model_class)
    ids, mask = common_inputs()
    kwargs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=with_hidden)
    if with_labels:
        kwargs["labels"] = ids
    with torch.no_grad():
        as_tuple = model(**kwargs, return_dict=False)
        as_dict = model(**kwargs, return_dict=True).to_tuple()
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict)

    def check(a, b):
        assert type(a) is type(b)
        if isinstance(a, MTLSTMState):
            check(tuple(a.hidden) + tuple(a.cell), tuple(b.hidden) + tuple(b.cell))
        elif isinstance(a, (tuple, list)):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                check(x, y)
        else:
            assert torch.equal(a, b)

    check(as_tuple, as_dict)
    # config.return_dict=False gives the tuple too.
    model.config.return_dict = False
    with torch.no_grad():
        check(model(**kwargs), as_dict)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_inputs_embeds_match_input_ids(model_class):
    model = common_model(model_class)
    ids, mask = common_inputs()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
        assert torch.equal(
            _main_output(model, input_ids=ids, attention_mask=mask),
            _main_output(model, inputs_embeds=embeds, attention_mask=mask),
        )


def test_labels_loss_is_the_shifted_cross_entropy_as_for_gpt2():
    """Token ``t`` predicts ``labels[t + 1]``, ``-100`` is ignored (oracle: ``F.cross_entropy``
    written out; GPT-2 under the same labels follows the same convention)."""
    ids, _ = common_inputs()
    labels = ids.clone()
    labels[:, 2] = -100
    labels[0, :] = -100
    for model in (common_model(), _small_gpt2()):
        with torch.no_grad():
            out = model(ids, labels=labels)
        manual = F.cross_entropy(
            out.logits[:, :-1].reshape(-1, TESTER_VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        torch.testing.assert_close(out.loss, manual)


# --- training -----------------------------------------------------------------------------


def test_training_gives_every_trainable_parameter_a_gradient_and_lowers_the_loss():
    model = common_model().train()
    ids, mask = common_inputs()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        losses.append(loss.item())
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name
        optimizer.step()
    assert losses[2] < losses[0]
    # The frozen timescale biases are buffers: untouched by training.
    reference = common_model()
    for layer, fresh in zip(model.model.layers, reference.model.layers):
        assert torch.equal(layer.gate_biases.forget_gate, fresh.gate_biases.forget_gate)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_gradient_checkpointing_is_refused_clearly(model_class):
    model = common_model(model_class)
    assert model_class.supports_gradient_checkpointing is False
    with pytest.raises(ValueError, match="does not support"):
        model.gradient_checkpointing_enable()
    assert not model.is_gradient_checkpointing


def test_enable_input_require_grads_reaches_a_frozen_model():
    """What PEFT relies on: with every weight frozen the output still requires a gradient."""
    model = common_model()
    model.requires_grad_(False)
    ids, _ = common_inputs()
    assert not model(ids).logits.requires_grad
    model.enable_input_require_grads()
    logits = model(ids).logits
    assert logits.requires_grad
    model.disable_input_require_grads()
    assert not model(ids).logits.requires_grad


# --- embeddings ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_get_and_set_input_and_output_embeddings(model_class):
    model = common_model(model_class)
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, torch.nn.Embedding) and embedding.weight.shape == (TESTER_VOCAB, TESTER_EMBED)
    if model_class is MTLSTMModel:
        assert model.get_output_embeddings() is None
    else:
        assert isinstance(model.get_output_embeddings(), torch.nn.Linear)
        assert model.get_output_embeddings().weight is embedding.weight
    replacement = torch.nn.Embedding(TESTER_VOCAB, TESTER_EMBED)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement
    ids, _ = common_inputs()
    out = model(ids, output_hidden_states=True)
    assert torch.equal(out.hidden_states[0], replacement(ids))  # the forward uses the new module
    if model_class is MTLSTMForCausalLM:
        head = torch.nn.Linear(32, TESTER_VOCAB)
        model.set_output_embeddings(head)
        assert model.get_output_embeddings() is head
        torch.testing.assert_close(model(ids, output_hidden_states=True).logits, head(out.hidden_states[-1]))


@pytest.mark.parametrize("tied", [True, False])
def test_resize_token_embeddings_both_directions_as_gpt2_does(tied):
    """Grow by 10, shrink by 25, pad to a multiple of 8: the same vocabulary sizes as GPT-2 under
    the same calls, old rows kept (weight and decoder bias), tied weights stay one tensor,
    untied ones stay two, and a loss on the new vocabulary runs."""
    model = common_model(tie_word_embeddings=tied)
    gpt2 = _small_gpt2(tie_word_embeddings=tied)
    old_embedding = model.model.embeddings.weight.detach().clone()
    old_head = model.lm_head.weight.detach().clone()
    old_bias = model.lm_head.bias.detach().clone()
    surviving = TESTER_VOCAB
    for size, multiple in ((TESTER_VOCAB + 10, None), (TESTER_VOCAB - 25, None), (TESTER_VOCAB + 3, 8)):
        result = model.resize_token_embeddings(size, pad_to_multiple_of=multiple)
        gpt2.resize_token_embeddings(size, pad_to_multiple_of=multiple)
        new_size = gpt2.config.vocab_size
        assert model.config.vocab_size == new_size == result.weight.shape[0]
        assert model.model.embeddings.weight.shape == (new_size, TESTER_EMBED)
        assert model.lm_head.weight.shape == (new_size, 32) and model.lm_head.bias.shape == (new_size,)
        assert model.lm_head.out_features == new_size
        kept = surviving = min(surviving, new_size)  # rows cut by the shrink do not come back
        assert torch.equal(model.model.embeddings.weight[:kept], old_embedding[:kept])
        assert torch.equal(model.lm_head.weight[:kept], (old_embedding if tied else old_head)[:kept])
        assert torch.equal(model.lm_head.bias[:kept], old_bias[:kept])
        assert (model.lm_head.weight is model.model.embeddings.weight) == tied
        ids = torch.randint(0, new_size, (2, 5))
        out = model(ids, labels=ids)
        assert out.logits.shape == (2, 5, new_size) and torch.isfinite(out.loss)
        out.loss.backward()
        # transformers' resize keeps the Parameter objects (swapping their .data): a gradient or a
        # graph of the old shape must not outlive it (the same holds for GPT-2).
        model.zero_grad(set_to_none=True)
        del out


def test_tied_weights_are_one_tensor_after_construction_tie_weights_and_reload(tmp_path):
    model = common_model()
    for key, target in MTLSTMForCausalLM._tied_weights_keys.items():
        assert key in model.state_dict() and target in model.state_dict()
    assert model.lm_head.weight is model.model.embeddings.weight
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    model.tie_weights()
    assert model.lm_head.weight is model.model.embeddings.weight
    with torch.no_grad():
        model.model.embeddings.weight[3] += 1.0
    assert torch.equal(model.lm_head.weight[3], model.model.embeddings.weight[3])
    model.save_pretrained(tmp_path)
    reloaded = MTLSTMForCausalLM.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight is reloaded.model.embeddings.weight
    assert torch.equal(reloaded.lm_head.weight, model.model.embeddings.weight)


# --- misc ---------------------------------------------------------------------------------


def test_num_parameters_counts_each_tensor_once_and_no_buffers():
    model = common_model()
    unique = {id(p): p for p in model.parameters()}.values()
    assert model.num_parameters() == sum(p.numel() for p in unique)
    assert model.num_parameters() < 1_000_000  # transformers' test_model_is_small
    buffers = sum(b.numel() for b in model.buffers())
    assert (
        buffers > 0
        and model.num_parameters()
        == sum(t.numel() for t in model.state_dict().values()) - buffers - TESTER_VOCAB * TESTER_EMBED
    )
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - TESTER_VOCAB * TESTER_EMBED
    model.lm_head.bias.requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == model.num_parameters() - TESTER_VOCAB


def test_can_generate_and_auto_class():
    assert MTLSTMForCausalLM.can_generate() and not MTLSTMModel.can_generate()
    assert issubclass(MTLSTMForCausalLM, GenerationMixin) and not issubclass(MTLSTMModel, GenerationMixin)
    assert type(AutoModelForCausalLM.from_config(common_config())) is MTLSTMForCausalLM
    model = common_model()
    assert model.get_decoder() is model.model and model.base_model is model.model


# --- config (transformers' ConfigTester) ----------------------------------------------------

CONFIG_INPUTS = dict(vocab_size=TESTER_VOCAB, embedding_size=TESTER_EMBED, hidden_sizes=[32, 32], n_embd=37)


def test_config_common_properties_read_but_refuse_writes_with_not_implemented():
    """``hidden_size``, ``num_hidden_layers``, ``vocab_size`` exist; the two derived ones refuse to
    be set with ``NotImplementedError`` (transformers' accepted answer for read-only common
    properties, also an ``AttributeError``), in a constructor keyword as well."""
    config = MTLSTMConfig(**CONFIG_INPUTS)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (32, 2, TESTER_VOCAB)
    for name in ("hidden_size", "num_hidden_layers"):
        with pytest.raises(NotImplementedError, match="hidden_sizes"):
            setattr(config, name, 1)
        with pytest.raises(AttributeError):
            setattr(config, name, 1)
        with pytest.raises(NotImplementedError, match="hidden_sizes"):
            MTLSTMConfig(**{name: 1})
    config.vocab_size = 2
    assert config.vocab_size == 2 and MTLSTMConfig(vocab_size=2).vocab_size == 2


def test_config_json_string_file_and_pretrained_round_trips(tmp_path):
    config = MTLSTMConfig(**CONFIG_INPUTS)
    as_json = json.loads(config.to_json_string())
    for key, value in CONFIG_INPUTS.items():
        assert as_json[key] == value  # unknown keywords (n_embd) are kept, as PretrainedConfig does
    config.to_json_file(tmp_path / "config.json")
    assert MTLSTMConfig.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "saved")
    assert MTLSTMConfig.from_pretrained(tmp_path / "saved").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "outer" / "sub")
    assert MTLSTMConfig.from_pretrained(tmp_path / "outer", subfolder="sub").to_dict() == config.to_dict()
    with pytest.raises(OSError):
        MTLSTMConfig.from_pretrained(tmp_path / "missing")
    # Keywords to from_pretrained override saved values.
    assert MTLSTMConfig.from_pretrained(tmp_path / "saved", vocab_size=20).vocab_size == 20


def test_config_num_labels_and_construction_without_arguments():
    config = MTLSTMConfig(**CONFIG_INPUTS, num_labels=5)
    assert len(config.id2label) == len(config.label2id) == 5
    config.num_labels = 3
    assert len(config.id2label) == len(config.label2id) == 3
    assert MTLSTMConfig() is not None and MTLSTMConfig.sub_configs == {}


def test_config_common_keywords_are_set_as_gpt2_sets_them():
    """transformers' ``check_config_arguments_init``: the keywords every ``PretrainedConfig`` takes
    land as they do in a ``GPT2Config`` given the same keywords (oracle)."""
    common = {
        "return_dict": False,
        "output_hidden_states": True,
        "output_attentions": True,
        "dtype": "float16",
        "tie_word_embeddings": False,
        "is_decoder": True,
        "add_cross_attention": True,
        "architectures": ["BertModel"],
        "finetuning_task": "translation",
        "id2label": {0: "label"},
        "label2id": {"label": "0"},
        "tokenizer_class": "BertTokenizerFast",
        "prefix": "prefix",
        "bos_token_id": 6,
        "pad_token_id": 7,
        "eos_token_id": 8,
        "sep_token_id": 9,
        "decoder_start_token_id": 10,
        "task_specific_params": {"translation": "some_params"},
        "problem_type": "regression",
    }
    ours = MTLSTMConfig(**copy.deepcopy(common))
    gpt2 = GPT2Config(**copy.deepcopy(common))
    for key in common:
        assert getattr(ours, key, "<unset>") == getattr(gpt2, key, "<unset>"), key
    assert ours.dtype == torch.float16 and isinstance(ours, PretrainedConfig)
