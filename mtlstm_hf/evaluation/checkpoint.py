"""End-to-end evaluation of saved checkpoints: load, tokenize a corpus split, score, bin, compare.

A *checkpoint* is a folder written by ``model.save_pretrained(folder)`` and
``tokenizer.save_pretrained(folder)`` (the word-level tokenizer of :mod:`mtlstm_hf.data`).
This module only glues existing pieces together:

* :func:`mtlstm_hf.data.load_corpus` / :func:`~mtlstm_hf.data.split_to_stream` turn ``data``
  (a local PTB/WikiText-format folder, a Hub dataset id or a loaded ``DatasetDict``) into
  1-D token streams (one ``<eos>`` per line);
* :func:`.perplexity.token_log_probs` scores the evaluation split with the recurrent state
  carried across windows;
* :func:`.frequency.token_counts` / :func:`~.frequency.frequency_bin_of_token` /
  :func:`~.frequency.binned_perplexity` give the paper's per-frequency-bin perplexities;
* :func:`.bootstrap.paired_block_bootstrap` tests the difference between two checkpoints.

Batching (``batch_size``):

* ``batch_size=1`` (default, the paper's and AWD-LSTM's test setting) feeds the whole split
  as one stream and carries the state from the first token to the last: every target is
  predicted from its full preceding context.
* ``batch_size=B > 1`` is faster but cuts the stream into ``B`` contiguous pieces, each
  starting from the zero state; the first token of each piece is not scored and the last
  ``N mod B`` tokens are dropped, so results differ slightly from ``batch_size=1``.

``window`` (tokens per forward call) affects only speed and memory, never the numbers.

Word counts for the frequency bins come from ``count_splits`` (default: the training split
only, which the bins then cannot leak test information from; the paper's reference code
counts train + valid + test). The splits used are recorded in every result. Scored text without
those splits (a single text file, a folder with only ``test.txt``) is counted in the training
corpus recorded with the model (:func:`counting_corpus`).

Every result reports the share of scored targets that are the unknown word (``unk_rate``): a
perplexity over text whose words are mostly out of the vocabulary measures how well the model
predicts ``<unk>``; above :data:`UNK_RATE_WARNING` the result carries a warning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import datasets
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mtlstm_hf.files import PathOrStr
from mtlstm_hf.model_folder import (  # noqa: F401 (public here too: evaluation's entry points)
    Checkpoint,
    load_checkpoint,
    load_model_strictly,
    resolve_checkpoint,
)

from ..command_line import check_seed
from ..data import canonical_split, load_corpus, split_to_stream, unknown_word_id
from ..devices import UnavailableDeviceError, float32_precision, resolve_device  # noqa: F401 (UnavailableDeviceError: public here too)
from .bootstrap import paired_block_bootstrap
from .frequency import DEFAULT_BIN_EDGES, binned_perplexity, frequency_bin_of_token, token_counts
from .json_values import to_json_compatible  # noqa: F401 (public here: evaluation results as strict JSON)
from .pairing import check_same_token_streams
from .perplexity import target_positions, token_log_probs

__all__ = [
    "UnavailableDeviceError",
    "Checkpoint",
    "CorpusSource",
    "UNK_RATE_WARNING",
    "compare_checkpoints",
    "counting_corpus",
    "describe_data",
    "evaluation_corpus",
    "evaluate_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "split_streams",
    "to_json_compatible",
]

#: Anything :func:`mtlstm_hf.data.load_corpus` accepts: a folder, a Hub id, a ``{split: file}`` dict, a DatasetDict.
CorpusSource: TypeAlias = PathOrStr | dict[str, PathOrStr] | datasets.DatasetDict

UNK_RATE_WARNING = 0.10
"""Share of scored targets that are the unknown word above which a result carries a warning."""


def describe_data(data: CorpusSource) -> str:
    """A short JSON-friendly description of where the corpus came from (recorded in results)."""
    if isinstance(data, datasets.DatasetDict):
        return "<DatasetDict>"
    if isinstance(data, dict):
        return json.dumps({split: str(path) for split, path in data.items()})
    if isinstance(data, (str, os.PathLike)) and str(data) and Path(data).expanduser().exists():
        return str(Path(data).expanduser().resolve())  # a local corpus by its absolute path: never taken for a Hub id
    return str(data)


def evaluation_corpus(data: CorpusSource, split: str, data_config: str | None = None) -> datasets.DatasetDict:
    """The corpus to score: :func:`mtlstm_hf.data.load_corpus` of ``data``, or a single text file as
    the split ``split`` (one row per line).

    Raises:
        FileNotFoundError, ValueError: as :func:`mtlstm_hf.data.load_corpus`; ``data_config`` with a file.
    """
    if isinstance(data, (str, os.PathLike)) and Path(data).expanduser().is_file():
        if data_config is not None:
            raise ValueError(f"data_config={data_config!r} applies to Hub datasets, not to the text file {str(data)!r}")
        return load_corpus({canonical_split(split): Path(data).expanduser()})
    return load_corpus(data, data_config)


def counting_corpus(
    corpus: datasets.DatasetDict, count_splits: Sequence[str] | str, checkpoint: str | None
) -> tuple[datasets.DatasetDict, str | None]:
    """Where the words of the frequency bins are counted: ``corpus`` when it has every split of
    ``count_splits``; when it has none of them (a single text file, a folder with only
    ``test.txt``), the training corpus recorded with the checkpoint
    (:func:`mtlstm_hf.training.checkpoint.recorded_corpus`), whose description is returned too.

    Returns:
        ``(corpus to count in, description of it or None for corpus itself)``.

    Raises:
        ValueError: some of the splits are there and some not; or none, and the checkpoint records
            no training corpus (the message says what to pass).
    """
    names = [count_splits] if isinstance(count_splits, str) else list(count_splits)
    names = list(dict.fromkeys(canonical_split(name) for name in names))
    missing = [name for name in names if name not in corpus]
    if not missing:
        return corpus, None
    if len(missing) < len(names):
        raise ValueError(
            f"the corpus has the split(s) {sorted(set(names) - set(missing))} but not {missing} to count word frequencies in; "
            f"pass count_splits (--count-splits) among {sorted(corpus)}"
        )
    from ..files import recorded_corpus

    advice = (
        f"pass count_splits={sorted(corpus)} (--count-splits {' '.join(sorted(corpus))}) to count in the scored "
        f"text itself, or a corpus with the split(s) {names}"
    )
    if checkpoint is None:
        raise ValueError(f"the corpus has no {names} split to count word frequencies in; {advice}")
    try:
        data, data_config = recorded_corpus(checkpoint)
    except ValueError:
        raise ValueError(
            f"the corpus has no {names} split to count word frequencies in, and {checkpoint!r} records no training "
            f"corpus (no training_config.json); {advice}"
        ) from None
    recorded = load_corpus(data, data_config)
    absent = [name for name in names if name not in recorded]
    if absent:
        raise ValueError(f"the training corpus recorded with {checkpoint!r}, {data}, has no {absent} split; {advice}")
    return recorded, describe_data(data)


def split_streams(
    corpus: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    split: str,
    count_splits: Sequence[str] | str,
    count_corpus: datasets.DatasetDict | None = None,
) -> tuple[str, list[str], dict[str, torch.Tensor]]:
    """The token streams of the evaluated split and of the splits whose word counts define the bins.

    Args:
        corpus: from :func:`mtlstm_hf.data.load_corpus`.
        split: the evaluated (or analysed) split, any spelling :func:`mtlstm_hf.data.canonical_split` takes.
        count_splits: one split name or several (duplicates and spellings merged).
        count_corpus: where the counting splits are (default ``corpus``; see :func:`counting_corpus`).

    Returns:
        ``(split, count_names, {"scored": (N,) int64 stream of the split, name: counting stream})``
        with canonical names; every split is tokenized once (one ``<eos>`` per line,
        :func:`mtlstm_hf.data.split_to_stream`).

    Raises:
        ValueError: an unknown split name, or no counting split.
    """
    split = canonical_split(split)
    # A single string would otherwise be iterated letter by letter.
    count_names = [count_splits] if isinstance(count_splits, str) else list(count_splits)
    count_names = list(dict.fromkeys(canonical_split(name) for name in count_names))
    if not count_names:
        raise ValueError("count_splits must name at least one split to count words in")
    count_corpus = corpus if count_corpus is None else count_corpus
    streams = {"scored": split_to_stream(corpus, split, tokenizer)}
    for name in count_names:
        same = count_corpus is corpus and name == split
        streams[name] = streams["scored"] if same else split_to_stream(count_corpus, name, tokenizer)
    return split, count_names, streams


@dataclass
class _TokenizedSplit:
    """The token streams one tokenizer gives: the scored split and the counting splits."""

    split: str  # canonical name of the scored split
    count_names: list[str]  # canonical names of the counting splits
    streams: dict[str, torch.Tensor]  # "scored" and each counting split: (N,) int64
    count_data: str | None  # where the counting splits were found, when not in the scored corpus


def _tokenize_split(
    tokenizer: PreTrainedTokenizerBase,
    corpus: datasets.DatasetDict,
    split: str,
    count_splits: Sequence[str],
    checkpoint_path: str | None = None,
) -> _TokenizedSplit:
    """The streams :func:`_score_split` scores and counts (see :func:`split_streams`, :func:`counting_corpus`)."""
    count_corpus, count_data = counting_corpus(corpus, count_splits, checkpoint_path)
    split, count_names, streams = split_streams(corpus, tokenizer, split, count_splits, count_corpus)
    return _TokenizedSplit(split, count_names, streams, count_data)


@dataclass
class _ScoredSplit:
    """One model's scores on one split, with everything needed to bin and bootstrap them."""

    log_probs: torch.Tensor  # (n_targets,) log p of each scored target
    targets: torch.Tensor  # (n_targets,) target ids aligned with log_probs
    bin_of_token: torch.Tensor  # (V,) frequency bin of every vocabulary id
    info: dict[str, Any]  # settings and provenance recorded in the results


def _score_split(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tokenized: _TokenizedSplit,
    edges: Sequence[int],
    batch_size: int,
    window: int,
) -> _ScoredSplit:
    """Count, score: the shared core of evaluation and comparison (streams from :func:`_tokenize_split`)."""
    split, count_names, streams, count_data = (
        tokenized.split,
        tokenized.count_names,
        tokenized.streams,
        tokenized.count_data,
    )
    vocab_size = int(model.config.vocab_size)
    bin_of_token = frequency_bin_of_token(token_counts([streams[name] for name in count_names], vocab_size), edges)
    stream = streams["scored"]
    with float32_precision("highest"):  # reported numbers never use TensorFloat-32, whatever a caller set
        log_probs = token_log_probs(model, stream, batch_size=batch_size, window=window)
    targets = stream[target_positions(stream.numel(), batch_size)]
    unk = unknown_word_id(tokenizer)
    n_unk = 0 if unk is None else int((targets == unk).sum())
    unk_rate = n_unk / max(targets.numel(), 1)
    info = {
        "split": split,
        "count_splits": count_names,
        **({"count_data": count_data} if count_data is not None else {}),
        "batch_size": int(batch_size),
        "window": int(window),
        "bin_edges": sorted(int(edge) for edge in edges),
        "n_stream_tokens": int(stream.numel()),
        "n_unk": n_unk,
        "unk_rate": unk_rate,
        "warnings": (
            [
                f"{100 * unk_rate:.1f}% of the scored words are unknown to the model ({tokenizer.convert_ids_to_tokens(unk)}, "
                f"above {100 * UNK_RATE_WARNING:g}%): the perplexity largely measures how well it predicts the unknown word"
            ]
            if unk is not None and unk_rate > UNK_RATE_WARNING  # (unk_rate is 0 without an unknown word)
            else []
        ),
    }
    return _ScoredSplit(log_probs, targets, bin_of_token, info)


def _evaluation_result(scored: _ScoredSplit, checkpoint_path: str | None, data: CorpusSource) -> dict[str, Any]:
    edges = scored.info["bin_edges"]
    result: dict[str, Any] = {"checkpoint": checkpoint_path, "data": describe_data(data), **scored.info}
    result.update(binned_perplexity(scored.log_probs, scored.targets, scored.bin_of_token, edges))
    return result


def evaluate_checkpoint(
    path_or_model: Checkpoint,
    data: CorpusSource,
    split: str = "test",
    batch_size: int = 1,
    window: int = 70,
    count_splits: Sequence[str] = ("train",),
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
    *,
    data_config: str | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Perplexity of a checkpoint on a corpus split, overall and per word-frequency bin.

    Args:
        path_or_model: a checkpoint folder (see :func:`load_checkpoint`) or a loaded
            ``(model, tokenizer)`` pair.
        data: the corpus, anything :func:`mtlstm_hf.data.load_corpus` accepts (a local folder
            with ``train.txt``/``valid.txt``/``test.txt``, a Hub dataset id, a loaded
            ``DatasetDict``, ...), or a single text file, scored as ``split``.
        split: the split to score (``"test"``, ``"valid"``/``"validation"``, ``"train"``).
        batch_size: ``1`` carries the state across the whole split (the paper's setting);
            ``B > 1`` scores ``B`` contiguous pieces in parallel, each from the zero state
            (faster, slightly different numbers; see the module docstring).
        window: tokens per forward call; speed/memory only.
        count_splits: splits whose word counts define the frequency bins (default train only;
            ``("train", "valid", "test")`` reproduces the reference code); counted in the
            training corpus recorded with the checkpoint when ``data`` has none of them
            (:func:`counting_corpus`).
        edges: bin thresholds, default the paper's ``(100, 1000, 10000)``.
        data_config: Hub dataset configuration (e.g. ``"wikitext-2-v1"``), Hub ids only.
        device: device for a model loaded from a folder (a loaded model is used where it is).

    Returns:
        ``{"checkpoint": path or None, "data", "split", "count_splits": [...], ("count_data": where
        they were counted, when not in data), "batch_size", "window", "bin_edges",
        "n_stream_tokens", "n_unk" and "unk_rate" (scored targets that are the unknown word),
        "warnings": [...], "perplexity", "n_tokens" (scored targets), "nll_sum", "bins": {label:
        {"perplexity", "n_tokens", "nll_sum"}}}``, bins most frequent first; an empty bin has
        perplexity NaN.

    Raises:
        ValueError: see :func:`counting_corpus`, :func:`evaluation_corpus`, :func:`load_checkpoint`.
    """
    model, tokenizer, checkpoint_path = resolve_checkpoint(path_or_model, device)
    corpus = evaluation_corpus(data, split, data_config)
    tokenized = _tokenize_split(tokenizer, corpus, split, count_splits, checkpoint_path)
    scored = _score_split(model, tokenizer, tokenized, edges, batch_size, window)
    return _evaluation_result(scored, checkpoint_path, data)


def _same_vocabulary(tokenizer_a: PreTrainedTokenizerBase, tokenizer_b: PreTrainedTokenizerBase) -> bool:
    return tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def _described_streams(tokenized: _TokenizedSplit) -> dict[str, torch.Tensor]:
    """The streams by what they are, for :func:`check_same_token_streams`'s message."""
    described = {f"the {tokenized.split} split": tokenized.streams["scored"]}
    for name in tokenized.count_names:
        described.setdefault(f"the {name} split (the word counts of the frequency bins)", tokenized.streams[name])
    return described


def compare_checkpoints(
    a: Checkpoint,
    b: Checkpoint,
    data: CorpusSource,
    split: str = "test",
    batch_size: int = 1,
    window: int = 70,
    count_splits: Sequence[str] = ("train",),
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
    block_size: int = 100,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence_level: float = 0.95,
    *,
    data_config: str | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Evaluate two checkpoints on the same split and test their difference (paired block bootstrap).

    Both checkpoints must share one vocabulary (same word -> id table) and their tokenizers must
    give the same token streams for the scored split and the counting splits (the same targets
    and the same frequency bins; checked before any scoring,
    :func:`~mtlstm_hf.evaluation.pairing.check_same_token_streams`). Arguments as in
    :func:`evaluate_checkpoint`; ``block_size``, ``n_resamples``, ``confidence_level`` as in
    :func:`~mtlstm_hf.evaluation.paired_block_bootstrap`, with ``seed`` seeding its generator.

    Returns:
        ``{"a": evaluation of a, "b": evaluation of b, "comparison": paired bootstrap result}``;
        the comparison's ``diff`` is ``ppl_b - ppl_a`` (negative when ``b`` is better), with a
        percentile confidence interval and a two-sided p-value, overall and per bin.

    Raises:
        ValueError: as :func:`evaluate_checkpoint`; the vocabularies differ; the tokenizers give
            different token streams (the message names both checkpoints, the text and the first
            position where the streams differ).
    """
    check_seed(seed, "seed")  # before anything is loaded or scored
    model_a, tokenizer_a, path_a = resolve_checkpoint(a, device)
    model_b, tokenizer_b, path_b = resolve_checkpoint(b, device)
    if not _same_vocabulary(tokenizer_a, tokenizer_b):
        raise ValueError(
            "the two checkpoints have different vocabularies (tokenizers); a paired comparison needs "
            "both models to score the same token stream"
        )
    corpus = evaluation_corpus(data, split, data_config)
    tokenized_a = _tokenize_split(tokenizer_a, corpus, split, count_splits, path_a)
    tokenized_b = _tokenize_split(tokenizer_b, corpus, split, count_splits, path_a or path_b)
    check_same_token_streams(
        [_described_streams(tokenized_a), _described_streams(tokenized_b)],
        [path_a or "checkpoint a (a loaded model)", path_b or "checkpoint b (a loaded model)"],
        [tokenizer_a, tokenizer_b],
        tokenizer_a.eos_token_id,
    )
    scored_a = _score_split(model_a, tokenizer_a, tokenized_a, edges, batch_size, window)
    scored_b = _score_split(model_b, tokenizer_b, tokenized_b, edges, batch_size, window)
    comparison = paired_block_bootstrap(
        scored_a.log_probs,
        scored_b.log_probs,
        scored_a.targets,
        scored_a.bin_of_token,
        edges=edges,
        block_size=block_size,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        generator=seed,
    )
    comparison["seed"] = int(seed)
    return {
        "a": _evaluation_result(scored_a, path_a, data),
        "b": _evaluation_result(scored_b, path_b, data),
        "comparison": comparison,
    }
