"""mtlstm-reproduce at the smoke scale, end to end through the command line: every number
in report.json is recomputed here from the run folders (the saved models scored by a hand-written
loop over the test split, word counts from the corpus files, textbook t intervals, scipy's
densities for the fits, an independent stack walk for Dyck-2), a rerun continues instead of
retraining, and every kind of bad input stops with a one-line error before anything is written."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from mtlstm_hf.reproduce import claims
from mtlstm_hf.reproduce.cli import main
from mtlstm_hf.reproduce.output import CONFIG_FILENAME, RUN_RECORD_FILENAME, run_dir

pytestmark = pytest.mark.usefixtures("one_thread")

BINS = (">=10K", "1K-10K", "100-1K", "<100")


def reproduce(*arguments: str) -> int:
    return main([*arguments, "--threads", "1", "--no-progress-bar"])


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm") / "out"
    assert reproduce("lm-ptb", "--scale", "smoke", "--output-dir", str(folder)) == 0
    return folder


@pytest.fixture(scope="module")
def dyck_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dyck") / "out"
    assert reproduce("dyck2", "--scale", "smoke", "--output-dir", str(folder)) == 0
    return folder


def t_interval(values):
    values = np.asarray(values, dtype=float)
    mean, n = values.mean(), len(values)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def words_of(path: Path) -> list[str]:
    return [word for line in path.read_text().splitlines() for word in [*line.split(), "<eos>"]]


def test_lm_test_perplexity_is_that_of_the_saved_models(lm_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = json.loads((lm_folder / "report.json").read_text())
    test_words = words_of(lm_folder / "smoke-corpus" / "test.txt")
    for seed in ("1", "2"):
        evaluation = report["per_seed"][seed]["evaluation"]["train"]
        for key, arm in (("a", "baseline"), ("b", "multi_timescale")):
            folder = run_dir(lm_folder, arm, int(seed)) / "best_model"
            model = AutoModelForCausalLM.from_pretrained(folder).eval()
            vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
            ids = torch.tensor([[vocab[word] for word in test_words]])
            nll, cache = [], None
            with torch.no_grad():
                for start in range(0, ids.shape[1] - 1, 50):  # another window than the library's
                    piece = ids[:, start : min(start + 51, ids.shape[1])]
                    out = model(piece[:, :-1], cache=cache, use_cache=True)
                    cache = out.cache
                    logp = torch.log_softmax(out.logits.double(), -1)
                    nll.append(-logp.gather(-1, piece[:, 1:, None]).reshape(-1))
            nll = torch.cat(nll)
            assert evaluation[key]["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
            # bins from word counts over train + valid + test, counted here from the files
            counts = Counter()
            for split in ("train", "valid", "test"):
                counts.update(words_of(lm_folder / "smoke-corpus" / f"{split}.txt"))
            targets = test_words[1:]
            label = [
                ">=10K"
                if counts[w] >= 10_000
                else "1K-10K"
                if counts[w] >= 1000
                else "100-1K"
                if counts[w] >= 100
                else "<100"
                for w in targets
            ]
            binned = report["per_seed"][seed]["evaluation"]["train_valid_test"][key]["bins"]
            for name in BINS:
                chosen = torch.tensor([value == name for value in label])
                assert chosen.any(), name  # the smoke corpus fills every bin
                assert binned[name]["n_tokens"] == int(chosen.sum())
                assert binned[name]["perplexity"] == pytest.approx(math.exp(float(nll[chosen].mean())), rel=1e-5)


def test_lm_summary_claims_and_markdown_come_from_the_per_seed_numbers(lm_folder):
    report = json.loads((lm_folder / "report.json").read_text())
    summary = report["summary"]["perplexity"]
    a = [report["per_seed"][s]["evaluation"]["train"]["a"]["perplexity"] for s in ("1", "2")]
    b = [report["per_seed"][s]["evaluation"]["train"]["b"]["perplexity"] for s in ("1", "2")]
    difference = summary["test_perplexity"]["difference"]
    mean, low, high = t_interval(np.subtract(b, a))
    assert difference["values"] == pytest.approx(list(np.subtract(b, a)))
    assert difference["mean"] == pytest.approx(mean) and difference["ci95"] == pytest.approx([low, high])
    rare = summary["bins"]["train_valid_test"]["<100"]
    base = [
        report["per_seed"][s]["evaluation"]["train_valid_test"]["a"]["bins"]["<100"]["perplexity"] for s in ("1", "2")
    ]
    mts = [
        report["per_seed"][s]["evaluation"]["train_valid_test"]["b"]["bins"]["<100"]["perplexity"] for s in ("1", "2")
    ]
    assert rare["relative_gain"]["mean"] == pytest.approx(np.mean([1 - y / x for x, y in zip(base, mts)]))
    # an arm's perplexity: geometric mean and the t interval of the logs, exponentiated (stays positive)
    log_mean, log_low, log_high = t_interval(np.log(mts))
    assert rare["multi_timescale"]["mean"] == pytest.approx(math.exp(log_mean))
    assert rare["multi_timescale"]["ci95"] == pytest.approx([math.exp(log_low), math.exp(log_high)])
    assert rare["multi_timescale"]["ci95"][0] > 0 and claims.show(rare["multi_timescale"]).endswith(
        "(2 seeds, geometric)"
    )
    overall_mean, _, _ = t_interval(np.log(a))
    assert summary["test_perplexity"]["baseline"]["mean"] == pytest.approx(math.exp(overall_mean))
    boot = report["per_seed"]["2"]["evaluation"]["train"]["comparison"]["bins"]["<100"]["diff"]
    assert summary["bins"]["train"]["<100"]["bootstrap"][1]["ci95"] == [boot["ci_low"], boot["ci_high"]]
    verdicts = {claim["id"]: claim for claim in report["claims"]}
    assert verdicts["test_perplexity_lower"]["verdict"] == claims.direction_verdict(difference, -1)
    for name in ("test_perplexity_multi_timescale", "test_perplexity_baseline", "bin_perplexity_<100"):
        assert verdicts[name]["verdict"] == claims.INCONCLUSIVE  # a reduced scale reproduces no reported value
    assert verdicts["test_perplexity_multi_timescale"]["paper"] == "57.58"
    markdown = (lm_folder / "REPORT.md").read_text()
    assert claims.show(difference) in markdown and "57.58" in markdown and "1902.37" in markdown
    for seed, entry in zip(("1", "2"), summary["bins"]["train"]["<100"]["bootstrap"]):  # p at its floor: a bound
        n_valid = report["per_seed"][seed]["evaluation"]["train"]["comparison"]["bins"]["<100"]["n_valid_resamples"]
        mark = "<=" if entry["p_value"] == pytest.approx(2 / (n_valid + 1)) else "="
        assert f"seed {entry['seed']}: {entry['difference']:+.2f} [" in markdown
        assert f"p{mark}{entry['p_value']:.4f}" in markdown
    assert "Reductions relative to the paper" in markdown and "2 epochs (paper 1000)" in markdown
    assert sorted(report["figures"]) == sorted(path.name for path in (lm_folder / "figures").iterdir())


def test_lm_timescale_fits_and_routing_are_recomputable(lm_folder):
    report = json.loads((lm_folder / "report.json").read_text())
    for seed in ("1", "2"):
        entry = report["per_seed"][seed]["timescales"]
        values = np.array([t for layer in entry["layers"] for t in layer["timescales"] if t is not None and t > 0])
        fits = entry["pooled"]["fits"]
        assert set(fits) == {"inverse_gamma", "lognormal", "exponential"}
        p = fits["inverse_gamma"]["parameters"]
        density = stats.invgamma(p["alpha"], scale=p["beta"])
        assert fits["inverse_gamma"]["aic"] == pytest.approx(4 - 2 * density.logpdf(values).sum(), rel=1e-9)
        assert fits["inverse_gamma"]["ks_statistic"] == pytest.approx(stats.kstest(values, density.cdf).statistic)
        scale = fits["exponential"]["parameters"]["scale"]
        assert scale == pytest.approx(values.mean())  # the exponential MLE is the mean
        # the estimate reads the baseline: no unit has an assigned timescale
        assert all(layer["assigned"] is None for layer in entry["layers"])
        routing = report["per_seed"][seed]["ablation"]["train_valid_test"]
        intact = report["per_seed"][seed]["evaluation"]["train_valid_test"]["b"]
        assert routing["layer"] == 2 and routing["order"] == "assigned" and routing["chunk_size"] == 8
        assert routing["intact"]["perplexity"] == pytest.approx(intact["perplexity"], rel=1e-5)
        for chunk in routing["chunks"]:
            assert chunk["ratio"]["<100"] == pytest.approx(
                chunk["bins"]["<100"] / routing["intact"]["bins"]["<100"]["perplexity"]
            )
    delta = report["summary"]["timescales"]["inverse_gamma_aic_minus_best_alternative"]
    expected = []
    for seed in ("1", "2"):
        fits = report["per_seed"][seed]["timescales"]["pooled"]["fits"]
        expected.append(fits["inverse_gamma"]["aic"] - min(fits["lognormal"]["aic"], fits["exponential"]["aic"]))
    assert delta["values"] == pytest.approx(expected)


def test_a_rerun_skips_finished_runs_and_continues_an_unfinished_one(lm_folder, capsys):
    before = json.loads((lm_folder / "report.json").read_text())
    record = run_dir(lm_folder, "multi_timescale", 2) / RUN_RECORD_FILENAME
    record.unlink()  # as if the run had stopped after its last checkpoint
    assert reproduce("lm-ptb", "--scale", "smoke", "--output-dir", str(lm_folder)) == 0
    err = capsys.readouterr().err
    assert err.count("finished before, skipped") == 3
    assert "multi_timescale seed 2: continuing the interrupted run" in err
    after = json.loads((lm_folder / "report.json").read_text())
    assert after["runs"]["multi_timescale"]["2"]["resumed"] is True
    assert after["runs"]["multi_timescale"]["2"]["global_step"] == before["runs"]["multi_timescale"]["2"]["global_step"]
    assert after["per_seed"] == before["per_seed"] and after["summary"] == before["summary"]


def test_dyck_numbers_come_from_the_saved_predictions(dyck_folder):
    from mtlstm_hf.data.dyck import generate_dyck2
    from mtlstm_hf.reproduce.dyck_runs import load_predictions

    report = json.loads((dyck_folder / "report.json").read_text())
    test_words = generate_dyck2(0, num_train=200, num_validation=50, num_test=100, max_length=40)["test"]
    accuracies = {"baseline": [], "multi_timescale": []}
    for arm in accuracies:
        for seed in (1, 2):
            correct, bits = load_predictions(run_dir(dyck_folder, arm, seed))
            for word, predicted, right in zip(test_words, bits, correct):
                stack, target = [], []
                for symbol in word:
                    stack.append(symbol) if symbol in "([" else stack.pop()
                    target.append([bool(stack) and stack[-1] == "(", bool(stack) and stack[-1] == "["])
                assert right == np.array_equal(predicted, np.array(target, dtype=bool))
            assert report["runs"][arm][str(seed)]["accuracy"] == pytest.approx(correct.mean())
            accuracies[arm].append(correct.mean())
    summary = report["summary"]
    for arm, values in accuracies.items():
        assert summary["arms"][arm]["accuracy"]["mean"] == pytest.approx(np.mean(values))
        for entry in summary["arms"][arm]["span_accuracy"]:  # t intervals cut at 0 and 1
            finite = [v for v in entry["values"] if not math.isnan(v)]
            if len(finite) == 2 and finite[0] != finite[1]:
                _, low, high = t_interval(finite)
                assert entry["ci95"] == pytest.approx([min(max(low, 0), 1), min(max(high, 0), 1)])
    ours, theirs = np.array(accuracies["multi_timescale"]), np.array(accuracies["baseline"])
    assert summary["difference"]["mean"] == pytest.approx(ours.mean() - theirs.mean())
    va, vb = ours.var(ddof=1) / 2, theirs.var(ddof=1) / 2
    if va + vb > 0:  # Welch's interval by hand
        half = stats.t.ppf(0.975, (va + vb) ** 2 / (va**2 + vb**2)) * math.sqrt(va + vb)
        assert summary["difference"]["ci95"] == pytest.approx(
            [ours.mean() - theirs.mean() - half, ours.mean() - theirs.mean() + half]
        )
    assert {claim["id"] for claim in report["claims"]} == {
        "dyck_accuracy_higher",
        "dyck_accuracy_multi_timescale",
        "dyck_accuracy_baseline",
        "dyck_gain_grows_with_span",
    }
    assert (dyck_folder / "figures" / "accuracy_by_span.png").is_file()
    markdown = (dyck_folder / "REPORT.md").read_text()
    assert "93.82%" in markdown
    # each span row is labelled with the whole spans its bin holds (edges 2, 6.2, 10.4, ... at max_length 40)
    from mtlstm_hf.reproduce.dyck import span_bin_index

    edges = np.array(summary["span_edges"])
    spans = np.arange(2, 41)
    for index in range(len(edges) - 1):
        inside = spans[span_bin_index(spans, edges) == index]
        count = summary["arms"]["baseline"]["span_counts"][index]
        assert f"| {inside[0]}-{inside[-1]} | {count} |" in markdown


def lm_report_with_routing(ratios_by_seed):
    """A report.json holding only ablation results: per seed, chunks of (geometric-mean T, {bin: ratio})."""
    per_seed = {}
    for seed, chunks in ratios_by_seed.items():
        routing = {
            "chunks": [
                {"timescale_min": t / 2, "timescale_max": t * 2, "timescale_geometric_mean": t, "ratio": ratio}
                for t, ratio in chunks
            ]
        }
        per_seed[seed] = {"ablation": {"train": routing, "train_valid_test": routing}}
    return {"per_seed": per_seed, "runs": {}}


def ratios(rare, mid, frequent):
    return {">=10K": frequent, "1K-10K": mid, "100-1K": mid, "<100": rare}


def test_ablation_claim_needs_rare_words_hurt_most_and_frequent_least():
    from mtlstm_hf.reproduce.summary import lm_summary

    def verdict(ratios_by_seed):
        summary = lm_summary(lm_report_with_routing(ratios_by_seed))
        (claim,) = claims.lm_claims("lm-ptb", "cpu", summary, standard_corpus=True)
        return claim["verdict"], summary["routing"]["train_valid_test"]

    # the chunk of T 1,000 (outside 46-320) hurts rare words more than anything and is not chosen
    seeds = {
        str(seed): [
            (1000.0, ratios(1.5, 1.0, 1.0)),
            (150.0, ratios(1.04 + step, 1.01, 1.0)),
            (30.0, ratios(1.0, 1.0, 1.0)),
        ]
        for seed, step in ((1, 0.0), (2, 0.01), (3, 0.02))
    }
    found, entry = verdict(seeds)
    assert found == claims.HOLDS and entry["long_timescale_chunks"] == [[1], [1], [1]]
    assert entry["rare_minus_frequent_ratio"]["mean"] == pytest.approx(0.05)
    assert entry["max_rare_ratio"]["mean"] == pytest.approx(1.5)
    # a middle bin hurt more than rare words: rarer-than-frequent still, but not "rare most"
    seeds["2"][1] = (150.0, ratios(1.05, 1.08, 1.0))
    assert verdict(seeds)[0] == claims.INCONCLUSIVE
    # frequent words hurt more than rare ones in every seed: does not hold
    flipped = {seed: [(150.0, ratios(1.0, 1.01, 1.03 + 0.01 * int(seed)))] for seed in ("1", "2", "3")}
    assert verdict(flipped)[0] == claims.DOES_NOT_HOLD
    # no chunk with its geometric-mean timescale in 46-320: nothing to judge
    found, entry = verdict({seed: [(1000.0, ratios(1.5, 1.0, 1.0))] for seed in ("1", "2", "3")})
    assert found == claims.INCONCLUSIVE and entry["long_timescale_chunks"] == [[], [], []]


def test_verdict_rules():
    stat = {"n": 3, "mean": -1.0, "ci95": [-2.0, -0.5]}
    assert claims.direction_verdict(stat, -1) == claims.HOLDS
    assert claims.direction_verdict(stat, +1) == claims.DOES_NOT_HOLD
    assert claims.direction_verdict({"n": 3, "mean": 0.1, "ci95": [-1.0, 1.2]}, -1) == claims.INCONCLUSIVE
    assert claims.direction_verdict({"n": 1, "mean": -1.0, "ci95": [None, None]}, -1) == claims.INCONCLUSIVE
    ours = {"n": 3, "mean": 58.0, "ci95": [57.0, 59.0]}
    assert claims.value_verdict(ours, 57.58, comparable=True) == claims.HOLDS
    assert claims.value_verdict(ours, 65.0, comparable=True) == claims.DOES_NOT_HOLD
    assert claims.value_verdict(ours, 57.58, comparable=False) == claims.INCONCLUSIVE


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["lm-penn", "--scale", "smoke"], "invalid choice: 'lm-penn'"),
        (["lm-ptb", "--scale", "huge"], "invalid choice: 'huge'"),
        (["lm-ptb", "--scale", "smoke", "--seeds", "1", "1"], "--seeds must be distinct"),
    ],
)
def test_unknown_experiment_scale_or_bad_seeds(tmp_path, capsys, arguments, expected):
    try:
        code = reproduce(*arguments, "--output-dir", str(tmp_path / "out"))
    except SystemExit as stop:  # argparse refuses an unknown choice itself
        code = stop.code
    assert code == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_data_folder_without_the_corpus_is_refused(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    (empty / "train.txt").write_text("a b\n")
    assert reproduce("lm-ptb", "--scale", "cpu", "--data", str(empty), "--output-dir", str(tmp_path / "out")) == 2
    message = one_line_error(capsys)
    assert "no ptb corpus" in message and "missing: valid, test" in message and "never bundled" in message
    assert reproduce("lm-wikitext2", "--scale", "cpu", "--output-dir", str(tmp_path / "out")) == 2
    assert "--data is needed" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_another_configuration_is_refused(lm_folder, tmp_path, capsys):
    listing = sorted(str(path) for path in lm_folder.rglob("*"))
    report = (lm_folder / "report.json").read_text()
    assert reproduce("lm-ptb", "--scale", "smoke", "--recipe", "reference", "--output-dir", str(lm_folder)) == 2
    message = one_line_error(capsys)
    assert "holds runs of another configuration" in message and "recipe: 'library' -> 'reference'" in message
    assert reproduce("dyck2", "--scale", "smoke", "--output-dir", str(lm_folder)) == 2
    assert "another configuration" in one_line_error(capsys)
    assert sorted(str(path) for path in lm_folder.rglob("*")) == listing
    assert (lm_folder / "report.json").read_text() == report
    stray = tmp_path / "stray"
    (stray / "runs").mkdir(parents=True)
    assert reproduce("dyck2", "--scale", "smoke", "--output-dir", str(stray)) == 2
    assert f"no {CONFIG_FILENAME}" in one_line_error(capsys)


def test_config_file_can_give_the_required_settings(tmp_path):
    """--scale and --output-dir may come from --config (a new user's case); without either, one error."""
    import json

    from mtlstm_hf.reproduce.cli import settings_from_argv

    (tmp_path / "r.json").write_text(json.dumps({"scale": "smoke", "output_dir": str(tmp_path / "out"), "seeds": [3]}))
    experiment, settings = settings_from_argv(["dyck2", "--config", str(tmp_path / "r.json")])
    assert (experiment, settings.scale, settings.seeds) == ("dyck2", "smoke", [3])
    with pytest.raises(ValueError, match="missing --output-dir"):
        settings_from_argv(["dyck2", "--scale", "smoke"])


def lm_report_with_perplexities(by_seed):
    """A report.json holding only evaluations: per seed, ({bin: baseline ppl}, {bin: multi-timescale ppl})."""

    def side(perplexities):
        return {
            "perplexity": perplexities["all"],
            "n_tokens": 100,
            "bins": {b: {"perplexity": perplexities[b], "n_tokens": 25} for b in BINS},
        }

    diff = {"n_valid_resamples": 10, "diff": {"observed": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}}
    comparison = {"bins": {b: diff for b in BINS}, "overall": diff}
    per_seed = {}
    for seed, (baseline, multi) in by_seed.items():
        counted = {"a": side(baseline), "b": side(multi), "comparison": comparison}
        per_seed[seed] = {"evaluation": {"train": counted, "train_valid_test": counted}}
    return {"per_seed": per_seed, "runs": {}}


def test_largest_gain_claim_needs_the_rare_bin_to_gain_most():
    from mtlstm_hf.reproduce.summary import lm_summary

    def gain_verdict(by_seed):
        found = claims.lm_claims(
            "lm-ptb", "cpu", lm_summary(lm_report_with_perplexities(by_seed)), standard_corpus=True
        )
        return {claim["id"]: claim["verdict"] for claim in found}

    base = {">=10K": 10.0, "1K-10K": 30.0, "100-1K": 200.0, "<100": 2000.0, "all": 60.0}

    def multi(rare_gain, mid_gain, frequent_gain):
        return {
            ">=10K": 10.0 * (1 - frequent_gain),
            "1K-10K": 30.0 * (1 - mid_gain),
            "100-1K": 200.0 * (1 - mid_gain),
            "<100": 2000.0 * (1 - rare_gain),
            "all": 59.0 - frequent_gain,
        }

    verdicts = gain_verdict({str(s): (base, multi(0.05 + 0.01 * s, 0.02, 0.001 * s)) for s in (1, 2, 3)})
    assert verdicts["largest_gain_rare"] == claims.HOLDS
    assert verdicts["test_perplexity_lower"] == claims.HOLDS  # 59 - g below 60 in every seed
    assert verdicts["bin_perplexity_<100"] == claims.INCONCLUSIVE  # a value: only the paper scale can reproduce it
    # rare words gain more than frequent ones, but a middle bin gains most: not the claim
    verdicts = gain_verdict({str(s): (base, multi(0.05 + 0.01 * s, 0.2, 0.001 * s)) for s in (1, 2, 3)})
    assert verdicts["largest_gain_rare"] == claims.INCONCLUSIVE
    # frequent words gain more than rare ones: does not hold
    verdicts = gain_verdict({str(s): (base, multi(0.001 * s, 0.0, 0.05 + 0.01 * s)) for s in (1, 2, 3)})
    assert verdicts["largest_gain_rare"] == claims.DOES_NOT_HOLD
