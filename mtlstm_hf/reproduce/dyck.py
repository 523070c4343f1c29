"""The Dyck-2 experiment of Mahto et al. (ICLR 2021, section 5): does a multi-timescale LSTM
track bracket types over longer spans than a standard one?

Task (:mod:`mtlstm_hf.data.dyck`): per symbol of a Dyck-2 word, predict the bracket type on top
of the stack (2 bits). Models: :class:`~mtlstm_hf.MTLSTMForTokenClassification` with one LSTM
layer of 256 units reading a frozen one-hot encoding of the 4 symbols (padding encodes to
zeros and is never fed to the recurrence), as the reference's ``model_dyckn.py`` does:

- ``baseline``: a standard LSTM, everything trainable (PyTorch's default initialisation);
- ``multi_timescale``: forget biases from the endpoint-free quantiles of InverseGamma(alpha=1.5,
  scale=1), input biases their negatives, and every gate bias frozen (``frozen_biases="all"``).

Training: Adam (lr 1e-4), batches of 32 words, gradient norm clipped at 1.0, one full
backpropagation through each word (the reference's ``seq_length=200`` covers whole words),
the final model evaluated. Batches are right-padded and run without ``attention_mask`` (the
padding after a word cannot change a forward LSTM's outputs on it; ``-100`` labels keep it out of
the loss), which is about twice as fast on CPU. A test word is correct when every bit of every position is right
(threshold 0.5 on the sigmoid); accuracy is reported overall and by longest-span bin, with the
mean and a 95% Student-t interval over seeds (:mod:`.statistics`).

Differences from the reference code (github HuthLab/multi-timescale-LSTM-LMs, ``run_dyckn.py``,
``experiments.py``, ``model_dyckn.py``), each kept deliberate and visible:

- loss: binary cross-entropy with logits over the kept positions (transformers' multi-label
  convention) by default; ``loss="mse"`` gives the reference's mean squared error of the sigmoid
  outputs (its ``MSELoss(reduction="sum") / (N * symbols)``);
- frozen cell/output biases of the multi-timescale model start as the sum of two
  ``U(-1/sqrt(H), 1/sqrt(H))`` draws (this library's free-bias initialisation); the reference
  leaves one such draw (its ``bias_ih`` is zeroed);
- the reference trains up to 2000 epochs (the run names in its ``plot_dyckn_results.py``) and
  stops once the validation MSE falls below 1e-4; here ``epochs`` is a parameter and
  ``stop_below_validation_loss`` (off by default) the optional stop, on this run's loss;
- span bins: the reference's plot uses ``linspace(2, longest test word, 10)``; here the edges are
  ``linspace(2, max_length, 10)`` (:func:`span_bin_edges`), fixed by the settings so that seeds and
  arms share bins; with the paper's 5,000 test words the longest is at or near 200 and the two agree.

The reported accuracies (:data:`PAPER_ACCURACY`) are Mahto et al.'s (ICLR 2021, section 5), not
checked against the paper or its data; nothing here claims they hold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ..command_line import check_seed
from ..data.dyck import (
    IGNORE_INDEX,
    NUM_LABELS,
    PAD_ID,
    PAPER_MAX_LENGTH,
    PAPER_SPLIT_SIZES,
    VOCAB_SIZE,
    Dyck2Data,
    encode_word,
    generate_dyck2,
    longest_span,
    stack_top_targets,
    word_list,
)
from ..models.mtlstm import REGULARIZATION_OFF, MTLSTMConfig, MTLSTMForTokenClassification
from ..models.mtlstm.checks import is_plain_number
from .scales import ARMS
from .statistics import mean_confidence_interval, welch_difference
from .summary import dyck_summary

PAPER_ACCURACY: dict[str, float] = {"multi_timescale": 0.9382, "baseline": 0.9166}
"""Test sequence accuracy reported for the Dyck-2 task, mean over :data:`PAPER_NUM_SEEDS` seeds.
Source: Mahto et al., ICLR 2021 (arXiv 2009.12727), section 5; unverified."""

PAPER_NUM_SEEDS: int = 20
"""Seeds per arm in the paper (and ``plot_dyckn_results.py``: seeds 1 to 20)."""

LOSSES: tuple[str, ...] = ("bce", "mse")


@dataclass
class DyckSettings:
    """Everything that defines a Dyck-2 run; the defaults are the paper's sizes.

    Attributes:
        num_train, num_validation, num_test: split sizes (words).
        max_length: longest word, in symbols.
        data_seed: seed of the generator (:func:`mtlstm_hf.data.dyck.generate_dyck2`); the data
            are the same for every model seed, as in the reference (one data set, many runs).
        hidden_size: LSTM units.
        alpha, scale: the multi-timescale arm's inverse gamma shape and scale.
        one_hot_inputs: a frozen one-hot input encoding (the reference); ``False`` learns an
            embedding of the same width (5).
        epochs: passes over the training words (the reference's ``run_dyckn.py`` default is 50).
        max_steps: stop after this many optimiser steps (``None``: no limit).
        batch_size, learning_rate: Adam's batches (words) and step size.
        clip_grad_norm: gradient norm clip (``None``: none); 1.0 in the reference.
        loss: ``bce`` (default) or ``mse`` (the reference's), see the module docstring.
        threshold: a bit is predicted 1 when its sigmoid exceeds this.
        num_span_bins: bins of the longest span between 2 and ``max_length``.
        validate_every_epoch: record validation loss and accuracy after each epoch.
        stop_below_validation_loss: stop once the validation loss is below this (``None``: never);
            needs ``validate_every_epoch``.
        eval_batch_size: words per batch when evaluating.
    """

    num_train: int = PAPER_SPLIT_SIZES["train"]
    num_validation: int = PAPER_SPLIT_SIZES["validation"]
    num_test: int = PAPER_SPLIT_SIZES["test"]
    max_length: int = PAPER_MAX_LENGTH
    data_seed: int = 0
    hidden_size: int = 256
    alpha: float = 1.5
    scale: float = 1.0
    one_hot_inputs: bool = True
    epochs: int = 50
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
    clip_grad_norm: float | None = 1.0
    loss: str = "bce"
    threshold: float = 0.5
    num_span_bins: int = 9
    validate_every_epoch: bool = True
    stop_below_validation_loss: float | None = None
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field and what is allowed."""
        minimums = {
            "num_train": 1,
            "num_validation": 0,
            "num_test": 1,
            "max_length": 2,
            "data_seed": 0,
            "hidden_size": 1,
            "epochs": 0,
            "batch_size": 1,
            "num_span_bins": 1,
            "eval_batch_size": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ValueError(f"max_steps must be None or an integer >= 1, got {self.max_steps!r}.")
        positive = {"alpha": self.alpha, "scale": self.scale, "learning_rate": self.learning_rate}
        for name, value in positive.items():
            if not is_plain_number(value) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if self.clip_grad_norm is not None and (
            not is_plain_number(self.clip_grad_norm) or not 0 < self.clip_grad_norm < math.inf
        ):
            raise ValueError(f"clip_grad_norm must be None or a finite number > 0, got {self.clip_grad_norm!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}.")
        if not is_plain_number(self.threshold) or not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be a number in (0, 1), got {self.threshold!r}.")
        for name in ("one_hot_inputs", "validate_every_epoch"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.stop_below_validation_loss is not None:
            if not is_plain_number(self.stop_below_validation_loss) or not self.stop_below_validation_loss > 0:
                raise ValueError(
                    f"stop_below_validation_loss must be None or a number > 0, got {self.stop_below_validation_loss!r}."
                )
            if not self.validate_every_epoch or self.num_validation == 0:
                raise ValueError("stop_below_validation_loss needs validate_every_epoch=True and num_validation >= 1.")


def _check_arm(arm: str) -> str:
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {list(ARMS)}, got {arm!r}.")
    return arm


def span_bin_edges(max_length: int, num_bins: int = 9) -> np.ndarray:
    """Edges of the longest-span bins: ``linspace(2, max_length, num_bins + 1)`` (float64,
    ``num_bins + 1`` values, in symbols). Bin ``i`` holds spans ``edges[i] <= s < edges[i + 1]``,
    the last bin also ``s == max_length`` (``numpy.histogram``'s convention). For ``max_length=200``
    the edges are 2, 24, 46, ..., 200.

    Raises:
        ValueError: ``max_length < 3`` (no width between 2 and it) or ``num_bins < 1``.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
        raise ValueError(f"max_length must be an integer >= 3 for span bins, got {max_length!r}.")
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}.")
    return np.linspace(2.0, float(max_length), num_bins + 1)


def span_bin_index(spans: Sequence[int] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each span under :func:`span_bin_edges`' convention, ``(N,)`` int64 in
    ``[0, len(edges) - 1)``.

    Raises:
        ValueError: a span outside ``[edges[0], edges[-1]]``.
    """
    spans = np.asarray(spans, dtype=np.float64)
    if spans.size and (spans.min() < edges[0] or spans.max() > edges[-1]):
        raise ValueError(f"spans must lie in [{edges[0]}, {edges[-1]}], got {spans.min()} to {spans.max()}.")
    index = np.searchsorted(edges, spans, side="right") - 1
    return np.minimum(index, len(edges) - 2).astype(np.int64)


def dyck_data(settings: DyckSettings | None = None) -> Dyck2Data:
    """The splits of ``settings`` (default: the paper's sizes): :func:`~mtlstm_hf.data.dyck.generate_dyck2`
    with its sizes, ``max_length`` and ``data_seed``, the same for every model seed and arm."""
    settings = settings or DyckSettings()
    return generate_dyck2(
        settings.data_seed,
        num_train=settings.num_train,
        num_validation=settings.num_validation,
        num_test=settings.num_test,
        max_length=settings.max_length,
    )


def dyck_config(arm: str, settings: DyckSettings | None = None) -> MTLSTMConfig:
    """The configuration of one arm: vocabulary 5 (4 symbols + padding), embedding width 5,
    one layer of ``settings.hidden_size`` units, no dropout or AR/TAR, 2 labels,
    ``problem_type="multi_label_classification"``; ``multi_timescale`` adds the inverse gamma
    schedule (endpoint-free grid) with every bias frozen.

    Raises:
        ValueError: an unknown ``arm`` (allowed: :data:`ARMS`).
    """
    settings = settings or DyckSettings()
    schedules = None
    if _check_arm(arm) == "multi_timescale":
        schedules = [
            {"type": "inverse_gamma", "alpha": settings.alpha, "beta": settings.scale, "grid": "endpoint_free"}
        ]
    return MTLSTMConfig(
        vocab_size=VOCAB_SIZE,
        embedding_size=VOCAB_SIZE,
        hidden_sizes=[settings.hidden_size],
        tie_word_embeddings=False,
        timescale_schedules=schedules,
        frozen_biases="all",
        **REGULARIZATION_OFF,
        num_labels=NUM_LABELS,
        problem_type="multi_label_classification",
        pad_token_id=PAD_ID,
        use_cache=False,
    )


def build_dyck_model(
    arm: str, seed: int, settings: DyckSettings | None = None, device: torch.device | str = "cpu"
) -> MTLSTMForTokenClassification:
    """A freshly initialised model of ``arm`` (``torch.manual_seed(seed)`` first, on the CPU, so that
    every device starts from the same weights) on ``device``. With ``settings.one_hot_inputs`` the
    embedding is the identity on the 4 symbols (padding row zero) and frozen.

    Raises:
        ValueError: an unknown ``arm``.
    """
    settings = settings or DyckSettings()
    config = dyck_config(arm, settings)
    torch.manual_seed(seed)
    model = MTLSTMForTokenClassification(config)
    if settings.one_hot_inputs:
        one_hot = torch.eye(VOCAB_SIZE)
        one_hot[PAD_ID] = 0.0
        with torch.no_grad():
            model.model.embeddings.weight.copy_(one_hot)
        model.model.embeddings.weight.requires_grad_(False)
    return model.to(device)


class EncodedWords:
    """Input ids, targets (:func:`~mtlstm_hf.data.dyck.stack_top_targets`) and longest spans of
    a list of words, computed once; :meth:`batch` pads a selection of them.

    Raises:
        ValueError: a single string instead of a list of words, or a word that is not a balanced
            Dyck-2 word.
    """

    def __init__(self, words: Sequence[str]) -> None:
        self.words = word_list(words)
        self.ids = [torch.tensor(encode_word(word), dtype=torch.int64) for word in self.words]
        self.targets = [torch.from_numpy(stack_top_targets(word)) for word in self.words]
        self.spans = np.array([longest_span(word) for word in self.words], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.words)

    def batch(
        self, rows: Sequence[int], with_mask: bool = False, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """The tensors of :func:`mtlstm_hf.data.dyck.collate_dyck` for these words on ``device``,
        without ``attention_mask`` unless ``with_mask``.

        The padding is on the right, and a forward LSTM's outputs at a word's symbols do not
        depend on the padding after them, so the model runs without the mask (torch's unpacked
        LSTM kernel, about twice as fast on CPU as the packed one the mask selects) and the
        padding is left out of the loss and the predictions by its ``-100`` labels.
        """
        ids = pad_sequence([self.ids[row] for row in rows], batch_first=True, padding_value=PAD_ID)
        labels = pad_sequence([self.targets[row] for row in rows], batch_first=True, padding_value=float(IGNORE_INDEX))
        batch = {"input_ids": ids, "labels": labels}
        if with_mask:
            batch["attention_mask"] = (ids != PAD_ID).to(torch.int64)
        return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def batch_loss(model: MTLSTMForTokenClassification, batch: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """The training loss of one batch (:meth:`EncodedWords.batch`), a 0-d tensor: ``bce``, the
    model's own loss (mean binary cross-entropy over the entries whose label is not ``-100``), or
    ``mse``, the mean squared error of the sigmoid outputs over those entries (the reference's)."""
    output = model(**batch, check_values=False)  # our own encoded words: no read from the device per step
    if kind == "bce":
        return output.loss
    kept = batch["labels"] != IGNORE_INDEX
    return (torch.sigmoid(output.logits[kept]) - batch["labels"][kept]).pow(2).mean()


@torch.no_grad()
def predict(
    model: MTLSTMForTokenClassification, words: Sequence[str] | EncodedWords, settings: DyckSettings | None = None
) -> tuple[list[np.ndarray], float]:
    """Predicted bits of every word and the mean loss.

    Returns:
        ``(predictions, loss)``: one ``(len(word), 2)`` bool array per word (sigmoid above
        ``settings.threshold``), and the loss (``settings.loss``) averaged over all kept entries.
    """
    settings = settings or DyckSettings()
    encoded = words if isinstance(words, EncodedWords) else EncodedWords(words)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions: list[np.ndarray] = []
    total, count = 0.0, 0
    for start in range(0, len(encoded), settings.eval_batch_size):
        rows = list(range(start, min(start + settings.eval_batch_size, len(encoded))))
        batch = encoded.batch(rows, device=device)
        # Right padding: see EncodedWords.batch; the encoded words need no check of their values.
        logits = model(input_ids=batch["input_ids"], check_values=False).logits
        kept = batch["labels"] != IGNORE_INDEX
        target = batch["labels"][kept]
        if settings.loss == "bce":
            losses = torch.nn.functional.binary_cross_entropy_with_logits(logits[kept], target, reduction="sum")
        else:
            losses = (torch.sigmoid(logits[kept]) - target).pow(2).sum()
        # One batch of predictions comes back to the host anyway: the loss is read with it.
        total += float(losses)
        count += int(target.numel())
        bits = (torch.sigmoid(logits) > settings.threshold).cpu().numpy()
        for offset, row in enumerate(rows):
            predictions.append(bits[offset, : len(encoded.words[row])].copy())
    model.train(was_training)
    return predictions, total / max(count, 1)


def sequence_correct(predictions: Sequence[np.ndarray], words: Sequence[str]) -> np.ndarray:
    """``(N,)`` bool: word ``n`` is correct when every bit of every position of
    ``predictions[n]`` equals :func:`~mtlstm_hf.data.dyck.stack_top_targets` of ``words[n]``.

    Raises:
        ValueError: a single string instead of a list of words, different counts, or a prediction
            whose shape is not ``(len(word), 2)``.
    """
    words = word_list(words)
    if len(predictions) != len(words):
        raise ValueError(f"predictions and words must have the same length, got {len(predictions)} and {len(words)}.")
    correct = np.zeros(len(words), dtype=bool)
    for index, (bits, word) in enumerate(zip(predictions, words)):
        target = stack_top_targets(word) > 0.5
        if np.shape(bits) != target.shape:
            raise ValueError(f"predictions[{index}] must have shape {target.shape}, got {np.shape(bits)}.")
        correct[index] = bool(np.all(np.asarray(bits, dtype=bool) == target))
    return correct


def accuracy_by_span(correct: np.ndarray, spans: np.ndarray, edges: np.ndarray) -> tuple[list[float], list[int]]:
    """Per span bin, ``(accuracies, counts)``: the fraction of correct words (NaN for an empty
    bin) and the number of words."""
    index = span_bin_index(spans, edges)
    accuracies, counts = [], []
    for bin_ in range(len(edges) - 1):
        members = index == bin_
        counts.append(int(members.sum()))
        accuracies.append(float(correct[members].mean()) if members.any() else math.nan)
    return accuracies, counts


@dataclass
class DyckRun:
    """One trained model's results.

    Attributes:
        arm, seed: which model and the seed of its initialisation and batch order.
        accuracy: fraction of test words with every position right.
        correct: ``(num_test,)`` bool per test word.
        predictions: per test word, the ``(len, 2)`` bool predicted bits.
        span_accuracy, span_counts: per span bin (:func:`span_bin_edges`), accuracy (NaN when
            empty) and number of test words.
        history: per epoch ``{"epoch", "steps", "train_loss", "validation_loss",
            "validation_accuracy"}`` (validation entries ``None`` when not measured).
        steps: optimiser steps taken; seconds: wall time of training and evaluation.
    """

    arm: str
    seed: int
    accuracy: float
    correct: np.ndarray
    predictions: list[np.ndarray]
    span_accuracy: list[float]
    span_counts: list[int]
    history: list[dict[str, Any]]
    steps: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (no per-word arrays)."""
        return {
            "arm": self.arm,
            "seed": self.seed,
            "accuracy": self.accuracy,
            "num_correct": int(self.correct.sum()),
            "num_test": int(self.correct.size),
            "span_accuracy": self.span_accuracy,
            "span_counts": self.span_counts,
            "history": self.history,
            "steps": self.steps,
            "seconds": self.seconds,
        }


def run_dyck_seed(
    arm: str,
    seed: int,
    data: Dyck2Data,
    settings: DyckSettings | None = None,
    log: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
) -> DyckRun:
    """Train one model of ``arm`` on ``data["train"]`` and evaluate it on ``data["test"]``, on
    ``device`` (default: CUDA when available, else the CPU; :func:`mtlstm_hf.devices.resolve_device`).

    Seeds: ``torch.manual_seed(seed)`` before building the model (on the CPU, then moved); the
    batch order of epoch ``e`` is ``torch.randperm`` of a CPU generator seeded with
    ``seed * 1_000_003 + e``. torch's intra-op thread count is left as it is (results can differ
    in the last bits between thread counts, and between devices).

    Raises:
        ValueError: an unknown ``arm``, a ``seed`` that is not an integer in ``[0, 2**32)``, or
            ``data`` made with another ``max_length`` than ``settings.max_length``.
        UnavailableDeviceError: ``device`` does not exist here.
    """
    from ..devices import resolve_device

    settings = settings or DyckSettings()
    _check_arm(arm)
    check_seed(seed)
    if data.max_length != settings.max_length:
        raise ValueError(
            f"data has max_length={data.max_length} but settings.max_length={settings.max_length}; they must match "
            f"(the span bins are fixed by settings.max_length)."
        )
    device = resolve_device(device)
    started = time.perf_counter()
    train, validation, test = (EncodedWords(data[name]) for name in ("train", "validation", "test"))
    model = build_dyck_model(arm, seed, settings, device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate)
    history: list[dict[str, Any]] = []
    steps = 0
    for epoch in range(settings.epochs):
        if settings.max_steps is not None and steps >= settings.max_steps:
            break
        model.train()
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
        # Summed on the device (in float64, the arithmetic of a Python float sum) and read once per epoch.
        loss_sum, batches = torch.zeros((), dtype=torch.float64, device=device), 0
        for start in range(0, len(order), settings.batch_size):
            if settings.max_steps is not None and steps >= settings.max_steps:
                break
            batch = train.batch(order[start : start + settings.batch_size], device=device)
            loss = batch_loss(model, batch, settings.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, settings.clip_grad_norm)
            optimizer.step()
            steps += 1
            loss_sum += loss.detach().double()
            batches += 1
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "steps": steps,
            "train_loss": float(loss_sum) / max(batches, 1),
            "validation_loss": None,
            "validation_accuracy": None,
        }
        if settings.validate_every_epoch and len(validation):
            predictions, validation_loss = predict(model, validation, settings)
            record["validation_loss"] = validation_loss
            record["validation_accuracy"] = float(sequence_correct(predictions, validation.words).mean())
        history.append(record)
        if log is not None:
            log(
                f"{arm} seed {seed} epoch {epoch + 1}: train loss {record['train_loss']:.5f}"
                + (
                    f", validation loss {record['validation_loss']:.5f}, accuracy {record['validation_accuracy']:.4f}"
                    if record["validation_loss"] is not None
                    else ""
                )
            )
        if (
            settings.stop_below_validation_loss is not None
            and record["validation_loss"] is not None
            and record["validation_loss"] < settings.stop_below_validation_loss
        ):
            break
    predictions, _ = predict(model, test, settings)
    correct = sequence_correct(predictions, test.words)
    span_accuracy, span_counts = accuracy_by_span(
        correct, test.spans, span_bin_edges(settings.max_length, settings.num_span_bins)
    )
    return DyckRun(
        arm=arm,
        seed=seed,
        accuracy=float(correct.mean()),
        correct=correct,
        predictions=predictions,
        span_accuracy=span_accuracy,
        span_counts=span_counts,
        history=history,
        steps=steps,
        seconds=time.perf_counter() - started,
    )


@dataclass
class DyckExperiment:
    """Results of :func:`run_dyck_experiment`.

    Attributes:
        settings: the :class:`DyckSettings` used.
        seeds: the model seeds, the same for every arm.
        span_edges: the span bin edges (symbols).
        test_spans: ``(num_test,)`` longest span of each test word.
        runs: every :class:`DyckRun`, arm by arm, seed by seed.
        arms: per arm ``{"accuracies": [...] (per seed), "mean", "ci95": [low, high],
            "span_accuracy_mean": [...], "span_accuracy_ci95": [[low, high], ...]}`` (95% t
            intervals over seeds cut at 0 and 1, NaN where undefined), read from ``summary``.
        difference: multi-timescale minus baseline mean accuracy with Welch's 95% interval
            (``scipy.stats.ttest_ind(equal_var=False)``) and p-value; ``None`` unless both arms ran
            with at least 2 seeds.
        data: how the data were made (sizes, seed, raw draws).
        summary: the numbers over seeds as ``mtlstm-reproduce dyck2`` reports them for these runs
            (:func:`mtlstm_hf.reproduce.summary.dyck_summary`, its ``report.json`` ``summary``).
        paper: the reported accuracies and seed count (:data:`PAPER_ACCURACY`), unverified.
    """

    settings: DyckSettings
    seeds: list[int]
    span_edges: list[float]
    test_spans: np.ndarray
    runs: list[DyckRun]
    arms: dict[str, dict[str, Any]]
    difference: dict[str, float] | None
    data: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(
        default_factory=lambda: {
            "accuracy": dict(PAPER_ACCURACY),
            "num_seeds": PAPER_NUM_SEEDS,
            "source": "Mahto et al., ICLR 2021 (arXiv 2009.12727), section 5; unverified",
        }
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready results (per-run summaries; no per-word arrays)."""
        return {
            "settings": asdict(self.settings),
            "seeds": self.seeds,
            "span_edges": self.span_edges,
            "data": self.data,
            "arms": self.arms,
            "difference": self.difference,
            "summary": self.summary,
            "runs": [run.summary() for run in self.runs],
            "paper": self.paper,
        }


def run_dyck_experiment(
    settings: DyckSettings | None = None,
    seeds: Sequence[int] = (1, 2, 3),
    arms: Sequence[str] = ARMS,
    data: Dyck2Data | None = None,
    log: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
) -> DyckExperiment:
    """Train and evaluate every arm with every seed on one data set; summarise over seeds.

    Args:
        settings: sizes and training (:class:`DyckSettings`; default: the paper's sizes, 50 epochs).
        seeds: model seeds, distinct integers in ``[0, 2**32)`` (the paper used 1 to 20).
        arms: a subset of :data:`ARMS`.
        data: the splits; default :func:`~mtlstm_hf.data.dyck.generate_dyck2` with the settings'
            sizes, ``max_length`` and ``data_seed``.
        log: called with one line per epoch of each run.
        device: where to train and evaluate (default: CUDA when available, else the CPU).

    Raises:
        ValueError: no seeds, repeated seeds, a seed outside ``[0, 2**32)``, an unknown or repeated
            arm (or one string instead of a list of arms), or ``data`` whose split sizes or
            ``max_length`` differ from ``settings``.
    """
    settings = settings or DyckSettings()
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers from 0 to 2**32 - 1 (at least one), got {seeds!r}.")
    for seed in seeds:
        check_seed(seed, "each of seeds")
    if isinstance(arms, str):
        raise ValueError(
            f"arms must be a list of names from {list(ARMS)}, got the single string {arms!r}; write [{arms!r}]."
        )
    arms = [_check_arm(arm) for arm in arms]
    if not arms or len(set(arms)) != len(arms):
        raise ValueError(f"arms must be distinct names from {list(ARMS)} (at least one), got {arms!r}.")
    if data is None:
        data = dyck_data(settings)
    expected = {"train": settings.num_train, "validation": settings.num_validation, "test": settings.num_test}
    actual = {name: len(data[name]) for name in expected}
    if actual != expected:
        raise ValueError(f"data has split sizes {actual} but settings ask for {expected}; they must match.")
    runs = [run_dyck_seed(arm, seed, data, settings, log, device) for arm in arms for seed in seeds]
    edges = span_bin_edges(settings.max_length, settings.num_span_bins)
    # The numbers over seeds of mtlstm-reproduce dyck2's report: one code path, one interval rule.
    summary = dyck_summary([run.summary() for run in runs], edges.tolist())
    arm_summaries: dict[str, dict[str, Any]] = {}
    for arm in arms:
        stats = summary["arms"][arm]
        arm_summaries[arm] = {
            "accuracies": [run.accuracy for run in runs if run.arm == arm],
            "mean": stats["accuracy"]["mean"],
            "ci95": stats["accuracy"]["ci95"],
            "span_accuracy_mean": [entry["mean"] for entry in stats["span_accuracy"]],
            "span_accuracy_ci95": [entry["ci95"] for entry in stats["span_accuracy"]],
        }
    difference = None
    if set(ARMS) <= set(arms) and len(seeds) >= 2:
        difference = {key: summary["difference"][key] for key in ("mean", "ci95", "p_value")}
    test_spans = np.array([longest_span(word) for word in data["test"]], dtype=np.int64)
    return DyckExperiment(
        settings=settings,
        seeds=seeds,
        span_edges=edges.tolist(),
        test_spans=test_spans,
        runs=runs,
        arms=arm_summaries,
        difference=difference,
        summary=summary,
        data={
            "seed": data.seed,
            "sizes": {name: len(data[name]) for name in ("train", "validation", "test")},
            "max_length": data.max_length,
            "num_draws": data.num_draws,
            "test_span_counts": np.bincount(span_bin_index(test_spans, edges), minlength=len(edges) - 1).tolist(),
        },
    )


__all__ = [
    "ARMS",
    "welch_difference",
    "DyckExperiment",
    "DyckRun",
    "DyckSettings",
    "EncodedWords",
    "LOSSES",
    "PAPER_ACCURACY",
    "PAPER_NUM_SEEDS",
    "accuracy_by_span",
    "batch_loss",
    "build_dyck_model",
    "dyck_config",
    "dyck_data",
    "mean_confidence_interval",
    "predict",
    "run_dyck_experiment",
    "run_dyck_seed",
    "sequence_correct",
    "span_bin_edges",
    "span_bin_index",
]
