"""The model card (``README.md``) published with a checkpoint.

:func:`build_model_card` turns what a checkpoint folder holds (the loaded model, and when present
the training config, the training metrics, the evaluation result of ``mtlstm-eval`` and the
analysis report) into a :class:`huggingface_hub.ModelCard`:

* **metadata** through :class:`~huggingface_hub.ModelCardData`: ``library_name``, ``license``,
  ``language`` (of a known corpus), ``tags`` (``lstm``, ``multi-timescale``, ``custom_code``,
  ...), ``datasets`` (Hub datasets only: a local corpus only under the Hub id it is named a copy
  of; the embedded WikiText-2 sample never), ``pipeline_tag: text-generation`` and a
  ``model-index`` of :class:`~huggingface_hub.EvalResult` entries for the numbers measured on a
  Hub dataset (overall and per-frequency-bin perplexity, the run's test and validation), each
  with its split and evaluation batch size. Every entry has a task, a dataset and a metric: the
  Hub tools drop entries lacking one of them.
* **body**: the sections named in :data:`CARD_SECTIONS`, always in that order; a section whose
  source is missing says so instead of disappearing. ``MODEL_CARD.md`` at the top of the
  repository documents each section and where its content comes from (a test keeps the two in
  sync).

Nothing here touches the network, and no argument is a token: the card cannot leak one.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from mtlstm_hf.models.mtlstm.layouts import layer_index_of, layer_number

__all__ = [
    "CARD_SECTIONS",
    "CITATIONS",
    "CORPUS_LANGUAGES",
    "DEFAULT_LICENSE",
    "INSTALL_COMMAND",
    "NONE_MEANINGS",
    "DatasetReference",
    "Score",
    "build_model_card",
    "card_eval_results",
    "card_scores",
    "describe_corpus",
    "looks_like_hub_id",
    "name_as_hub_dataset",
    "public_value",
    "resolve_dataset",
]

DEFAULT_LICENSE = "bsd-3-clause"
"""License written into the metadata unless another is given: the one of the code that travels
with the weights (``mtlstm_hf`` and the reference implementation are BSD-3-Clause)."""

CARD_TAGS: tuple[str, ...] = ("lstm", "multi-timescale", "custom_code", "mtlstm", "language-modeling")
TASK_TYPE = "text-generation"
TASK_NAME = "Language modeling"

CARD_SECTIONS: tuple[str, ...] = (
    "Model description",
    "Training",
    "Evaluation",
    "Analysis",
    "How to use",
    "Limitations",
    "Citation",
)
"""Second-level headings of the card body, in order (documented in ``MODEL_CARD.md``)."""

CITATIONS: dict[str, str] = {
    "mahto2021": """@inproceedings{mahto2021multitimescale,
  title     = {Multi-timescale Representation Learning in {LSTM} Language Models},
  author    = {Mahto, Shivangi and Vo, Vy A. and Turek, Javier S. and Huth, Alexander G.},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021},
  url       = {https://arxiv.org/abs/2009.12727}
}""",
    "verwimp2020": """@article{verwimp2020stategradients,
  title   = {State gradients for analyzing memory in {LSTM} language models},
  author  = {Verwimp, Lyan and Van hamme, Hugo and Wambacq, Patrick},
  journal = {Computer Speech \\& Language},
  volume  = {61},
  year    = {2020}
}""",
    "levy2018": """@inproceedings{levy2018lstm,
  title     = {Long Short-Term Memory as a Dynamically Computed Element-wise Weighted Sum},
  author    = {Levy, Omer and Lee, Kenton and FitzGerald, Nicholas and Zettlemoyer, Luke},
  booktitle = {Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2018},
  url       = {https://arxiv.org/abs/1805.03716}
}""",
}
"""BibTeX of the three methods the library implements (Mahto et al. 2021, Verwimp et al. 2020,
Levy et al. 2018)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_SAMPLE_NAME = "the WikiText-2 sample embedded in `mtlstm_hf`"
# Corpora whose language the card can state: a name (Hub id or local folder) containing the key.
CORPUS_LANGUAGES: tuple[tuple[str, str], ...] = (("wikitext", "en"), ("ptb", "en"), ("penn", "en"), ("treebank", "en"))
"""Name fragments of known corpora and their language (ISO 639-1), for the ``language`` metadata."""


# --- values safe to publish ------------------------------------------------------------------


def looks_like_hub_id(value: str) -> bool:
    """``True`` for ``name`` / ``namespace/name`` strings that are not an existing local path."""
    return bool(_HUB_ID.match(value)) and not Path(value).expanduser().exists()


def public_value(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with local file-system paths cut down to their last part.

    Training configs and evaluation results record where things were on the training machine
    (``/home/alice/runs/...``); the published card and JSON keep only the folder name.
    """
    if isinstance(value, Mapping):
        return {key: public_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_value(item) for item in value]
    if isinstance(value, str) and value and (os.path.isabs(value) or (os.sep in value and Path(value).exists())):
        return Path(value).name or value
    return value


# --- datasets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetReference:
    """A corpus as the card names it.

    Attributes:
        name: what the card shows (a Hub id, a local folder's name, or the embedded sample).
        kind: ``"hub"`` (a Hub dataset id), ``"local"`` (a folder or file on the training machine),
            ``"sample"`` (the WikiText-2 sample embedded in the package, ``data=None``) or
            ``"unknown"``.
        config: the Hub dataset configuration (``dataset_config_name``), when known.
        hub_id: the Hub dataset the metadata (``datasets:``, ``model-index``) names: the id of a
            Hub dataset, the id given for a local copy of one (``dataset=``), else ``None`` and
            the numbers stay out of the metadata.
        language: ISO 639-1 code when the corpus is a known one (:data:`CORPUS_LANGUAGES`).
    """

    name: str
    kind: str
    config: str | None = None
    hub_id: str | None = None
    language: str | None = None

    def sentence(self) -> str:
        """How the card says a model was trained on this corpus."""
        if self.kind == "sample":
            return (
                f"Trained on {_SAMPLE_NAME} (`mtlstm_hf/data/wikitext2_sample`: a few whole articles of "
                "each WikiText-2 split, for trying the library out). It is not WikiText-2: its "
                "perplexities are not comparable with published WikiText-2 numbers."
            )
        configuration = f" (configuration `{self.config}`)" if self.config else ""
        if self.kind == "hub":
            return f"Trained on the Hub dataset `{self.name}`{configuration}."
        if self.kind == "local":
            named = f", published as a copy of the Hub dataset `{self.hub_id}`{configuration}" if self.hub_id else ""
            return f"Trained on a local corpus `{self.name}` (a folder or file on the training machine, not a Hub dataset){named}."
        return "The training corpus is not recorded."


def _language(name: str) -> str | None:
    lowered = name.lower()
    return next((language for fragment, language in CORPUS_LANGUAGES if fragment in lowered), None)


def describe_corpus(source: Any, config: str | None = None) -> DatasetReference:
    """The corpus a ``data`` value names (``TrainingSettings.data``, the ``data`` of ``mtlstm-eval``).

    ``None`` is the training default, the embedded WikiText-2 sample, as is a path to it;
    a Hub id (``wikitext``, ``ptb_text_only``, not an existing path) a Hub dataset; any other
    string a local corpus, named by its last path component.
    """
    from ..data import sample_corpus_dir

    if source is None:
        return DatasetReference(_SAMPLE_NAME, "sample", language="en")
    if not isinstance(source, str) or not source or source.startswith("<"):
        return DatasetReference("unknown corpus", "unknown")
    if Path(source).name == sample_corpus_dir().name:
        return DatasetReference(_SAMPLE_NAME, "sample", language="en")
    if looks_like_hub_id(source):
        return DatasetReference(source, "hub", config, hub_id=source, language=_language(source))
    name = Path(source).name or source
    return DatasetReference(name, "local", language=_language(name))


def name_as_hub_dataset(
    reference: DatasetReference, dataset: str | None, config: str | None = None
) -> DatasetReference:
    """``reference`` with the Hub dataset it is a local copy of (``--dataset``), when given.

    Raises:
        ValueError: ``dataset`` given for the embedded sample (it is not a copy of any Hub
            dataset: its numbers are not WikiText-2's).
    """
    if dataset is None or reference.kind in ("hub", "unknown"):
        return reference
    if reference.kind == "sample":
        raise ValueError(
            f"dataset={dataset!r} names the Hub dataset of a local corpus, but this checkpoint was trained or "
            f"evaluated on {_SAMPLE_NAME.replace('`', '')}, which is no copy of a Hub dataset; leave dataset out"
        )
    return replace(
        reference, hub_id=dataset, config=config or reference.config, language=reference.language or _language(dataset)
    )


def resolve_dataset(
    dataset: str | None = None,
    eval_results: Mapping[str, Any] | None = None,
    training_config: Mapping[str, Any] | None = None,
    dataset_config: str | None = None,
) -> tuple[DatasetReference, DatasetReference]:
    """The corpora of a card: ``(training corpus, evaluated corpus)``.

    The training corpus is ``training_config["data"]``; the evaluated one the evaluation's
    ``data`` (the training corpus when there is no evaluation or it names none). A local corpus
    is listed in the metadata only under the Hub id ``dataset`` names (a local copy of that Hub
    dataset); a Hub dataset keeps its own id.

    Raises:
        ValueError: ``dataset`` for the embedded sample, or for two corpora that are both Hub
            datasets already (there is nothing to name).
    """
    training_config = training_config or {}
    training_source = training_config.get("data") if training_config else ""
    training = describe_corpus(training_source, training_config.get("dataset_config_name"))
    evaluated_source = (eval_results or {}).get("data")
    same = evaluated_source is None or evaluated_source == training_source
    evaluated = training if same else describe_corpus(evaluated_source, (eval_results or {}).get("data_config"))
    if dataset is not None and not any(corpus.kind in ("local", "sample") for corpus in (training, evaluated)):
        raise ValueError(
            f"dataset={dataset!r} names the Hub dataset of a local corpus, but the training and evaluation data "
            f"are {training.name!r} and {evaluated.name!r}, not local corpora; leave dataset out"
        )
    return name_as_hub_dataset(training, dataset, dataset_config), name_as_hub_dataset(
        evaluated, dataset, dataset_config
    )


# --- scores: one list for the table and the model-index -------------------------------------------


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _positive_int(value: Any, minimum: int = 1) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= minimum else None


@dataclass(frozen=True)
class Score:
    """One perplexity the card reports: a row of the evaluation table and a ``model-index`` entry.

    Attributes:
        split: ``test`` or ``validation`` (the split scored).
        words: ``"all words"`` or a word-frequency bin label (``">=10K"``...).
        perplexity: the value; ``None`` for an empty bin (shown as ``-``, not in the metadata).
        n_tokens: scored targets, when recorded.
        batch_size: evaluation batch size (rows the split was cut into), when recorded.
        source: where the number comes from (``mtlstm-eval``, the run log, the saved weights).
        dataset: the corpus scored.
        args: extra ``metric_args`` of the entry (the bin, its edges, the count splits).
    """

    split: str
    words: str
    perplexity: float | None
    n_tokens: int | None
    batch_size: int | None
    source: str
    dataset: DatasetReference
    args: Mapping[str, Any]

    @property
    def metric_name(self) -> str:
        name = f"{self.split.capitalize()} perplexity"
        if self.words != "all words":
            name += f", word frequency {self.words}"
        if self.source == RUN_LOG_SOURCE:
            name += " at the end of training"
        return name + (f" (eval batch size {self.batch_size})" if self.batch_size is not None else "")


EVAL_SOURCE = "`mtlstm-eval`"
RUN_LOG_SOURCE = "end of training (run log)"


def card_scores(
    eval_results: Mapping[str, Any] | None,
    training_metrics: Mapping[str, Any] | None,
    training_config: Mapping[str, Any] | None,
    logged_test_perplexity: float | None,
    training_dataset: DatasetReference,
    evaluated_dataset: DatasetReference,
) -> list[Score]:
    """Every perplexity the card reports, each with its split, batch size and source.

    * ``mtlstm-eval``'s result: overall and per word-frequency bin, at its batch size;
    * the test the training run took of these weights at its end (``logged_test_perplexity``,
      from the run log: :func:`mtlstm_hf.training.logged_test_perplexity`), at the run's
      ``eval_batch_size``;
    * the validation perplexity of the saved weights (``training_metrics.json``), likewise.
    """
    scores: list[Score] = []
    if eval_results:
        split = str(eval_results.get("split", "test"))
        batch = _positive_int(eval_results.get("batch_size"))
        bin_args = {
            "count_splits": list(eval_results.get("count_splits") or []),
            "bin_edges": list(eval_results.get("bin_edges") or []),
        }
        scores.append(Score(split, "all words", _finite(eval_results.get("perplexity")), _positive_int(eval_results.get("n_tokens"), 0),
                            batch, EVAL_SOURCE, evaluated_dataset, {}))  # fmt: skip
        for label, entry in (eval_results.get("bins") or {}).items():
            entry = entry if isinstance(entry, Mapping) else {}
            scores.append(Score(split, str(label), _finite(entry.get("perplexity")), _positive_int(entry.get("n_tokens"), 0),
                                batch, EVAL_SOURCE, evaluated_dataset, {"frequency_bin": label, **bin_args}))  # fmt: skip
    run_batch = _positive_int((training_config or {}).get("eval_batch_size"))
    test = _finite(logged_test_perplexity)
    if test is not None:
        scores.append(Score("test", "all words", test, None, run_batch, RUN_LOG_SOURCE, training_dataset, {}))
    validation = _finite((training_metrics or {}).get("val_perplexity"))
    if validation is not None:
        step = (training_metrics or {}).get("global_step")
        source = "training: the saved weights" + (f" (step {step})" if _positive_int(step) else "")
        scores.append(Score("validation", "all words", validation, None, run_batch, source, training_dataset, {}))
    return scores


def card_eval_results(scores: Sequence[Score]) -> list[EvalResult]:
    """``EvalResult`` entries of the scores measured on a Hub dataset (``DatasetReference.hub_id``).

    Every entry has a task, a dataset (type, name, config, split) and a metric (type
    ``perplexity``, its value, a name with the split and the batch size, ``metric_args`` with
    ``eval_batch_size``): the Hub tools drop entries lacking one of them. Empty bins and numbers
    measured on a corpus that is no Hub dataset are left out.
    """
    results = []
    for score in scores:
        if score.perplexity is None or score.dataset.hub_id is None:
            continue
        args = {**score.args, **({"eval_batch_size": score.batch_size} if score.batch_size is not None else {})}
        results.append(
            EvalResult(
                task_type=TASK_TYPE,
                task_name=TASK_NAME,
                dataset_type=score.dataset.hub_id,
                dataset_name=score.dataset.hub_id,
                dataset_config=score.dataset.config,
                dataset_split=score.split,
                metric_type="perplexity",
                metric_value=score.perplexity,
                metric_name=score.metric_name,
                metric_args=args or None,
            )  # fmt: skip
        )
    return results


# --- body sections ------------------------------------------------------------------------------


def _format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _describe_schedule(schedule: Mapping[str, Any]) -> str:
    kind = schedule.get("type", "none")
    if kind == "none":
        return "none (biases trained freely)"
    params = []
    for key, value in schedule.items():
        if key == "type":
            continue
        text = (
            ", ".join(_format_number(v) for v in value) if isinstance(value, (list, tuple)) else _format_number(value)
        )
        params.append(f"{key}={text[:60] + '...' if len(text) > 60 else text}")
    return f"{kind.replace('_', ' ')} ({'; '.join(params)})" if params else kind


def _describe_timescales(timescales: torch.Tensor | None) -> str:
    if timescales is None or timescales.numel() == 0:
        return "-"
    values = timescales.double()
    finite = values[torch.isfinite(values)]
    text = f"min {_format_number(values.min().item())}, median {_format_number(values.median().item())}, max {_format_number(values.max().item())}"
    if finite.numel() < values.numel():
        text += f" ({values.numel() - finite.numel()} units never forget)"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _is_timescale_figure(path: str) -> bool:
    return "timescale" in Path(path).stem.lower()


def _model_section(model: Any, figures: Sequence[str]) -> str:
    config = model.config
    sizes = list(config.hidden_sizes)
    cells = config.cell_types if isinstance(config.cell_types, list) else [config.cell_types] * len(sizes)
    timescales = model.assigned_timescales()
    rows = []
    for index, size in enumerate(sizes):
        schedule = config.timescale_schedules[index]
        frozen = "-" if schedule.get("type") == "none" else config.frozen_biases
        rows.append(
            [
                layer_number(index),
                size,
                cells[index],
                _describe_schedule(schedule),
                _describe_timescales(timescales[index]),
                frozen,
            ]
        )
    parts = [
        "A multi-timescale LSTM language model (Mahto et al., ICLR 2021): an AWD-LSTM-style stack of "
        f"{len(sizes)} LSTM layers over a {config.embedding_size}-dimensional word embedding "
        f"(vocabulary {config.vocab_size}, output weights {'tied to' if config.tie_word_embeddings else 'separate from'} "
        "the embedding). Layers with a timescale schedule get forget-gate biases "
        "`b_f = -ln(exp(1/T) - 1)` so that unit `T` decays like `exp(-t/T)` without input, with "
        "`b_i = -b_f`; the biases named under *frozen* stay fixed during training. Inverse-gamma "
        "distributed timescales give the population a power-law memory, like natural language.",
        "",
        "Timescale schedule per layer (assigned timescales `T = -1 / ln sigmoid(b_f)`, in tokens):",
        "",
        _table(["Layer", "Hidden size", "Cell", "Timescale schedule", "Assigned timescales", "Frozen biases"], rows),
        "",
        "Dropouts: embedding {embedding_dropout}, input {input_dropout}, between layers {hidden_dropout}, "
        "output {output_dropout}, recurrent weight drop {weight_drop}; activation regularisation "
        "AR {activation_regularization}, TAR {temporal_activation_regularization}.".format(**config.to_dict()),
    ]
    for path in filter(_is_timescale_figure, figures):
        parts += ["", f"![Timescales: {Path(path).stem}]({path})"]
    return "\n".join(parts)


NONE_MEANINGS: dict[str, str] = {
    "clip_grad_norm": "none (no clipping)",
    "max_steps": "none (no step limit)",
    "max_minutes": "none (no time limit)",
    "tokenizer": "none (built from the training split)",
    "max_vocab_size": "none (no cap)",
    "init_from": "none (a fresh initialisation)",
    "text_column": "none (text, else sentence)",
    "dataset_config_name": "none",
}
"""What a ``None`` training setting means, in the card's hyperparameter table."""


def _setting_cell(name: str, value: Any) -> str:
    if value is None:
        return f"{_SAMPLE_NAME} (not WikiText-2)" if name == "data" else NONE_MEANINGS.get(name, "none")
    return f"`{json.dumps(value)}`"


def _shown_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the run used: bookkeeping and the other optimizer's fields left out, the
    default learning rate filled in."""
    from ..training import BOOKKEEPING_FIELDS, DEFAULT_LEARNING_RATES, OPTIMIZER_ONLY_FIELDS

    optimizer = config.get("optimizer")
    hidden = set(BOOKKEEPING_FIELDS)
    for name, fields in OPTIMIZER_ONLY_FIELDS.items():
        if name != optimizer:
            hidden |= fields
    shown = {key: value for key, value in config.items() if key not in hidden}
    if shown.get("learning_rate") is None and optimizer in DEFAULT_LEARNING_RATES:
        shown["learning_rate"] = DEFAULT_LEARNING_RATES[optimizer]
    return shown


def _recipe(config: Mapping[str, Any]) -> str:
    """One sentence on the optimizer, with the values this run used."""
    optimizer = config.get("optimizer")
    rate = _format_number(config.get("learning_rate"))
    decay = _format_number(config.get("weight_decay"))
    clip = config.get("clip_grad_norm")
    clipping = f"gradients clipped to norm {_format_number(clip)}" if clip else "no gradient clipping"
    if optimizer == "awd":
        switch = (
            f"with the non-monotonically triggered switch to averaged SGD (NT-ASGD, nonmono {config.get('nonmono')})"
            if config.get("use_asgd", True)
            else "without the switch to averaged SGD"
        )
        return (
            f"SGD at learning rate {rate} {switch}, weight decay {decay}, {clipping}, "
            f"{'variable-length' if config.get('variable_bptt', True) else 'fixed-length'} BPTT windows of about "
            f"{config.get('bptt')} tokens"
            + (" with the learning rate scaled by the window length" if config.get("scale_lr_by_seq_len", True) else "")
            + ", AR/TAR from the model configuration: the AWD-LSTM recipe (Merity et al. 2018, arXiv 1708.02182) "
            "as used by Mahto et al. (2021)"
        )
    if optimizer == "adamw":
        return (
            f"AdamW at learning rate {rate} (beta1 {_format_number(config.get('adam_beta1'))}; beta2 "
            f"{_format_number(config.get('adam_beta2'))}; epsilon {_format_number(config.get('adam_epsilon'))}; "
            f"decoupled weight decay {decay}), `{config.get('lr_scheduler')}` schedule with {config.get('warmup_steps')} "
            f"warm-up steps, {clipping}, BPTT windows of about {config.get('bptt')} tokens"
        )
    return f"optimizer `{optimizer}`"


def _training_section(
    training_config: Mapping[str, Any] | None, training_metrics: Mapping[str, Any] | None, corpus: DatasetReference
) -> str:
    if not training_config:
        return "No training configuration was published with this checkpoint."
    settings = _shown_settings(public_value(training_config))
    rows = [[f"`{key}`", _setting_cell(key, value)] for key, value in sorted(settings.items())]
    parts = [
        corpus.sentence(),
        "",
        f"Trained with `mtlstm_hf.training`: {_recipe(settings)}. The settings of the run "
        "(`training_config.json`; where it wrote and how it logged left out, as are the settings only the "
        "other optimizer reads):",
        "",
        _table(["Setting", "Value"], rows),
    ]
    if training_metrics:
        metric_rows = [
            [f"`{key}`", _format_number(value)] for key, value in sorted(public_value(training_metrics).items())
        ]
        parts += [
            "",
            "State of the saved weights (`training_metrics.json`):",
            "",
            _table(["Metric", "Value"], metric_rows),
        ]
    return "\n".join(parts)


def _evaluation_section(scores: Sequence[Score], eval_results: Mapping[str, Any] | None) -> str:
    if not scores:
        return "No evaluation results were published with this checkpoint."
    corpora = list(dict.fromkeys(score.dataset.name for score in scores))
    configs = {score.dataset.name: score.dataset.config for score in scores}
    named = " and ".join(f"`{name}`" + (f" (`{configs[name]}`)" if configs[name] else "") for name in corpora)
    parts = [f"Perplexity on {named}, each number with the split, the evaluation batch size and where it comes from."]
    if eval_results:
        counted = ", ".join(eval_results.get("count_splits") or []) or "?"
        parts.append(
            f"Frequency bins group target words by how often they occur in the {counted} split(s). Batch size 1 "
            "carries the recurrent state through the whole split, as in the paper; a larger batch cuts the split "
            "into that many rows, each starting from a zero state (higher perplexity)."
        )
    rows = [
        [score.split, score.words, "-" if score.perplexity is None else _format_number(score.perplexity),
         "-" if score.n_tokens is None else score.n_tokens, "-" if score.batch_size is None else score.batch_size, score.source]
        for score in scores
    ]  # fmt: skip
    parts += ["", _table(["Split", "Words", "Perplexity", "Scored tokens", "Batch size", "Source"], rows)]
    return "\n".join(parts)


def _fit_note(entry: Mapping[str, Any], schedules: Sequence[Mapping[str, Any]], layer: int | None) -> str | None:
    """The report's ``fit_note``; for a format 1 report (none recorded) the same test on its
    per-unit timescales and the layer's schedule."""
    if "fit_note" in entry:
        return entry["fit_note"]
    from ..analysis import inverse_gamma_fit_note

    schedule = entry.get("schedule")
    if not isinstance(schedule, Mapping) and layer is not None and 1 <= layer <= len(schedules):
        schedule = schedules[layer_index_of(layer)]
    units = entry.get("timescales")
    if not isinstance(units, list):  # no per-unit values: only the schedule can tell
        return inverse_gamma_fit_note([], schedule) if (schedule or {}).get("type") == "fixed" else None
    return inverse_gamma_fit_note([math.inf if value is None else value for value in units], schedule)


def _estimated_timescale_rows(report: Mapping[str, Any], schedules: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Per analysed layer: median and max estimated timescale, and the best-fitting family and the
    inverse-gamma parameters only where the report says a fit applies (``fit_note`` is None)."""
    analyses = report.get("analyses")
    timescales = analyses.get("timescales") if isinstance(analyses, Mapping) else None
    # The card numbers layers from 1; report format 1 counted from 0, format 2 counts from 1.
    offset = 1 if report.get("format_version") == 1 else 0
    rows = []
    for entry in (timescales or {}).get("layers") or []:
        quantiles = (entry.get("summary") or {}).get("quantiles") or {}
        layer = entry.get("layer") + offset if isinstance(entry.get("layer"), int) else None
        note = _fit_note(entry, schedules, layer)
        parameters = (((entry.get("fits") or {}).get("inverse_gamma") or {}).get("parameters")) or {}
        if note is not None:
            family, fit = "-", f"no fit: {note}"
        elif "alpha" in parameters and "beta" in parameters:
            family = entry.get("best_family") or "-"
            fit = f"alpha {_format_number(parameters['alpha'])}, beta {_format_number(parameters['beta'])}"
        else:
            family, fit = entry.get("best_family") or "-", "-"
        rows.append([
            "?" if layer is None else layer,
            _format_number(quantiles.get("0.5", "-")),
            _format_number(quantiles.get("1", "-")),
            family,
            fit,
        ])  # fmt: skip
    return rows


def _analysis_section(
    report: Mapping[str, Any] | None, figures: Sequence[str], schedules: Sequence[Mapping[str, Any]]
) -> str:
    if report is None:
        return "No analysis report was published with this checkpoint."
    report = public_value(report)
    analyses = report.get("analyses")
    ran = sorted(analyses) if isinstance(analyses, Mapping) else []
    skipped = report.get("skipped") if isinstance(report.get("skipped"), Mapping) else {}
    parts = [
        "The analysis report of `mtlstm-analyze` (`analysis/report.json` and its figures) is stored in this "
        "repository; load it without recomputing with `mtlstm_hf.hub.fetch_report(repo_id, revision=...)`.",
        "",
        f"Analysed: {', '.join(f'`{name}`' for name in ran) or 'nothing'}"
        + (f" on the {report['split']} split" if report.get("split") else "")
        + (f" ({report['n_stream_tokens']} tokens)" if report.get("n_stream_tokens") else "")
        + ".",
    ]
    if skipped:
        parts += ["", _table(["Skipped", "Reason"], [[f"`{name}`", reason] for name, reason in skipped.items()])]
    rows = _estimated_timescale_rows(report, schedules)
    if rows:
        parts += [
            "",
            "Estimated timescales `T = -1 / ln mean(f)` of the trained network (tokens). A distribution is "
            "fitted only where it means something: not for a layer whose schedule fixes its timescales, "
            "nor for one without spread.",
            "",
            _table(["Layer", "Median T", "Max T", "Best-fitting family", "Inverse-gamma fit"], rows),
        ]
    for path in figures:
        if not _is_timescale_figure(path):  # those are shown in the model description
            parts += ["", f"![{Path(path).stem}]({path})"]
    return "\n".join(parts)


INSTALL_COMMAND = "pip install -c constraints.txt -e ."
"""The set-up command of the package (README.md): the package is installed from its source
repository, not from PyPI."""


def _usage_section(repo_id: str, revision: str) -> str:
    return f"""With the package installed (in a clone of the `mtlstm_hf` source repository:
`{INSTALL_COMMAND}`), the model class is registered and no code from this repository runs:

```python
import mtlstm_hf  # registers model_type "mtlstm" with the Auto classes
from transformers import AutoModelForCausalLM, AutoTokenizer

revision = "{revision}"  # better: a commit id of this repository, for reproducible results
model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision=revision)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision=revision)
ids = tokenizer("the meaning of", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=20)[0]))
```

Without the package, the modelling code stored in this repository is used:
`trust_remote_code=True` runs it on your machine, so read it first and pin the commit you read
(its id is under "Files and versions", or `HfApi().list_repo_commits("{repo_id}")`). The
tokenizer is a plain `tokenizers` one, but `AutoTokenizer` reads the model's configuration
class to find it, so it is given the same permission (without it, transformers asks):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

revision = "{revision}"  # replace with the commit id you read
model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision=revision, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision=revision, trust_remote_code=True)
ids = tokenizer("the meaning of", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=20)[0]))
```

Both give the same logits. The tokenizer is word-level with the training corpus's convention
(`tokenizer_config.json`, `word_convention`): raw text is split and normalised as the corpus was
(punctuation split off for WikiText; lower case and numbers as `N` for PTB); words outside the
vocabulary become the unknown word. Decoding puts a space before every word."""


def _limitations(training_config: Mapping[str, Any] | None) -> str:
    frozen = bool((training_config or {}).get("freeze_recurrent_weights"))
    weight_drop = (
        "- The reference implementation's weight-drop wrapper never trains the raw recurrent weights; this run "
        "kept them at their initial values too (`freeze_recurrent_weights`), as the paper's runs did."
        if frozen
        else "- The reference implementation's weight-drop wrapper never trains the raw recurrent weights; this "
        "model's were trained (`freeze_recurrent_weights` off), so its numbers are not directly comparable "
        "with the paper's tables."
    )
    return "\n".join(
        [
            "- A small research language model with a closed word-level vocabulary, trained on the single corpus "
            "named under Training; its text reflects that corpus and its biases. Not meant for applications "
            "beyond studying memory in recurrent language models.",
            "- Perplexities are comparable only between models with the same vocabulary, tokenization, test split "
            "and evaluation batch size; per-frequency-bin numbers also depend on which splits the words were "
            "counted in.",
            "- The *assigned* timescales above describe the bias initialisation; the timescales the trained "
            "network actually uses must be estimated from its gates (see the analysis tools).",
            weight_drop,
            "- Loading with `trust_remote_code=True` executes the Python files of this repository; pin a commit.",
            "- Check the license of the training data (WikiText: CC BY-SA 3.0; Penn Treebank: LDC license) "
            "before reusing the weights.",
        ]
    )


def _citation_section() -> str:
    return (
        "Multi-timescale LSTM language models, the analyses of memory by state gradients, and LSTMs as "
        "element-wise weighted sums:\n\n```bibtex\n" + "\n\n".join(CITATIONS.values()) + "\n```"
    )


def build_model_card(
    model: Any,
    *,
    repo_id: str,
    revision: str = "main",
    license: str = DEFAULT_LICENSE,  # noqa: A002 - the metadata field's name
    training_config: Mapping[str, Any] | None = None,
    training_metrics: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | None = None,
    logged_test_perplexity: float | None = None,
    report: Mapping[str, Any] | None = None,
    figures: Sequence[str] = (),
    dataset: str | None = None,
    dataset_config: str | None = None,
    language: str | None = None,
) -> ModelCard:
    """The model card of a checkpoint.

    Args:
        model: the loaded ``MTLSTMForCausalLM`` (its ``config`` and ``assigned_timescales()`` are read).
        repo_id: the repository the card is for (``namespace/name``); ``name`` becomes the
            ``model-index`` name.
        revision: branch the card is published to (shown in the loading snippets).
        license: metadata license id (default :data:`DEFAULT_LICENSE`).
        training_config: ``training_config.json`` of the run, when known.
        training_metrics: ``training_metrics.json`` of the run, when known.
        eval_results: output of ``evaluate_checkpoint`` / ``mtlstm-eval --output``, when known.
        logged_test_perplexity: the test the training run took of these weights at its end
            (:func:`mtlstm_hf.training.logged_test_perplexity`), when known.
        report: the analysis report (``mtlstm_hf.analysis.load_report``), when published with the model.
        figures: repository paths of the report's figures (``analysis/*.png``); those whose name
            contains ``timescale`` are also shown in the model description.
        dataset: the Hub dataset a local training/evaluation corpus is a copy of (named in the
            metadata); a Hub dataset keeps its own id.
        dataset_config: that Hub dataset's configuration.
        language: ISO 639-1 code of the metadata; default: the corpus's, when it is a known one
            (:data:`CORPUS_LANGUAGES`), else none.

    Returns:
        The card; ``card.save(folder / "README.md")`` writes it.

    Raises:
        ValueError: ``dataset`` for a model trained on the embedded sample, or with no local
            corpus to name (see :func:`resolve_dataset`).
    """
    trained_on, evaluated_on = resolve_dataset(dataset, eval_results, training_config, dataset_config)
    scores = card_scores(
        eval_results, training_metrics, training_config, logged_test_perplexity, trained_on, evaluated_on
    )
    hub_datasets = list(dict.fromkeys(corpus.hub_id for corpus in (trained_on, evaluated_on) if corpus.hub_id))
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=model_name,
        language=language or trained_on.language or evaluated_on.language,
        library_name="transformers",
        license=license,
        tags=list(CARD_TAGS),
        datasets=hub_datasets or None,
        pipeline_tag=TASK_TYPE,
        metrics=["perplexity"],
        eval_results=card_eval_results(scores) or None,
    )
    schedules = list(model.config.timescale_schedules)
    # Same order as CARD_SECTIONS, the one list of sections (documented in MODEL_CARD.md).
    texts = [
        _model_section(model, figures),
        _training_section(training_config, training_metrics, trained_on),
        _evaluation_section(scores, eval_results),
        _analysis_section(report, figures, schedules),
        _usage_section(repo_id, revision),
        _limitations(training_config),
        _citation_section(),
    ]
    sections = dict(zip(CARD_SECTIONS, texts, strict=True))
    body = "\n\n".join(f"## {title}\n\n{text}" for title, text in sections.items())
    intro = (
        f"# {model_name}\n\nA multi-timescale LSTM language model published by `mtlstm_hf`: weights "
        "(safetensors), word-level tokenizer, the modelling code for `trust_remote_code`, and the "
        "training, evaluation and analysis results described below."
    )
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{intro}\n\n{body}\n")
