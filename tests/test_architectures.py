"""Timescale analyses of other recurrent models (``mtlstm_hf.analysis.architectures``): one adapter per
transformers architecture, each tested on a small randomly initialised model of its config.

Oracles:

* retentions: the per-step retention of every unit equals what the architecture's own reference
  recurrence does to its state, read off by running that recurrence (transformers' one-token path:
  ``mamba_selective_state_update``, ``mamba2_selective_state_update``, ``rwkv_linear_attention_cpu``,
  ``RecurrentGemmaRglru._rnn_scan``, the xLSTM ``mlstm_backend``) twice from two states that differ by a
  known amount: the state difference shrinks by exactly the retention (to 1e-6);
* windows: a stream fed in windows (state carried by the adapter) gives the logits of one forward over
  the whole sequence (to 1e-5), including Mamba, whose transformers implementation drops the SSM state
  on multi-token calls;
* initialisation: the estimated timescales of a fresh model are those its ``_init_weights`` formula
  implies, with the input-dependent part of the retention zeroed where it has one (exact to 1e-9), and
  their distribution is the one of the formula's random draw (Kolmogorov-Smirnov);
* ablation: the logits under ``adapter.ablate`` equal, bit for bit, those of the model whose output
  projection has the channels' weight columns zeroed by hand; the batched routing pass equals one
  evaluation per chunk;
* end to end: ``mtlstm-analyze`` and ``analyze_checkpoint`` on a saved model with its own tokenizer
  write the timescale, ablation and mutual-information sections and skip the rest with the reason.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from architecture_models import ARCHITECTURES, build, corpus_dir, streams, tokenizer  # noqa: F401 (fixtures)

from mtlstm_hf.analysis.architectures import adapter_for, supported_architectures
from mtlstm_hf.analysis.architectures.registry import ARCHITECTURE_REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_installed_architecture_is_registered_and_tested():
    assert set(ARCHITECTURE_REGISTRY) == {"mtlstm", *ARCHITECTURES}
    for name in ARCHITECTURES:
        assert hasattr(transformers, ARCHITECTURE_REGISTRY[name].model_class)
        assert f"{ARCHITECTURE_REGISTRY[name].model_class} ({name})" in supported_architectures()


# ---------------------------------------------------------------------------
# Retentions: the reference recurrence's own state update (a state difference shrinks by a_t)
# ---------------------------------------------------------------------------


def _reference_retentions(architecture, model, ids, monkeypatch):
    """``{layer index: (B, T - 1, U) float64}``: the retention of every unit at steps 1..T-1, read off
    transformers' one-token path by running its recurrence from the state ``s`` and from ``s + d``."""
    found: dict[int, list[torch.Tensor]] = {}
    if architecture == "mamba":
        from transformers.models.mamba import modeling_mamba as module

        original = module.mamba_selective_state_update
        layer_of = {}

        def spy(state, *args, **kwargs):
            base, moved = state.clone(), state.clone() + 1.0
            original(base, *args, **kwargs)
            original(moved, *args, **kwargs)
            found.setdefault(layer_of["current"], []).append((moved - base).double().reshape(state.shape[0], -1))
            return original(state, *args, **kwargs)

        monkeypatch.setattr(module, "mamba_selective_state_update", spy)
        hooks = [
            block.mixer.register_forward_pre_hook(lambda m, a, i=i: layer_of.update(current=i))
            for i, block in enumerate(model.backbone.layers)
        ]
    elif architecture == "mamba2":
        from transformers.models.mamba2 import modeling_mamba2 as module

        original = module.mamba2_selective_state_update
        layer_of = {}

        def spy(state, *args, **kwargs):
            base, moved = state.clone(), state.clone() + 1.0
            original(base, *args, **kwargs)
            original(moved, *args, **kwargs)
            difference = (moved - base).double()  # (B, H, P, N): one decay per head
            assert torch.allclose(difference, difference[..., :1, :1].expand_as(difference), rtol=0, atol=1e-6)
            found.setdefault(layer_of["current"], []).append(difference[..., 0, 0])
            return original(state, *args, **kwargs)

        monkeypatch.setattr(module, "mamba2_selective_state_update", spy)
        hooks = [
            block.mixer.register_forward_pre_hook(lambda m, a, i=i: layer_of.update(current=i))
            for i, block in enumerate(model.backbone.layers)
        ]
    elif architecture == "rwkv":
        from transformers.models.rwkv import modeling_rwkv as module

        original = module.rwkv_linear_attention_cpu
        layer_of = {}

        def spy(time_decay, time_first, key, value, state=None, return_state=False):
            if state is not None:  # the numerator in log-space form: num * exp(max); moved by exp(max)
                num, den, top = state
                _, (num_a, _, top_a) = original(time_decay, time_first, key, value, [num, den, top], True)
                _, (num_b, _, top_b) = original(time_decay, time_first, key, value, [num + 1.0, den, top], True)
                real_a, real_b = num_a.double() * top_a.double().exp(), num_b.double() * top_b.double().exp()
                found.setdefault(layer_of["current"], []).append((real_b - real_a) / top.double().exp())
            return original(time_decay, time_first, key, value, state=state, return_state=return_state)

        monkeypatch.setattr(module, "rwkv_linear_attention_cpu", spy)
        hooks = [
            block.attention.register_forward_pre_hook(lambda m, a, i=i: layer_of.update(current=i))
            for i, block in enumerate(model.rwkv.blocks)
        ]
    elif architecture == "recurrent_gemma":
        hooks = []
        for index, layer in enumerate(model.model.layers):
            rg_lru = getattr(layer.temporal_block, "rg_lru", None)
            if rg_lru is None:
                continue
            original = rg_lru._rnn_scan

            def spy(hidden_states, recurrent_gate, reset, recurrent_states, index=index, original=original):
                if hidden_states.shape[1] == 1 and not bool(reset.any()):
                    _, base = original(hidden_states, recurrent_gate, reset, recurrent_states.clone())
                    _, moved = original(hidden_states, recurrent_gate, reset, recurrent_states.clone() + 1.0)
                    found.setdefault(index, []).append((moved - base).double())
                return original(hidden_states, recurrent_gate, reset, recurrent_states)

            monkeypatch.setattr(rg_lru, "_rnn_scan", spy)
    elif architecture == "xlstm":
        hooks = []
        for index, block in enumerate(model.backbone.blocks):
            backend = block.mlstm_layer.mlstm_backend
            busy = []

            def spy(module, args, kwargs, output, index=index, busy=busy):
                if busy or kwargs.get("c_initial") is None:
                    return
                busy.append(1)
                moved = dict(kwargs, c_initial=kwargs["c_initial"] + 1.0)
                _, (c_base, _, m_new) = output
                _, (c_moved, _, _) = module(**moved)
                busy.clear()
                # The stored C is stabilised by exp(-m): the real state moved by exp(m_old), now exp(m_new) times the stored.
                difference = (c_moved.double() - c_base.double()) * m_new.double()[..., None].exp()
                difference = difference / kwargs["m_initial"].double()[..., None].exp()
                found.setdefault(index, []).append(difference[..., 0, 0])

            hooks.append(backend.register_forward_hook(spy, with_kwargs=True))
    with torch.no_grad():
        if architecture == "rwkv":
            output = model(ids[:, :1], use_cache=True)
            state = output.state
            for t in range(1, ids.shape[1]):
                state = model(ids[:, t : t + 1], state=state, use_cache=True).state
        elif architecture == "recurrent_gemma":
            model(ids[:, :1], use_cache=True)  # sets up the module states; then one token at a time
            cache = transformers.DynamicCache(config=model.config)
            model._setup_cache(model.config, ids.shape[0], ids.device, torch.float32)
            for t in range(ids.shape[1]):
                model(ids[:, t : t + 1], position_ids=torch.tensor([[t]]), cache=cache, use_cache=True)
        else:
            cache = model(ids[:, :1], use_cache=True).cache
            for t in range(1, ids.shape[1]):
                cache = model(ids[:, t : t + 1], cache=cache, use_cache=True).cache
    for hook in hooks:
        hook.remove()
    return {index: torch.stack(values, dim=1) for index, values in found.items()}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_retentions_equal_the_reference_recurrence(architecture, monkeypatch):
    model = build(architecture, vocab_size=40)
    adapter = adapter_for(model)
    rows = 1 if architecture == "rwkv" else 2  # transformers' one-token RWKV call takes one row
    ids = torch.randint(0, 40, (rows, 12), generator=torch.Generator().manual_seed(1))
    reference = _reference_retentions(architecture, model, ids, monkeypatch)
    monkeypatch.undo()
    # The adapter walks windows of 5 tokens (multi-token calls) with the state carried.
    pieces, state = [], None
    for start in range(0, 12, 5):
        retention, state = adapter.window_retentions(ids[:, start : start + 5], state)
        pieces.append(retention)
    adapted = [torch.cat(parts, dim=1) for parts in zip(*pieces)]
    layers = adapter.layers()
    assert sorted(reference) == [layer.index for layer in layers]
    for layer, values in zip(layers, adapted):
        assert values.shape == (rows, 12, layer.units) and values.dtype == torch.float64
        expected = reference[layer.index][:, -11:]  # steps 1..11 (and step 0 where the first call has a state)
        assert expected.shape == values[:, 1:].shape
        torch.testing.assert_close(values[:, 1:], expected, rtol=0, atol=1e-6)
        assert bool(((values > 0) & (values < 1)).all())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_windows_carry_the_state_as_one_forward(architecture):
    model = build(architecture, vocab_size=40)
    adapter = adapter_for(model)
    ids = torch.randint(0, 40, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids).logits
        pieces, state = [], None
        for start, stop in ((0, 7), (7, 8), (8, 20), (20, 30)):  # a one-token window among them
            logits, state = adapter._forward(ids[:, start:stop], state, logits=True)
            pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)
    whole, _ = adapter.window_retentions(ids)
    parts = [adapter.window_retentions(ids[:, :13])]
    parts.append(adapter.window_retentions(ids[:, 13:], parts[0][1]))
    for layer, values in enumerate(whole):
        torch.testing.assert_close(
            torch.cat([parts[0][0][layer], parts[1][0][layer]], dim=1), values, rtol=0, atol=1e-6
        )


def test_mamba_state_fix_is_needed_and_probed():
    """transformers drops Mamba's SSM state on multi-token calls: without the adapter the windows differ."""
    model = build("mamba", vocab_size=40)
    adapter = adapter_for(model)
    assert adapter.drops_state()
    ids = torch.randint(0, 40, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :10], use_cache=True)
        second = model(ids[:, 10:], cache=first.cache, use_cache=True).logits
    assert (second - full[:, 10:]).abs().max() > 1e-4


# ---------------------------------------------------------------------------
# At initialisation: the timescales the init formula implies
# ---------------------------------------------------------------------------


def _uniform_ks(values, low, high):
    from scipy import stats

    return stats.kstest(values, stats.uniform(loc=low, scale=high - low).cdf).pvalue


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_timescales_at_initialisation_follow_the_init_formula(architecture, streams):
    stream, _ = streams
    if architecture == "mamba":
        model = build(architecture, 40, hidden_size=32, intermediate_size=256, state_size=16)
        for block in model.backbone.layers:  # dt's input part to 0: dt = softplus(dt_proj.bias)
            torch.nn.init.zeros_(block.mixer.dt_proj.weight)
    elif architecture == "mamba2":
        model = build(architecture, 40, hidden_size=64, num_heads=64, head_dim=2, n_groups=1)
        for block in model.backbone.layers:  # the dt rows of in_proj to 0: dt = softplus(dt_bias)
            torch.nn.init.zeros_(block.mixer.in_proj.weight[-block.mixer.num_heads :])
    elif architecture == "recurrent_gemma":
        model = build(architecture, 40, hidden_size=64, lru_width=256)
        for layer in model.model.layers:  # the recurrence gate's input part to 0: r_t = sigmoid(0) = 1/2
            if hasattr(layer.temporal_block, "rg_lru"):
                torch.nn.init.zeros_(layer.temporal_block.rg_lru.recurrent_gate_weight)
    else:
        model = build(
            architecture, 40, **({"hidden_size": 64, "attention_hidden_size": 64} if architecture == "rwkv" else {})
        )
    adapter = adapter_for(model)
    estimate = adapter.estimate_timescales(stream, window=23)
    assert estimate.num_tokens == stream.numel()
    for entry in estimate.layers:
        found = entry.timescales
        assert bool(torch.isfinite(found).all())
        if architecture == "mamba":
            mixer = model.backbone.layers[entry.layer_index].mixer
            dt = torch.nn.functional.softplus(mixer.dt_proj.bias.detach().double())
            expected = 1.0 / (dt[:, None] * torch.arange(1, 17, dtype=torch.float64))  # A_n = -n
            # dt ~ exp(U(ln 1e-3, ln 1e-1)): T * n = 1/dt, log-uniform on [10, 1000]
            assert _uniform_ks(torch.log(1.0 / dt).detach().numpy(), math.log(10), math.log(1000)) > 1e-3
            assert 0.625 * 0.999 <= float(found.min()) and float(found.max()) <= 1000 * 1.001
        elif architecture == "mamba2":
            mixer = model.backbone.layers[entry.layer_index].mixer
            dt = torch.nn.functional.softplus(mixer.dt_bias.detach().double())
            expected = 1.0 / (dt * torch.arange(1, 65, dtype=torch.float64))  # A_h = -h (transformers' init)
            assert _uniform_ks(torch.log(1.0 / dt).detach().numpy(), math.log(10), math.log(1000)) > 1e-3
        elif architecture == "rwkv":
            channels, layers = 64, 2
            ratio = entry.layer_index / (layers - 1)
            decay = torch.tensor(
                [-5 + 8 * (c / (channels - 1)) ** (0.7 + 1.3 * ratio) for c in range(channels)], dtype=torch.float64
            )
            expected = torch.exp(-decay)  # T = -1 / ln exp(-exp(w)) = exp(-w)
            assert math.isclose(float(found.min()), math.exp(-3), rel_tol=1e-6)
            assert math.isclose(float(found.max()), math.exp(5), rel_tol=1e-6)
        elif architecture == "recurrent_gemma":
            rg_lru = model.model.layers[entry.layer_index].temporal_block.rg_lru
            a0 = torch.sigmoid(-rg_lru.recurrent_param.detach().double())  # = sqrt(u), u ~ U(0.81, 0.998)
            expected = -1.0 / (4.0 * torch.log(a0))  # a_t = a0^(8 r_t), r_t = 1/2
            u = torch.exp(-1.0 / (2.0 * found))
            assert _uniform_ks(u.numpy(), 0.9**2, 0.999**2) > 1e-3
            assert float(found.min()) >= 2.37 and float(found.max()) <= 250.0
        else:  # xlstm: gate weights 0, forget bias linspace(3, 6), soft-capped at 15
            bias = torch.linspace(3.0, 6.0, 4, dtype=torch.float64)
            expected = -1.0 / torch.log(torch.sigmoid(15.0 * torch.tanh(bias / 15.0)))
        # Where the formula's value is stored as a float32 parameter (A_log = log(n) of Mamba and Mamba2,
        # RWKV's time_decay), the estimate is exact to that rounding (1e-6); elsewhere to float64's.
        tolerance = 1e-6 if architecture in ("mamba", "mamba2", "rwkv") else 1e-9
        torch.testing.assert_close(found, expected.reshape(-1), rtol=tolerance, atol=0)


# ---------------------------------------------------------------------------
# Ablation: zeroing channels by hand
# ---------------------------------------------------------------------------


def _zero_columns_by_hand(architecture, model, layer, channels, width):
    """Zero the output projection's weight columns of the channels (a copy of the model)."""
    import copy

    model = copy.deepcopy(model)
    projection = {
        "mamba": lambda: model.backbone.layers[layer].mixer.out_proj,
        "mamba2": lambda: model.backbone.layers[layer].mixer.out_proj,
        "rwkv": lambda: model.rwkv.blocks[layer].attention.output,
        "recurrent_gemma": lambda: model.model.layers[layer].temporal_block.linear_out,
        "xlstm": lambda: model.backbone.blocks[layer].mlstm_layer.out_proj,
    }[architecture]()
    columns = torch.cat([torch.arange(c * width, (c + 1) * width) for c in channels])
    with torch.no_grad():
        projection.weight[:, columns] = 0.0
    return model


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_ablation_equals_zeroing_the_channels_by_hand(architecture):
    model = build(architecture, vocab_size=40)
    adapter = adapter_for(model)
    layer = adapter.layers()[-1]
    channels = [0, 2, layer.channels - 1]
    ids = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(4))
    by_hand = _zero_columns_by_hand(architecture, model, layer.index, channels, layer.channel_width)
    with torch.no_grad():
        intact = model(ids).logits
        with adapter.ablate(layer.index, channels):
            ablated = model(ids).logits
        expected = by_hand(ids).logits
    assert torch.equal(ablated, expected)
    assert not torch.equal(ablated, intact)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, intact)  # the hooks are gone
    # The layer's own retentions do not depend on what it passes on.
    plain, _ = adapter.window_retentions(ids, layers=[layer.index])
    with adapter.ablate(layer.index, channels):
        kept, _ = adapter.window_retentions(ids, layers=[layer.index])
    torch.testing.assert_close(kept[0], plain[0], rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_batched_routing_pass_equals_one_evaluation_per_chunk(architecture, streams):
    stream = streams[0][:120]
    model = build(architecture, vocab_size=40)
    adapter = adapter_for(model)
    layer = adapter.layers()[0]
    chunks = [[0, 1], list(range(2, layer.channels))]
    batched = adapter.ablation_log_probs(stream, layer.index, chunks, batch_size=2, window=17)
    assert batched.shape == (3, 2 * (120 // 2 - 1))

    def one_evaluation():
        rows = stream[: 2 * 60].reshape(2, 60)
        with torch.no_grad():
            logp = torch.log_softmax(model(rows[:, :-1]).logits.float(), dim=-1)
        return logp.gather(-1, rows[:, 1:, None])[..., 0].reshape(-1)

    torch.testing.assert_close(batched[0], one_evaluation(), rtol=0, atol=2e-5)
    for row, chunk in enumerate(chunks, start=1):
        with adapter.ablate(layer.index, chunk):
            torch.testing.assert_close(batched[row], one_evaluation(), rtol=0, atol=2e-5)


def test_xlstm_widths_the_cache_cannot_hold_are_refused():
    with pytest.raises(ValueError, match=r"hidden_size \* qk_dim_factor.*multiples of 64"):
        adapter_for(build("xlstm", vocab_size=40, hidden_size=64))


# ---------------------------------------------------------------------------
# MTLSTM: the first adapter, the same numbers as the code before the adapters
# ---------------------------------------------------------------------------


def test_the_mtlstm_adapter_gives_the_numbers_of_the_mtlstm_code(streams):
    from conftest import tiny_model

    from mtlstm_hf.analysis import UnitAblation, ablation_log_probs, estimate_timescales
    from mtlstm_hf.analysis.traces import forward_traces

    model = tiny_model().eval()
    adapter = adapter_for(model)
    assert adapter.native and adapter.not_applicable("state_gradients") is None
    stream = streams[0] % model.config.vocab_size
    ours, theirs = adapter.estimate_timescales(stream, 2, 17), estimate_timescales(model, stream, 2, 17)
    for a, b in zip(ours.layers, theirs.layers):
        assert torch.equal(a.timescales, b.timescales) and torch.equal(a.mean_forget_gate, b.mean_forget_gate)
    ids = stream[:20].reshape(2, 10)
    gates, _ = adapter.window_retentions(ids)
    traced = forward_traces(model, ids).layers
    for values, trace in zip(gates, traced):
        assert torch.equal(values, trace["forget_gate"].double())
    chunks = [[0, 1], [2, 3, 4]]
    layer = adapter.layers()[-1].index
    assert torch.equal(
        adapter.ablation_log_probs(stream, layer, chunks, batch_size=2, window=17),
        ablation_log_probs(model, stream, layer, chunks, batch_size=2, window=17),
    )
    assert isinstance(adapter.ablate(layer, [0]), UnitAblation)


class MyMambaConfig(transformers.MambaConfig):  # a new architecture, here one with Mamba's layout under another name
    model_type = "my_mamba"


class MyMambaForCausalLM(transformers.MambaForCausalLM):
    config_class = MyMambaConfig


def test_a_new_architecture_is_one_module_and_one_registry_entry():
    from mtlstm_hf.analysis.architectures import Architecture, register_architecture, unregister_architecture
    from mtlstm_hf.analysis.architectures.mamba import MambaAdapter

    class MyMambaAdapter(MambaAdapter):  # the module the new architecture brings
        architecture = "my_mamba"
        display_name = "My Mamba"

    MyMambaAdapter.__module__ = __name__
    globals()["MyMambaAdapter"] = MyMambaAdapter
    entry = Architecture("my_mamba", "MyMambaForCausalLM", f"{__name__}:MyMambaAdapter", "My Mamba", __name__)
    model = MyMambaForCausalLM(MyMambaConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, state_size=4)).eval()
    with pytest.raises(ValueError, match="model_type 'my_mamba'.*supported architectures"):
        adapter_for(model)
    register_architecture(entry)
    try:
        assert "MyMambaForCausalLM (my_mamba)" in supported_architectures()
        adapter = adapter_for(model)
        assert isinstance(adapter, MyMambaAdapter) and adapter.layers()[0].units == 16 * 4
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(entry)
    finally:
        assert unregister_architecture("my_mamba") is entry
    with pytest.raises(ValueError, match="'package.module:ClassName'"):
        register_architecture(Architecture("x", "X", "no_colon", "X"))
    with pytest.raises(KeyError, match="no architecture 'x'"):
        unregister_architecture("x")


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        (
            [0, 10_000],
            r"layer 1: channel indices must lie in \[0, \d+\) \(the layer's channels\), got values from 0 to 10000",
        ),
        ([0.5], r"layer 1: channel indices must be integers, got dtype torch.float"),
        (torch.ones(3, dtype=torch.bool), r"layer 1: a boolean channel mask must have shape \(\d+,\), got \(3,\)"),
    ],
)
def test_bad_channels_are_named_like_the_mtlstms_bad_units(channels, message):
    """The one index check of the ablations (ablation.checked_indices) for an architecture's
    channels; an MTLSTM's units get the same rule with its words (layers numbered from 1 in both)."""
    from conftest import tiny_model

    from mtlstm_hf.analysis.ablation import ablate_units
    from mtlstm_hf.analysis.architectures import adapter_for

    adapter = adapter_for(build("mamba", vocab_size=40))
    with pytest.raises(ValueError, match=message):
        adapter.ablate(0, channels)
    with pytest.raises(ValueError, match=r"layer 1: unit indices must lie in \[0, 10\) \(the layer's hidden size\)"):
        ablate_units(tiny_model(), {0: [0, 10]})
