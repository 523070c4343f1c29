"""Tests of mtlstm_hf.evaluation: frequency bins, block bootstrap, evaluate metric, stream scoring."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from mtlstm_hf.evaluation import (
    DEFAULT_BIN_EDGES,
    bin_labels,
    binned_perplexity,
    binned_perplexity_by_frequency,
    block_bootstrap,
    format_p_value,
    frequency_bin_of_token,
    frequency_binned_perplexity_metric_path,
    paired_block_bootstrap,
    target_positions,
    token_counts,
    token_log_probs,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO_ROOT / "mtlstm_hf" / "evaluation"


# --------------------------------------------------------------------------- frequency bins


def test_default_labels_and_edges():
    assert DEFAULT_BIN_EDGES == (100, 1_000, 10_000)
    assert bin_labels() == [">=10K", "1K-10K", "100-1K", "<100"]
    # Any order accepted; labels always most frequent first.
    assert bin_labels([1_000_000, 50, 2_500]) == [">=1M", "2.5K-1M", "50-2.5K", "<50"]


def test_bin_assignment_at_exact_edges():
    counts = torch.tensor([0, 1, 99, 100, 999, 1000, 9999, 10000, 10**7])
    expected = torch.tensor([3, 3, 3, 2, 2, 1, 1, 0, 0])  # lower edge inclusive, 0 = most frequent
    assert torch.equal(frequency_bin_of_token(counts), expected)
    # Same rule with custom edges (two edges -> three bins).
    assert torch.equal(frequency_bin_of_token(torch.tensor([4, 5, 49, 50]), (50, 5)), torch.tensor([2, 1, 1, 0]))


def test_token_counts_single_and_several_streams():
    train = torch.tensor([0, 1, 1, 3])
    test = torch.tensor([3, 3, 2])
    assert torch.equal(token_counts(train, 5), torch.tensor([1, 2, 0, 1, 0]))
    # The reference code's choice (train+valid+test) is a list of streams.
    assert torch.equal(token_counts([train, test], 5), torch.tensor([1, 2, 1, 3, 0]))


def test_binned_perplexity_hand_oracle():
    # ids 0..4 with counts at the edges: 10000 -> >=10K, 9999 and 1000 -> 1K-10K, 999 -> 100-1K, 5 -> <100
    bin_of_token = frequency_bin_of_token(torch.tensor([10000, 9999, 1000, 999, 5]))
    targets = torch.tensor([0, 0, 1, 2, 3, 4])
    log_probs = torch.tensor([-1.0, -3.0, -2.0, -4.0, -0.5, -6.0])
    out = binned_perplexity(log_probs, targets, bin_of_token)
    # Hand computation: per-bin mean NLL 4/2, 6/2, 0.5/1, 6/1; overall 16.5/6.
    assert out["n_tokens"] == 6 and out["nll_sum"] == pytest.approx(16.5)
    assert out["perplexity"] == pytest.approx(math.exp(16.5 / 6))
    expected = {
        ">=10K": (math.exp(2.0), 2, 4.0),
        "1K-10K": (math.exp(3.0), 2, 6.0),
        "100-1K": (math.exp(0.5), 1, 0.5),
        "<100": (math.exp(6.0), 1, 6.0),
    }
    assert list(out["bins"]) == list(expected)  # most frequent first
    for label, (ppl, n, nll) in expected.items():
        assert out["bins"][label]["perplexity"] == pytest.approx(ppl)
        assert out["bins"][label]["n_tokens"] == n
        assert out["bins"][label]["nll_sum"] == pytest.approx(nll)
    # The frequency form gives the same numbers.
    freqs = torch.tensor([10000, 10000, 9999, 1000, 999, 5])
    assert binned_perplexity_by_frequency(log_probs, freqs) == out


def test_binned_perplexity_empty_bin_is_nan():
    bin_of_token = frequency_bin_of_token(torch.tensor([20000, 20000]))
    out = binned_perplexity(torch.tensor([-1.0, -2.0]), torch.tensor([0, 1]), bin_of_token)
    assert out["bins"]["<100"]["n_tokens"] == 0 and math.isnan(out["bins"]["<100"]["perplexity"])
    assert out["bins"][">=10K"]["perplexity"] == pytest.approx(math.exp(1.5))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: binned_perplexity(torch.tensor([-1.0, -2.0]), torch.tensor([0]), torch.tensor([0, 0])), "token_ids"),
        (
            lambda: binned_perplexity(torch.tensor([]), torch.tensor([], dtype=torch.long), torch.tensor([0])),
            "token_log_probs is empty",
        ),
        (
            lambda: binned_perplexity(torch.tensor([0.5]), torch.tensor([0]), torch.tensor([0])),
            "token_log_probs must be log-probabilities",
        ),
        (
            lambda: binned_perplexity(torch.tensor([float("nan")]), torch.tensor([0]), torch.tensor([0])),
            "token_log_probs must be finite",
        ),
        (
            lambda: binned_perplexity(torch.tensor([-1.0]), torch.tensor([5]), torch.tensor([0, 1])),
            "token_ids must lie",
        ),
        (lambda: binned_perplexity(torch.tensor([-1.0]), torch.tensor([0]), torch.tensor([4])), "bin_of_token values"),
        (lambda: binned_perplexity_by_frequency(torch.tensor([-1.0]), torch.tensor([1, 2])), "token_frequencies"),
        (lambda: frequency_bin_of_token(torch.tensor([5]), (100, 100)), "edges must be distinct"),
        (lambda: frequency_bin_of_token(torch.tensor([5]), (0, 100)), "edges must be positive"),
        (lambda: bin_labels([100.5]), "edges must be a sequence of positive integers"),
        (lambda: bin_labels([]), "edges must contain"),
        (lambda: frequency_bin_of_token(torch.tensor([-1])), "counts must be non-negative"),
        (lambda: token_counts(torch.tensor([0, 7]), 5), r"streams\[0\]"),
        (lambda: token_counts([], 5), "streams"),
        (lambda: token_counts(torch.tensor([0]), 0), "vocab_size"),
    ],
)
def test_frequency_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- bootstrap


def _synthetic(n_tokens: int = 1234, vocab: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab, (n_tokens,), generator=g)
    # Counts chosen so that all four default bins are populated.
    counts = torch.tensor([20000, 5000, 500, 50, 3])[torch.arange(vocab) % 5]
    log_probs = -(0.5 + 6 * torch.rand(n_tokens, generator=g, dtype=torch.float64))
    return log_probs, ids, frequency_bin_of_token(counts)


def _naive_paired(lp_a, lp_b, token_bins, draws, block_size, n_bins):
    """Loop oracle: per resample, gather the drawn blocks and compute perplexities directly."""
    nll_a, nll_b, bins = (-lp_a).numpy(), (-lp_b).numpy(), token_bins.numpy()
    rows = []
    for row in draws.numpy():
        idx = np.concatenate([np.arange(s * block_size, (s + 1) * block_size) for s in row])
        row_out = []
        for k in list(range(n_bins)) + [None]:
            sel = idx if k is None else idx[bins[idx] == k]
            if sel.size == 0:
                row_out.append((np.nan, np.nan))
            else:
                row_out.append((math.exp(nll_a[sel].mean()), math.exp(nll_b[sel].mean())))
        rows.append(row_out)
    return np.array(rows)  # (R, n_bins + 1, 2)


def test_paired_bootstrap_matches_loop_oracle():
    lp_a, ids, bot = _synthetic(n_tokens=930)
    g = torch.Generator().manual_seed(7)
    lp_b = lp_a - 0.3 * torch.rand(lp_a.shape[0], generator=g, dtype=torch.float64)
    n_res, block = 300, 100
    out = paired_block_bootstrap(lp_a, lp_b, ids, bot, block_size=block, n_resamples=n_res, generator=11)
    # Same draws as the implementation: one randint(n_blocks, (R, n_blocks)) call from the seed
    # (true while R * n_blocks is below the chunk cap).
    draws = torch.randint(9, (n_res, 9), generator=torch.Generator().manual_seed(11))
    naive = _naive_paired(lp_a, lp_b, bot[ids], draws, block, 4)
    labels = bin_labels()
    for col, key in enumerate(labels + ["overall"]):
        stats = out["overall"] if key == "overall" else out["bins"][key]
        ppl_a, ppl_b = naive[:, col, 0], naive[:, col, 1]
        diff = ppl_b - ppl_a
        assert stats["a"]["mean"] == pytest.approx(np.nanmean(ppl_a), rel=1e-10)
        assert stats["b"]["std"] == pytest.approx(np.nanstd(ppl_b, ddof=1), rel=1e-8)
        assert stats["diff"]["mean"] == pytest.approx(np.nanmean(diff), rel=1e-8)
        assert stats["diff"]["ci_low"] == pytest.approx(np.nanquantile(diff, 0.025), rel=1e-8)
        assert stats["diff"]["ci_high"] == pytest.approx(np.nanquantile(diff, 0.975), rel=1e-8)
        valid = diff[~np.isnan(diff)]
        flips = min((valid <= 0).sum(), (valid >= 0).sum())
        assert stats["diff"]["p_value"] == pytest.approx(min(1.0, 2 * (1 + flips) / (valid.size + 1)), rel=1e-12)
        assert stats["diff"]["p_value_is_smallest"] == (flips == 0)
        shown = format_p_value(stats["diff"])
        assert shown == (f"<={stats['diff']['p_value']:.4f}" if flips == 0 else f"{stats['diff']['p_value']:.4f}")
    assert out["n_tokens"] == 900 and out["n_tail_tokens_dropped"] == 30 and out["n_blocks"] == 9


def test_identical_models_difference_zero_p_one():
    lp, ids, bot = _synthetic()
    out = paired_block_bootstrap(lp, lp.clone(), ids, bot, n_resamples=500, generator=0)
    for stats in [out["overall"], *out["bins"].values()]:
        d = stats["diff"]
        assert d["observed"] == 0 and d["mean"] == 0 and d["std"] == 0
        assert d["ci_low"] == 0 and d["ci_high"] == 0
        assert d["p_value"] == 1.0 and not d["p_value_is_smallest"] and format_p_value(d) == "1.0000"
        assert stats["a"]["mean"] == stats["b"]["mean"]


def test_uniformly_better_model_known_shift():
    lp_a, ids, bot = _synthetic()
    delta = 0.05  # B's NLL is lower by delta nats on every token -> ppl_B = ppl_A * exp(-delta) everywhere
    lp_b = lp_a + delta
    n_res = 1000
    out = paired_block_bootstrap(lp_a, lp_b, ids, bot, n_resamples=n_res, generator=3)
    factor = math.exp(-delta) - 1
    for stats in [out["overall"], *out["bins"].values()]:
        d = stats["diff"]
        assert d["observed"] == pytest.approx(stats["a"]["observed"] * factor, rel=1e-9)
        assert d["mean"] == pytest.approx(stats["a"]["mean"] * factor, rel=1e-9)
        assert d["ci_high"] < 0  # excludes 0
        assert d["p_value"] == pytest.approx(2 / (n_res + 1))  # smallest attainable: only a bound
        assert d["p_value_is_smallest"] and format_p_value(d) == f"<={2 / (n_res + 1):.4f}"
    # Overall: B's observed perplexity is exactly A's times exp(-delta).
    assert out["overall"]["b"]["observed"] == pytest.approx(out["overall"]["a"]["observed"] * math.exp(-delta))


def test_bootstrap_seeding_reproducible():
    lp, ids, bot = _synthetic()
    lp_b = lp - 0.01
    one = paired_block_bootstrap(lp, lp_b, ids, bot, n_resamples=200, generator=5)
    assert paired_block_bootstrap(lp, lp_b, ids, bot, n_resamples=200, generator=5) == one
    gen = torch.Generator().manual_seed(5)
    assert paired_block_bootstrap(lp, lp_b, ids, bot, n_resamples=200, generator=gen) == one
    assert paired_block_bootstrap(lp, lp_b, ids, bot, n_resamples=200, generator=6) != one
    assert block_bootstrap(lp, ids, bot, n_resamples=200, generator=5) == block_bootstrap(
        lp, ids, bot, n_resamples=200, generator=5
    )


def test_chunked_resampling_path(monkeypatch):
    # Resamples are processed in chunks to bound memory; force one resample per chunk and check
    # an exact property: constant per-token NLL -> every resample has the same perplexity.
    from mtlstm_hf.evaluation import bootstrap as bs

    monkeypatch.setattr(bs, "_MAX_CHUNK_ELEMENTS", 10)  # 1 resample per chunk for 10+ blocks
    lp = torch.full((1000,), -2.0, dtype=torch.float64)
    out = block_bootstrap(lp, n_resamples=37, generator=0)
    assert out["overall"]["mean"] == pytest.approx(math.exp(2.0)) and out["overall"]["std"] == pytest.approx(
        0, abs=1e-12
    )
    assert out["overall"]["n_valid_resamples"] == 37


def test_single_model_bootstrap_and_tail_handling():
    lp, ids, bot = _synthetic(n_tokens=250)
    drop = block_bootstrap(lp, ids, bot, n_resamples=300, generator=0)
    assert (drop["n_blocks"], drop["n_tokens"], drop["n_tail_tokens_dropped"]) == (2, 200, 50)
    assert drop["overall"]["observed"] == pytest.approx(math.exp(-lp[:200].mean().item()))
    assert drop["overall"]["ci_low"] <= drop["overall"]["mean"] <= drop["overall"]["ci_high"]
    keep = block_bootstrap(lp, ids, bot, n_resamples=300, generator=0, tail="keep")
    assert (keep["n_blocks"], keep["n_tokens"], keep["n_tail_tokens_dropped"]) == (3, 250, 0)
    assert keep["overall"]["observed"] == pytest.approx(math.exp(-lp.mean().item()))
    # Without token ids only 'overall' is reported, and it is the same statistic.
    plain = block_bootstrap(lp, n_resamples=300, generator=0)
    assert plain["bins"] == {} and plain["overall"] == drop["overall"]


def test_bootstrap_empty_bins_are_nan_safe():
    n = 1000
    lp = torch.full((n,), -1.0, dtype=torch.float64)
    ids = torch.zeros(n, dtype=torch.long)
    ids[5] = 1  # one rare token in block 0 only: many resamples miss it
    bot = frequency_bin_of_token(torch.tensor([20000, 3]))
    out = paired_block_bootstrap(lp, lp - 0.1, ids, bot, n_resamples=400, generator=1)
    rare = out["bins"]["<100"]
    assert 0 < rare["n_valid_resamples"] < 400 and rare["n_tokens"] == 1
    assert all(math.isfinite(rare["diff"][k]) for k in ("mean", "std", "ci_low", "ci_high", "p_value"))
    never = out["bins"]["100-1K"]  # no token at all
    assert never["n_valid_resamples"] == 0 and never["n_tokens"] == 0
    assert (
        math.isnan(never["diff"]["mean"])
        and math.isnan(never["diff"]["p_value"])
        and math.isnan(never["a"]["observed"])
    )
    assert math.isfinite(out["overall"]["diff"]["p_value"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"log_probs_b": torch.full((299,), -1.0)}, "log_probs_b"),
        ({"log_probs_a": torch.tensor([])}, "log_probs_a is empty"),
        ({"log_probs_b": torch.full((300,), 0.1)}, "log_probs_b must be log-probabilities"),
        ({"block_size": 0}, "block_size"),
        ({"block_size": -5}, "block_size"),
        ({"block_size": 2.5}, "block_size"),
        ({"block_size": 1000}, "block_size"),  # fewer tokens than one block
        ({"n_resamples": 1}, "n_resamples"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"tail": "pad"}, "tail"),
        ({"token_ids": torch.zeros(300, dtype=torch.long)}, "bin_of_token"),
        (
            {"token_ids": torch.zeros(10, dtype=torch.long), "bin_of_token": torch.zeros(3, dtype=torch.long)},
            "token_ids",
        ),
        ({"generator": 1.5}, "generator"),
    ],
)
def test_bootstrap_errors(kwargs, match):
    args = {"log_probs_a": torch.full((300,), -1.0), "log_probs_b": torch.full((300,), -1.0), "n_resamples": 10}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        paired_block_bootstrap(**args)


# --------------------------------------------------------------------------- evaluate metric

_METRIC_SCRIPT = textwrap.dedent(
    """
    import inspect, json, sys
    import evaluate
    data = json.load(open(sys.argv[1]))
    metric = evaluate.load(sys.argv[2])
    out = metric.compute(log_probs=data["log_probs"], token_frequencies=data["freqs"], bin_edges=data["edges"])
    print(json.dumps({"result": out, "module_file": inspect.getfile(type(metric))}))
    """
)


def test_evaluate_metric_loads_offline_and_matches(tmp_path):
    lp, ids, bot = _synthetic(n_tokens=500)
    counts = torch.tensor([20000, 5000, 500, 50, 3])[torch.arange(50) % 5]
    freqs = counts[ids]
    edges = [10_000, 100, 1_000]  # any order
    (tmp_path / "data.json").write_text(json.dumps({"log_probs": lp.tolist(), "freqs": freqs.tolist(), "edges": edges}))
    (tmp_path / "script.py").write_text(_METRIC_SCRIPT)
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),  # fresh caches: evaluate must copy the script anew
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "script.py"),
            str(tmp_path / "data.json"),
            frequency_binned_perplexity_metric_path(),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    # It ran the copy in evaluate's module cache (so the lazy import of mtlstm_hf works from there).
    assert Path(payload["module_file"]).resolve().is_relative_to((tmp_path / "hf_modules").resolve())
    got = payload["result"]
    expected = binned_perplexity(lp, ids, bot, edges)
    assert got["n_tokens"] == expected["n_tokens"] and got["perplexity"] == pytest.approx(
        expected["perplexity"], rel=1e-12
    )
    assert list(got["bins"]) == list(expected["bins"])
    for label, stats in expected["bins"].items():
        assert got["bins"][label]["n_tokens"] == stats["n_tokens"] > 0
        assert got["bins"][label]["perplexity"] == pytest.approx(stats["perplexity"], rel=1e-12)
        assert got["bins"][label]["nll_sum"] == pytest.approx(stats["nll_sum"], rel=1e-12)


def test_metric_path_points_at_script():
    path = Path(frequency_binned_perplexity_metric_path())
    assert (path / "frequency_binned_perplexity.py").is_file()


# --------------------------------------------------------------------------- windowed stream scoring


class _TinyState:
    """Mimics the model's state object: carries (h, c) and offers .detach()."""

    def __init__(self, h: torch.Tensor, c: torch.Tensor) -> None:
        self.h, self.c = h, c

    def detach(self) -> _TinyState:
        return _TinyState(self.h.detach(), self.c.detach())


class _TinyLM(nn.Module):
    """Stand-in with the HF causal-LM call convention; dropout makes eval mode observable."""

    def __init__(self, vocab: int = 23) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 8)
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, vocab)

    def forward(self, input_ids, cache=None, use_cache=True):
        hx = None if cache is None else (cache.h, cache.c)
        y, (h, c) = self.lstm(self.drop(self.emb(input_ids)), hx)
        return SimpleNamespace(logits=self.head(self.drop(y)), cache=_TinyState(h, c))


def _one_pass(model: nn.Module, stream: torch.Tensor) -> torch.Tensor:
    """Oracle: a single forward over the whole stream from a zero state."""
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=stream[None, :-1]).logits[0]
    return torch.log_softmax(logits, -1).gather(-1, stream[1:, None]).squeeze(-1)


@pytest.fixture()
def tiny_model():
    # One intra-op thread: the many tiny forward calls are otherwise slowed by thread hand-offs
    # on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield _TinyLM()
    torch.set_num_threads(threads)


@pytest.mark.parametrize("window", [1, 7, 70, 500])  # 500 > N: a single window
def test_windowed_log_probs_equal_one_pass(tiny_model, window):
    stream = torch.randint(23, (123,), generator=torch.Generator().manual_seed(1))
    tiny_model.train()  # token_log_probs must switch to eval (dropout off) and restore the mode
    got = token_log_probs(tiny_model, stream, window=window)
    assert tiny_model.training
    assert got.shape == (122,) and got.dtype == torch.float32
    torch.testing.assert_close(got, _one_pass(tiny_model, stream), atol=1e-5, rtol=0)
    assert torch.equal(target_positions(123), torch.arange(1, 123))


def test_batched_log_probs_are_contiguous_pieces_from_zero_state(tiny_model):
    stream = torch.randint(23, (103,), generator=torch.Generator().manual_seed(2))
    b = 4  # 103 // 4 = 25 tokens per piece, 3 tail tokens dropped, 24 targets per piece
    got = token_log_probs(tiny_model, stream, batch_size=b, window=6, device="cpu")
    expected = torch.cat([_one_pass(tiny_model, stream[j * 25 : (j + 1) * 25]) for j in range(b)])
    assert got.shape == (96,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    positions = target_positions(103, b)
    assert positions.shape == (96,) and positions[0] == 1 and positions[24] == 26 and positions[-1] == 99
    # Pieces restart from zero state, so B > 1 differs from B = 1 at the piece starts only.
    single = token_log_probs(tiny_model, stream)
    torch.testing.assert_close(got[:24], single[:24], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stream": torch.tensor([1])}, "stream"),
        ({"stream": torch.zeros(2, 5, dtype=torch.long)}, "stream must be a 1-D"),
        ({"stream": torch.zeros(5)}, "integer token ids"),
        ({"window": 0}, "window"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 3, "stream": torch.arange(5)}, "batch_size=3"),
    ],
)
def test_token_log_probs_errors(tiny_model, kwargs, match):
    args = {"stream": torch.arange(10)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        token_log_probs(tiny_model, **args)


def test_evaluation_package_does_not_import_models():
    """The pure modules must stay model-independent (static check: immune to the models' import state).
    The one exception is the field checks, a standard-library module kept in the model's folder
    because the configuration (which travels to the Hub alone) uses them too."""
    for path in EVAL_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[-3:] == ["models", "mtlstm", "checks"]:
                    continue
                assert "models" not in name.split("."), f"{path.name} imports {name}"


def test_the_walk_in_windows_has_one_home():
    """token_log_probs, the traces and the ablation cut the stream with evaluation's token_rows and
    walk it in its windows (oracle: the rows and windows written out; an AST check that no analysis
    module loops over range(0, ..., window) itself)."""
    import ast
    from pathlib import Path

    from mtlstm_hf.evaluation.perplexity import token_rows, windows

    rows = token_rows(torch.arange(11), batch_size=2)
    assert rows.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert windows(5, 2) == [(0, 2), (2, 4)]  # targets: inputs end one token early
    assert windows(5, 2, targets=False) == [(0, 2), (2, 4), (4, 5)]
    assert windows(5, 70) == [(0, 4)]
    analysis = Path(__file__).resolve().parents[1] / "mtlstm_hf" / "analysis"
    for path in analysis.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "range" and len(node.args) == 3:
                step = ast.unparse(node.args[2])
                assert "window" not in step, f"{path.name} walks a stream in windows by hand: range(..., {step})"
