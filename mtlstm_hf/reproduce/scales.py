"""How big each experiment of ``mtlstm-reproduce`` runs at each scale, as plain data (no torch
import: ``mtlstm-reproduce --help`` lists them in a second).

Scales:

- ``smoke``: seconds. A generated corpus written into the output folder (language models) or a
  few hundred Dyck words, tiny models, 1-2 epochs, 2 seeds. It checks that the pipeline runs and
  that every number of the report comes from the runs; its numbers say nothing about the paper.
- ``cpu``: what 2 quiet CPU cores finish in about 2 hours (``lm-ptb``) / 1 hour (``dyck2``):
  smaller models, fewer epochs, 3 seeds per arm, sized from measured throughput (the numbers
  and the arithmetic are in each scale's ``sizing`` text). Every reduction relative to the paper is
  listed in the scale's ``reductions`` and printed in ``REPORT.md``.
- ``paper``: the paper's sizes and epochs (Dyck-2: 20 seeds); before training, the expected
  time is printed from a measured throughput of a few steps. Several GPUs: ``--processes N`` for
  one run per GPU (:mod:`.workers`), or ``torchrun`` / ``accelerate launch`` to split each run's
  rows (a number of processes that divides the batch and the evaluation batch of 10).

Each scale names the torch threads it was sized for (``threads``; ``--threads`` overrides it;
``None``: torch's default). Each language-model scale gives: the model sizes (``model_overrides`` of the ``paper*``
presets, whose schedules and dropouts are kept), the training budget and batch, the seeds, the
bootstrap resamples and the ablation chunk size. Each Dyck-2 scale gives the fields of
:class:`mtlstm_hf.reproduce.dyck.DyckSettings` that differ from the paper's, and the seeds.
"""

from __future__ import annotations

import copy
from typing import Any

ARMS: tuple[str, ...] = ("baseline", "multi_timescale")
"""The two models every experiment compares, in the order of the paired comparison (language
models: A = baseline, B = multi-timescale): a standard LSTM and the multi-timescale LSTM."""

SCALES: tuple[str, ...] = ("smoke", "cpu", "paper")
"""The scales, smallest first."""

RECIPES: tuple[str, ...] = ("library", "reference")
"""``library``: the ``paper*`` presets as this library trains them (recurrent weights train; the
library's loop); ``reference``: the published training, step for step: the reference code's
exact model (``paper-reference`` presets: its layer-2 grid with the T = 0 unit, every gate bias
of layers 1-2 frozen), its recurrent weights kept at their initial values in both arms (its
weight-drop wrapper never trains them) and its training loop (``replay_reference_loop``)."""
DEFAULT_RECIPE = "library"
"""The recipe of a language-model experiment when ``--recipe`` is not given."""

LM_EXPERIMENTS: dict[str, dict[str, Any]] = {
    "lm-ptb": {
        "corpus": "ptb",
        "presets": {"baseline": "paper-baseline", "multi_timescale": "paper"},
        "reference_presets": {"baseline": "paper-baseline", "multi_timescale": "paper-reference"},
        "batch_size": 20,
        "paper_seed": 141,
    },
    "lm-wikitext2": {
        "corpus": "wikitext-2",
        "presets": {"baseline": "paper-wikitext2-baseline", "multi_timescale": "paper-wikitext2"},
        "reference_presets": {"baseline": "paper-wikitext2-baseline", "multi_timescale": "paper-wikitext2-reference"},
        "batch_size": 80,
        "paper_seed": 1882,
    },
}
"""Per language-model experiment: the corpus folder name (``../shared/data/<corpus>``), the
training presets of the two arms (``recipe="library"``) and of the reference code's conditions
(``recipe="reference"``: its layer-2 grid and frozen gate biases, recurrent weights frozen in both
arms), the paper's training batch and the reference code's seed."""

PAPER_LM = {"embedding_size": 400, "hidden_sizes": [1150, 1150, 400], "epochs": 1000, "bptt": 70}
"""The paper's language model and budget (embedding 400, LSTM 1150/1150/400, 1000 epochs, BPTT 70)."""

LM_EXTRA_REDUCTIONS: dict[tuple[str, str], list[str]] = {
    ("lm-wikitext2", "cpu"): ["sized for PTB: WikiText-2 has 2.2x the tokens, so about 2.2x the time"],
}
"""Reductions of one experiment at one scale beyond the scale's own, by ``(experiment, scale)``."""

_LM_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "model_overrides": {"embedding_size": 16, "hidden_sizes": [32, 32, 16]},
        "epochs": 2,
        "batch_size": 10,
        "bptt": 20,
        "eval_batch_size": 10,  # divisible by 2 and 5 processes, as at the other scales
        "seeds": [1, 2],
        "n_resamples": 200,
        "chunk_size": 8,
        "generated_corpus": True,
        "threads": 1,
        "sizing": "seconds: a generated corpus (about 40,000 training tokens) and tiny models",
        "reductions": [
            "generated corpus (not PTB / WikiText-2)",
            "embedding 16, LSTM 32/32/16 (paper 400, 1150/1150/400)",
            "2 epochs (paper 1000)",
            "batch 10, BPTT 20 (paper 20 / 80, BPTT 70)",
            "2 seeds per arm",
            "200 bootstrap resamples (paper 10,000)",
            "ablation chunks of 8 units (paper 50)",
        ],
    },
    "cpu": {
        "model_overrides": {"embedding_size": 200, "hidden_sizes": [400, 400, 200]},
        "epochs": 3,
        "batch_size": None,  # the experiment's (PTB 20, WikiText-2 80)
        "bptt": 70,
        "eval_batch_size": 10,
        "seeds": [1, 2, 3],
        "n_resamples": 10_000,
        "chunk_size": 50,
        "generated_corpus": False,
        "threads": 1,
        "sizing": (
            "lm-ptb on this project's 2-core Xeon with 1 torch thread (measured with the real loop, load average "
            "about 2 from other processes): the small sizes (embedding 200, LSTM 400/400/200, PTB vocabulary) train at "
            "2,900 tokens/s (5.3 min per PTB epoch of 929,560 tokens) and score the test split at batch 1 at 3,700 "
            "tokens/s; 6 runs x 3 epochs = 96 min of training, plus per seed 4 test passes, the timescale estimate and "
            "the ablation pass (about 3 min): about 1 h 50 min. 1 thread because a second thread made batch-1 "
            "evaluation 28x slower beside other processes (130 tokens/s at load 3.6), while it trains at 5,050 "
            "tokens/s on a quiet machine (--threads 2 there)"
        ),
        "reductions": [
            "embedding 200, LSTM 400/400/200 (paper 400, 1150/1150/400)",
            "3 epochs (paper 1000): far from converged, absolute perplexities are not comparable",
            "3 seeds per arm (the paper reports one model per arm)",
        ],
    },
    "paper": {
        "model_overrides": {},
        "epochs": 1000,
        "batch_size": None,
        "bptt": 70,
        "eval_batch_size": 10,
        "seeds": None,  # the reference seed and the two after it
        "n_resamples": 10_000,
        "chunk_size": 50,
        "generated_corpus": False,
        "threads": None,
        # A PTB epoch takes seconds on a GPU and a checkpoint of the paper's model about 200 MB: every
        # 10th epoch (and on interruption and at the end) costs a crash at most 10 epochs.
        "save_every_epochs": 10,
        "sizing": "the paper's sizes and budget; the expected time is printed before training",
        "reductions": [],
    },
}

_DYCK_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "settings": {
            "num_train": 200,
            "num_validation": 50,
            "num_test": 100,
            "max_length": 40,
            "hidden_size": 16,
            "epochs": 2,
            "learning_rate": 3e-2,
        },
        "seeds": [1, 2],
        "threads": 1,
        "sizing": "seconds: 200/50/100 words of at most 40 symbols, 16 units",
        "reductions": [
            "200 / 50 / 100 words of at most 40 symbols (paper 10,000 / 2,000 / 5,000 of at most 200)",
            "16 units (paper 256)",
            "2 epochs (paper: up to 2,000, stopping at validation MSE < 1e-4)",
            "learning rate 3e-2 (paper 1e-4)",
            "2 seeds per arm (paper 20)",
        ],
    },
    "cpu": {
        "settings": {"epochs": 15},
        "seeds": [1, 2, 3],
        "threads": 1,
        "sizing": (
            "dyck2 on this project's 2-core Xeon with 1 torch thread: one full-size epoch (10,000 words, 256 units, "
            "batch 32) takes 32.7 s (baseline) / 34.4 s (multi-timescale), validation 2.3 s, test 6.0 s "
            "(benchmarks/bench_dyck.py); 6 runs x (15 epochs x 36 s + 6 s) = about 55 min"
        ),
        "reductions": [
            "15 epochs (paper: up to 2,000, stopping at validation MSE < 1e-4): far from converged",
            "3 seeds per arm (paper 20)",
        ],
    },
    "paper": {
        "settings": {"epochs": 2000, "stop_below_validation_loss": 1e-4, "loss": "mse"},
        "seeds": list(range(1, 21)),
        "threads": None,
        "sizing": "the paper's sizes, 20 seeds, up to 2,000 epochs stopping at validation MSE < 1e-4",
        "reductions": [],
    },
}


def lm_scale(experiment: str, scale: str) -> dict[str, Any]:
    """The settings of language-model ``experiment`` at ``scale`` (a copy; ``batch_size`` and
    ``seeds`` filled in from the experiment where the scale leaves them open).

    Raises:
        ValueError: an unknown experiment or scale, naming the allowed ones.
    """
    check_scale(scale)
    if experiment not in LM_EXPERIMENTS:
        raise ValueError(f"{experiment!r} is not a language-model experiment; those are {sorted(LM_EXPERIMENTS)}.")
    values = copy.deepcopy(_LM_SCALES[scale])
    scale_batch = values["batch_size"]  # the scale's batch wins; None: the experiment's (the paper's)
    values.update(copy.deepcopy(LM_EXPERIMENTS[experiment]))
    values["batch_size"] = LM_EXPERIMENTS[experiment]["batch_size"] if scale_batch is None else scale_batch
    if values["seeds"] is None:
        first = LM_EXPERIMENTS[experiment]["paper_seed"]
        values["seeds"] = [first, first + 1, first + 2]
    values["reductions"] = [*values["reductions"], *LM_EXTRA_REDUCTIONS.get((experiment, scale), [])]
    return values


def dyck_scale(scale: str) -> dict[str, Any]:
    """The Dyck-2 settings at ``scale`` (a copy): ``settings`` (fields of ``DyckSettings`` that
    differ from the paper's defaults), ``seeds``, ``sizing``, ``reductions``.

    Raises:
        ValueError: an unknown scale.
    """
    check_scale(scale)
    return copy.deepcopy(_DYCK_SCALES[scale])


def check_scale(scale: str | None) -> str:
    """``scale`` if it is one of :data:`SCALES`, else ``ValueError`` naming them."""
    if scale is None or scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}.")
    return scale


__all__ = [
    "ARMS",
    "DEFAULT_RECIPE",
    "LM_EXPERIMENTS",
    "LM_EXTRA_REDUCTIONS",
    "PAPER_LM",
    "RECIPES",
    "SCALES",
    "check_scale",
    "dyck_scale",
    "lm_scale",
]
