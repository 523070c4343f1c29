"""End-to-end checkpoint evaluation: load_checkpoint, evaluate/compare_checkpoints and mtlstm-eval."""

import json
import math
import random
import shutil
from collections import Counter

import pytest
import torch
from conftest import tiny_config

from mtlstm_hf import MTLSTMForCausalLM
from mtlstm_hf.data import build_word_tokenizer
from mtlstm_hf.evaluation import bin_labels, compare_checkpoints, evaluate_checkpoint, load_checkpoint
from mtlstm_hf.evaluation.cli import main

# Small thresholds so that the tiny corpus fills every bin (the paper's are 100 / 1K / 10K).
EDGES = (4, 15, 60)
WINDOW = 7  # much shorter than the split, so the state really is carried across windows


def _zipf_lines(rng: random.Random, n_lines: int, words: list[str], weights: list[float]) -> list[str]:
    return [" ".join(rng.choices(words, weights, k=rng.randint(3, 9))) for _ in range(n_lines)]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """PTB-format train/valid/test.txt with Zipf-like word frequencies (every bin non-empty)."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)] + ["<unk>"]
    weights = [1.0 / (rank + 1) for rank in range(30)] + [0.05]
    directory = tmp_path_factory.mktemp("corpus")
    for name, n_lines in (("train", 120), ("valid", 15), ("test", 30)):
        lines = _zipf_lines(rng, n_lines, words, weights)
        if name == "test":
            lines.append("w0 never_seen_in_train w1")  # maps to <unk>
        (directory / f"{name}.txt").write_text("".join(f" {line} \n" for line in lines), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def checkpoint(corpus_dir, tmp_path_factory):
    """A tiny model and its word tokenizer saved together with save_pretrained."""
    tokenizer = build_word_tokenizer(corpus_dir / "train.txt")
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    folder = tmp_path_factory.mktemp("checkpoint")
    MTLSTMForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _stream_ids(path, tokenizer) -> torch.Tensor:
    """The split as ids, built independently of the data layer: words of each line + <eos>."""
    words = [word for line in path.read_text(encoding="utf-8").splitlines() for word in [*line.split(), "<eos>"]]
    vocab = tokenizer.get_vocab()
    return torch.tensor([vocab.get(word, vocab["<unk>"]) for word in words])


def _oracle_nll(model, pieces: torch.Tensor) -> torch.Tensor:
    """Per-target NLL from one forward pass over whole pieces ``(B, n)``, each from the zero state."""
    with torch.no_grad():
        logits = model(input_ids=pieces[:, :-1]).logits.double()
    return -torch.log_softmax(logits, -1).gather(-1, pieces[:, 1:, None]).squeeze(-1).reshape(-1)


def _oracle_bins(corpus_dir, split_names, target_words) -> list[int]:
    """Bin index (0 = most frequent) of each target word from counts over the given split files."""
    counts = Counter()
    for name in split_names:
        for line in (corpus_dir / f"{name}.txt").read_text(encoding="utf-8").splitlines():
            counts.update([*line.split(), "<eos>"])
    return [sum(counts[word] < edge for edge in EDGES) for word in target_words]


def test_evaluate_checkpoint_matches_one_full_forward_pass(checkpoint, corpus_dir):
    result = evaluate_checkpoint(checkpoint, corpus_dir, window=WINDOW, edges=EDGES)
    model, tokenizer = load_checkpoint(checkpoint)
    stream = _stream_ids(corpus_dir / "test.txt", tokenizer)
    nll = _oracle_nll(model, stream[None])

    assert result["n_stream_tokens"] == stream.numel()
    assert result["n_tokens"] == stream.numel() - 1
    assert result["perplexity"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    assert sum(b["n_tokens"] for b in result["bins"].values()) == result["n_tokens"]
    assert list(result["bins"]) == bin_labels(EDGES)
    assert result["count_splits"] == ["train"] and result["split"] == "test" and result["batch_size"] == 1

    # Per bin, against counts taken straight from train.txt; every bin is populated.
    targets = tokenizer.convert_ids_to_tokens(stream[1:].tolist())
    oracle_bins = torch.tensor(_oracle_bins(corpus_dir, ["train"], targets))
    for k, stats in enumerate(result["bins"].values()):
        in_bin = oracle_bins == k
        assert stats["n_tokens"] == int(in_bin.sum()) > 0
        assert stats["perplexity"] == pytest.approx(math.exp(nll[in_bin].mean()), rel=1e-5)

    # A loaded (model, tokenizer) pair gives the same numbers; counting over all splits is recorded.
    all_counts = evaluate_checkpoint(
        (model, tokenizer), corpus_dir, window=WINDOW, edges=EDGES, count_splits=("train", "valid", "test")
    )
    assert all_counts["checkpoint"] is None
    assert all_counts["count_splits"] == ["train", "validation", "test"]
    assert all_counts["perplexity"] == pytest.approx(result["perplexity"], rel=1e-6)
    oracle_all = torch.tensor(_oracle_bins(corpus_dir, ["train", "valid", "test"], targets))
    assert [b["n_tokens"] for b in all_counts["bins"].values()] == torch.bincount(oracle_all, minlength=4).tolist()


def test_batched_evaluation_scores_contiguous_pieces_from_zero_state(checkpoint, corpus_dir):
    result = evaluate_checkpoint(checkpoint, corpus_dir, split="valid", batch_size=3, window=WINDOW, edges=EDGES)
    model, tokenizer = load_checkpoint(checkpoint)
    stream = _stream_ids(corpus_dir / "valid.txt", tokenizer)
    piece = stream.numel() // 3
    nll = _oracle_nll(model, stream[: 3 * piece].reshape(3, piece))
    assert result["split"] == "validation" and result["batch_size"] == 3
    assert result["n_tokens"] == 3 * (piece - 1)
    assert result["perplexity"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)


def test_cli_prints_table_and_writes_json(checkpoint, corpus_dir, tmp_path, capsys):
    output = tmp_path / "out" / "results.json"
    argv = [str(checkpoint), "--data", str(corpus_dir), "--window", str(WINDOW), "--output", str(output)]
    assert main([*argv, "--bin-edges", *map(str, EDGES)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(output.read_text())
    expected = evaluate_checkpoint(checkpoint, corpus_dir, window=WINDOW, edges=EDGES)
    assert written["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-12)
    assert written["n_tokens"] == expected["n_tokens"]
    assert {label: b["n_tokens"] for label, b in written["bins"].items()} == {
        label: b["n_tokens"] for label, b in expected["bins"].items()
    }
    assert written["count_splits"] == ["train"] and written["bin_edges"] == list(EDGES)
    for label in [*bin_labels(EDGES), "overall"]:
        assert label in printed
    assert f"{expected['perplexity']:.2f}" in printed

    # Default (paper) edges: the tiny corpus leaves the frequent bins empty -> null in strict JSON.
    assert main(argv) == 0
    written = json.loads(output.read_text())
    assert written["bins"][">=10K"] == {"perplexity": None, "n_tokens": 0, "nll_sum": 0.0}


def test_compare_checkpoint_with_itself(checkpoint, corpus_dir, tmp_path, capsys):
    result = compare_checkpoints(
        checkpoint, checkpoint, corpus_dir, window=WINDOW, edges=EDGES, block_size=20, n_resamples=200
    )
    for stats in [result["comparison"]["overall"], *result["comparison"]["bins"].values()]:
        diff = stats["diff"]
        assert (diff["observed"], diff["ci_low"], diff["ci_high"], diff["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    assert result["a"]["perplexity"] == result["b"]["perplexity"]

    output = tmp_path / "compare.json"
    argv = [str(checkpoint), "--data", str(corpus_dir), "--compare", str(checkpoint), "--window", str(WINDOW)]
    argv += ["--block-size", "20", "--n-resamples", "200", "--bin-edges", *map(str, EDGES), "--output", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "p-value" in printed and "95% CI" in printed and "1.0000" in printed
    written = json.loads(output.read_text())
    assert written["comparison"]["overall"]["diff"]["p_value"] == 1.0
    assert written["comparison"]["seed"] == 0


def _broken_copy(checkpoint, tmp_path, name, remove=()):
    folder = tmp_path / name
    shutil.copytree(checkpoint, folder)
    for file_name in remove:
        (folder / file_name).unlink()
    return folder


def test_load_checkpoint_errors_name_the_problem(checkpoint, corpus_dir, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not an mtlstm checkpoint: it has no config.json"):
        load_checkpoint(_broken_copy(checkpoint, tmp_path, "no_config", ["config.json"]))
    foreign = _broken_copy(checkpoint, tmp_path, "foreign")
    config = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="no model weights"):
        load_checkpoint(_broken_copy(checkpoint, tmp_path, "no_weights", ["model.safetensors"]))
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_checkpoint(_broken_copy(checkpoint, tmp_path, "no_tok", ["tokenizer.json", "tokenizer_config.json"]))

    mismatch = _broken_copy(checkpoint, tmp_path, "mismatch")
    small_tokenizer = build_word_tokenizer(["w0 w1 w2"])
    small_tokenizer.save_pretrained(mismatch)
    with pytest.raises(
        ValueError, match=r"tokenizer has 6 tokens but the model.s config.vocab_size is \d+"
    ):  # 3 words, <unk>, <eos>, <pad>
        load_checkpoint(mismatch)
    # Two checkpoints with different vocabularies cannot be compared token by token.
    model, _ = load_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="different vocabularies"):
        compare_checkpoints(checkpoint, (model, small_tokenizer), corpus_dir)

    # The command line reports the same message in one line and exits with status 2 (bad input).
    assert main([str(mismatch), "--data", str(corpus_dir)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("mtlstm-eval: error:") and "6 tokens" in error[0]
    assert main([str(tmp_path / "nowhere"), "--data", str(corpus_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_defaults_to_the_corpus_the_checkpoint_was_trained_on(checkpoint, corpus_dir, tmp_path, capsys):
    """Without --data: the corpus named in the folder's training_config.json (as mtlstm-train
    writes it), the embedded sample when it says none; a folder without one is an error that
    says what to pass."""
    from mtlstm_hf.data import sample_corpus_dir
    from mtlstm_hf.training import TrainingSettings

    folder = tmp_path / "trained"
    shutil.copytree(checkpoint, folder)
    with pytest.raises(SystemExit) as stop:
        main([str(folder), "--window", str(WINDOW)])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "--data is needed" in error and str(sample_corpus_dir()) in error

    TrainingSettings(data=str(corpus_dir)).to_json_file(folder / "training_config.json")
    output = tmp_path / "default.json"
    assert main([str(folder), "--window", str(WINDOW), "--output", str(output)]) == 0
    assert f"using the training corpus recorded in the checkpoint, {corpus_dir}" in capsys.readouterr().err
    expected = evaluate_checkpoint(checkpoint, corpus_dir, window=WINDOW)
    assert json.loads(output.read_text())["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-12)

    from mtlstm_hf.training.checkpoint import training_corpus

    TrainingSettings().to_json_file(folder / "training_config.json")  # trained on the embedded sample
    assert training_corpus(folder) == (None, None)


@pytest.mark.parametrize("layout", ["file", "test_only_folder"])
def test_own_text_is_scored_with_the_training_corpus_word_counts(checkpoint, corpus_dir, tmp_path, capsys, layout):
    """A single text file, or a folder with only test.txt, is scored; the
    frequency bins count words in the training corpus recorded with the model (oracle: the same
    text as the test split of a full corpus folder); without such a record the error says what
    to pass, and --count-splits test counts in the text itself."""
    from mtlstm_hf.training import TrainingSettings

    text = corpus_dir / "test.txt"
    if layout == "file":
        data = tmp_path / "my story.txt"
        shutil.copyfile(text, data)
    else:
        data = tmp_path / "only_test"
        data.mkdir()
        shutil.copyfile(text, data / "test.txt")
    expected = evaluate_checkpoint(checkpoint, corpus_dir, window=WINDOW, edges=EDGES)

    # No record of the training corpus: refused, saying what to pass (exit 2, nothing written).
    output = tmp_path / "own.json"
    argv = [str(checkpoint), "--data", str(data), "--window", str(WINDOW), "--bin-edges", *map(str, EDGES)]
    assert main([*argv, "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert "no ['train'] split to count word frequencies in" in error and "--count-splits test" in error
    assert not output.exists()
    counted_in_text = evaluate_checkpoint(checkpoint, data, window=WINDOW, edges=EDGES, count_splits=["test"])
    assert counted_in_text["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-12)
    assert counted_in_text["count_splits"] == ["test"] and "count_data" not in counted_in_text

    folder = tmp_path / "trained"
    shutil.copytree(checkpoint, folder)
    TrainingSettings(data=str(corpus_dir)).to_json_file(folder / "training_config.json")
    assert main([str(folder), *argv[1:], "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert written["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-12)
    assert written["count_data"] == str(corpus_dir) and written["count_splits"] == ["train"]
    assert {label: b["n_tokens"] for label, b in written["bins"].items()} == {
        label: b["n_tokens"] for label, b in expected["bins"].items()
    }
    assert f"train of {corpus_dir}" in capsys.readouterr().out


def test_the_share_of_unknown_words_is_reported_and_warned_about(checkpoint, corpus_dir, tmp_path, capsys):
    """Every result gives the share of scored targets that are <unk> (oracle: counted by hand); above
    10% mtlstm-eval warns that the perplexity mostly measures predicting <unk>."""
    result = evaluate_checkpoint(checkpoint, corpus_dir, window=WINDOW, edges=EDGES)
    model, tokenizer = load_checkpoint(checkpoint)
    stream = _stream_ids(corpus_dir / "test.txt", tokenizer)
    unk = tokenizer.get_vocab()["<unk>"]
    assert result["n_unk"] == int((stream[1:] == unk).sum()) > 0
    assert result["unk_rate"] == pytest.approx(result["n_unk"] / result["n_tokens"]) and result["unk_rate"] < 0.1
    assert result["warnings"] == []

    prose = tmp_path / "prose.txt"
    prose.write_text("w0 the quick brown fox w1\nw2 jumps over w3 the lazy dog\n", encoding="utf-8")
    argv = [str(checkpoint), "--data", str(prose), "--count-splits", "test", "--window", str(WINDOW)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    # 14 targets (13 words and 2 <eos>, less the first word), 9 of them unknown.
    words = [word for line in prose.read_text().splitlines() for word in [*line.split(), "<eos>"]][1:]
    unknown = sum(word not in tokenizer.get_vocab() for word in words)
    assert (len(words), unknown) == (14, 9)
    assert f"({100 * 9 / 14:.2f}% unknown words)" in captured.out
    assert (
        f"warning: {100 * 9 / 14:.1f}% of the scored words are unknown to the model (<unk>, above 10%)" in captured.err
    )


def test_console_script_loads_the_model_through_the_auto_classes(checkpoint, corpus_dir):
    """Started as the console script (argv[0] = mtlstm-eval), the package skips its eager
    registration to start fast; loading a checkpoint must still find model_type "mtlstm"."""
    import subprocess
    import sys

    script = (
        "import sys; sys.argv[0] = 'mtlstm-eval'\n"
        "from mtlstm_hf.evaluation.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(checkpoint), "--data", str(corpus_dir), "--window", str(WINDOW)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Unregistered, transformers would ask whether to run the folder's code (and wait for an answer).
    assert "custom code" not in done.stdout + done.stderr and "Loading weights" not in done.stderr
    expected = evaluate_checkpoint(checkpoint, corpus_dir, window=WINDOW)
    assert f"{expected['perplexity']:.2f}" in done.stdout


def test_options_are_the_evaluation_settings_and_config_files_work(tmp_path):
    """mtlstm-eval's options come from EvaluationSettings (one option per field, the field's help);
    --config FILE.json gives settings, options typed override them, unknown settings are refused."""
    import dataclasses
    import json

    from mtlstm_hf.evaluation.cli import build_parser, settings_from_argv
    from mtlstm_hf.evaluation.settings import EvaluationSettings

    by_dest = {
        action.dest: action for action in build_parser()._actions if f"--{action.dest}" in action.option_strings
    }  # not the --no-<field> one
    for field in dataclasses.fields(EvaluationSettings):
        assert by_dest[field.name].help == field.metadata["help"], field.name
    (tmp_path / "eval.json").write_text(json.dumps({"split": "valid", "bin_edges": [10, 100], "batch_size": 4}))
    checkpoint, settings = settings_from_argv(["ckpt", "--config", str(tmp_path / "eval.json"), "--batch-size", "2"])
    assert checkpoint == "ckpt"
    assert (settings.split, settings.bin_edges, settings.batch_size, settings.window) == ("valid", [10, 100], 2, 70)
    (tmp_path / "bad.json").write_text(json.dumps({"splitt": "valid"}))
    with pytest.raises(ValueError, match=r"unknown setting 'splitt' \(not a field of EvaluationSettings\)"):
        settings_from_argv(["ckpt", "--config", str(tmp_path / "bad.json")])


@pytest.mark.parametrize("command", ["eval", "analyze"])
def test_a_missing_checkpoint_is_named_even_without_data(command, tmp_path, capsys):
    """Without --data the default corpus is looked up in the checkpoint; a missing checkpoint must
    be named as such, not reported as a missing --data (a new user's case)."""
    if command == "eval":
        from mtlstm_hf.evaluation.cli import main
    else:
        from mtlstm_hf.analysis.cli import main
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint '{tmp_path / 'nope'}' does not exist" in err and "--data" not in err


def test_a_renamed_option_keeps_its_old_spelling_for_one_version(tmp_path, capsys):
    """``--data-config`` is ``--dataset-config-name`` now (the training command's name): the old
    option and the old ``--config`` key still set it, each with a warning naming the new one."""
    from mtlstm_hf import command_line
    from mtlstm_hf.evaluation.cli import build_parser, settings_from_argv

    command_line._WARNED.clear()  # each deprecated spelling is said once per process
    _, args = settings_from_argv(["ckpt", "--data-config", "wikitext-2-v1"])
    assert args.dataset_config_name == "wikitext-2-v1"
    assert "--data-config is deprecated: use --dataset-config-name" in capsys.readouterr().err
    _, args = settings_from_argv(["ckpt", "--dataset-config-name", "wikitext-103-v1"])
    assert args.dataset_config_name == "wikitext-103-v1" and "deprecated" not in capsys.readouterr().err
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"data_config": "wikitext-2-raw-v1", "split": "valid"}))
    _, args = settings_from_argv(["ckpt", "--config", str(settings)])
    assert (args.dataset_config_name, args.split) == ("wikitext-2-raw-v1", "valid")
    assert "key 'data_config' is deprecated: use 'dataset_config_name'" in capsys.readouterr().err
    settings.write_text(json.dumps({"data_config": "a", "dataset_config_name": "b"}))
    with pytest.raises(ValueError, match="both 'data_config' .* and 'dataset_config_name'"):
        settings_from_argv(["ckpt", "--config", str(settings)])
    help_text = build_parser().format_help()
    assert "--data-config" not in help_text and "--dataset-config" in help_text
