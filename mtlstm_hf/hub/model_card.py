"""The model card (``README.md``) published with a checkpoint.

:func:`build_model_card` turns what a checkpoint folder holds (the loaded model, and when present
the training config, the training metrics, the evaluation result of ``mtlstm-eval`` and the
analysis report) into a :class:`huggingface_hub.ModelCard`:

* **metadata** through :class:`~huggingface_hub.ModelCardData`: ``library_name``, ``license``,
  ``tags`` (``lstm``, ``multi-timescale``, ``custom_code``, ...), ``datasets`` (Hub ids only),
  ``pipeline_tag: text-generation`` and a ``model-index`` of :class:`~huggingface_hub.EvalResult`
  entries (overall and per-frequency-bin perplexity, validation perplexity). Every entry has a
  task, a dataset and a metric: the Hub tools drop entries lacking one of them.
* **body**: the sections named in :data:`CARD_SECTIONS`, always in that order; a section whose
  source is missing says so instead of disappearing. ``MODEL_CARD.md`` at the top of the
  repository documents each section and where its content comes from (a test keeps the two in
  sync).

Nothing here touches the network, and no argument is a token: the card cannot leak one.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = [
    "CARD_SECTIONS",
    "CITATIONS",
    "DEFAULT_LICENSE",
    "DatasetReference",
    "build_model_card",
    "card_eval_results",
    "looks_like_hub_id",
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
"""BibTeX of the three methods the library implements (see ``docs/PAPERS.md``)."""

# Training-config fields about bookkeeping on the training machine (where to write, how to log):
# not part of the recipe, and paths there may name local users.
_BOOKKEEPING_FIELDS = frozenset(
    {"output_dir", "overwrite_output_dir", "resume_from", "save_every_steps", "keep_checkpoints",
     "log_every_steps", "tracker", "progress_bar", "cpu"}
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_EMBEDDED_SAMPLE = ("wikitext", "WikiText-2 (sample embedded in mtlstm_hf)", "wikitext-2-v1")


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


# --- datasets and evaluation results -----------------------------------------------------------


@dataclass(frozen=True)
class DatasetReference:
    """The dataset a model was evaluated on, as the ``model-index`` names it."""

    type: str  # Hub dataset id when known, else a short local name
    name: str  # human-readable
    config: str | None = None
    on_hub: bool = False  # listed in the ``datasets:`` metadata only when it is a Hub id


def resolve_dataset(
    dataset: str | None = None,
    eval_results: Mapping[str, Any] | None = None,
    training_config: Mapping[str, Any] | None = None,
) -> DatasetReference:
    """Which dataset the card names: ``dataset`` if given, else the evaluation's, else the training data's.

    A local corpus folder is named by its folder name and kept out of the ``datasets:`` metadata
    (that field links to Hub datasets); the training default (``data=None``) is the WikiText-2
    sample embedded in the package.
    """
    data_config = (training_config or {}).get("dataset_config_name")
    if dataset:
        return DatasetReference(dataset, dataset, data_config, on_hub=looks_like_hub_id(dataset))
    for source in ((eval_results or {}).get("data"), (training_config or {}).get("data")):
        if isinstance(source, str) and source and not source.startswith("<"):
            if looks_like_hub_id(source):
                return DatasetReference(source, source, data_config, on_hub=True)
            local_name = Path(source).name or source
            return DatasetReference(local_name, f"{local_name} (local corpus)")
    if training_config is not None and training_config.get("data") is None:
        return DatasetReference(*_EMBEDDED_SAMPLE)
    return DatasetReference("unknown", "unknown corpus")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def card_eval_results(
    eval_results: Mapping[str, Any] | None,
    training_metrics: Mapping[str, Any] | None,
    dataset: DatasetReference,
) -> list[EvalResult]:
    """``EvalResult`` entries: overall and per-frequency-bin perplexity, and validation perplexity.

    Args:
        eval_results: the output of :func:`mtlstm_hf.evaluation.evaluate_checkpoint` (the JSON
            of ``mtlstm-eval --output``): ``perplexity``, ``split``, ``bins``, ``count_splits``...
        training_metrics: ``training_metrics.json`` of a training run (``val_perplexity``).
        dataset: what the entries name as their dataset.

    Non-finite values (an empty frequency bin) are left out: the metadata needs numbers.
    """
    common = dict(
        task_type=TASK_TYPE,
        task_name=TASK_NAME,
        dataset_type=dataset.type,
        dataset_name=dataset.name,
        dataset_config=dataset.config,
        metric_type="perplexity",
    )
    results: list[EvalResult] = []
    if eval_results:
        split = str(eval_results.get("split", "test"))
        overall = _finite(eval_results.get("perplexity"))
        if overall is not None:
            results.append(EvalResult(**common, dataset_split=split, metric_value=overall, metric_name=f"{split.capitalize()} perplexity"))
        args = {"count_splits": list(eval_results.get("count_splits", [])), "bin_edges": list(eval_results.get("bin_edges", []))}
        for label, entry in (eval_results.get("bins") or {}).items():
            value = _finite((entry or {}).get("perplexity"))
            if value is not None:
                results.append(
                    EvalResult(
                        **common,
                        dataset_split=split,
                        metric_value=value,
                        metric_name=f"{split.capitalize()} perplexity, word frequency {label}",
                        metric_args={"frequency_bin": label, **args},
                    )
                )
    validation = _finite((training_metrics or {}).get("val_perplexity"))
    if validation is not None:
        results.append(EvalResult(**common, dataset_split="validation", metric_value=validation, metric_name="Validation perplexity"))
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
        text = ", ".join(_format_number(v) for v in value) if isinstance(value, (list, tuple)) else _format_number(value)
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
        rows.append([index + 1, size, cells[index], _describe_schedule(schedule), _describe_timescales(timescales[index]), frozen])
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


def _training_section(training_config: Mapping[str, Any] | None, training_metrics: Mapping[str, Any] | None) -> str:
    if not training_config:
        return "No training configuration was published with this checkpoint."
    config = public_value(training_config)
    optimizer = config.get("optimizer", "?")
    recipe = (
        "SGD with the non-monotonically triggered switch to averaged SGD (NT-ASGD), gradient clipping, "
        "variable-length BPTT with the learning rate scaled by the window length, AR/TAR (the AWD-LSTM "
        "recipe of Merity et al. 2018, arXiv 1708.02182, as used by Mahto et al. 2021)"
        if optimizer == "awd"
        else f"optimizer `{optimizer}`"
    )
    rows = [[f"`{key}`", f"`{value}`"] for key, value in sorted(config.items()) if key not in _BOOKKEEPING_FIELDS]
    parts = [f"Trained with `mtlstm_hf.training`: {recipe}. Hyperparameters (`training_config.json`):", "", _table(["Field", "Value"], rows)]
    if training_metrics:
        metric_rows = [[f"`{key}`", _format_number(value)] for key, value in sorted(public_value(training_metrics).items())]
        parts += ["", "State of the saved weights (`training_metrics.json`):", "", _table(["Metric", "Value"], metric_rows)]
    return "\n".join(parts)


def _perplexity_cell(value: Any) -> str:
    """A perplexity for the table; ``-`` for an empty bin (NaN, or null once written as JSON)."""
    number = _finite(value)
    return "-" if number is None else _format_number(number)


def _evaluation_section(eval_results: Mapping[str, Any] | None, training_metrics: Mapping[str, Any] | None, dataset: DatasetReference) -> str:
    validation = _finite((training_metrics or {}).get("val_perplexity"))
    if not eval_results and validation is None:
        return "No evaluation results were published with this checkpoint."
    rows: list[list[Any]] = []
    parts = [f"Perplexity on {dataset.name}" + (f" (`{dataset.config}`)" if dataset.config else "") + "."]
    if eval_results:
        split = eval_results.get("split", "test")
        rows.append([split, "all words", _perplexity_cell(eval_results.get("perplexity")), eval_results.get("n_tokens", "-")])
        for label, entry in (eval_results.get("bins") or {}).items():
            rows.append([split, label, _perplexity_cell((entry or {}).get("perplexity")), (entry or {}).get("n_tokens", "-")])
        counted = ", ".join(eval_results.get("count_splits", [])) or "?"
        parts.append(
            "\n"
            f"Frequency bins group target words by how often they occur in the {counted} split(s). "
            f"Scored with batch size {eval_results.get('batch_size', '?')} "
            "(1 carries the recurrent state through the whole split, as in the paper)."
        )
    if validation is not None:
        rows.append(["validation", "all words", _format_number(validation), "-"])
    parts += ["", _table(["Split", "Words", "Perplexity", "Scored tokens"], rows)]
    return "\n".join(parts)


def _estimated_timescale_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    """Per analysed layer: median and max estimated timescale, best-fitting family, inverse-gamma alpha."""
    analyses = report.get("analyses")
    timescales = analyses.get("timescales") if isinstance(analyses, Mapping) else None
    # The card numbers layers from 1; report format 1 counted from 0, format 2 counts from 1.
    offset = 1 if report.get("format_version") == 1 else 0
    rows = []
    for entry in (timescales or {}).get("layers") or []:
        quantiles = (entry.get("summary") or {}).get("quantiles") or {}
        fits = entry.get("fits") or {}
        alpha = ((fits.get("inverse_gamma") or {}).get("parameters") or {}).get("alpha")
        layer = entry.get("layer")
        rows.append([
            layer + offset if isinstance(layer, int) else "?",
            _format_number(quantiles.get("0.5", "-")),
            _format_number(quantiles.get("1", "-")),
            entry.get("best_family") or "-",
            _format_number(alpha) if alpha is not None else "-",
        ])
    return rows


def _analysis_section(report: Mapping[str, Any] | None, figures: Sequence[str]) -> str:
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
    rows = _estimated_timescale_rows(report)
    if rows:
        parts += [
            "",
            "Estimated timescales `T = -1 / ln mean(f)` of the trained network (tokens):",
            "",
            _table(["Layer", "Median T", "Max T", "Best-fitting family", "Inverse-gamma alpha"], rows),
        ]
    for path in figures:
        if not _is_timescale_figure(path):  # those are shown in the model description
            parts += ["", f"![{Path(path).stem}]({path})"]
    return "\n".join(parts)


def _usage_section(repo_id: str, revision: str) -> str:
    return f"""With the package installed (`pip install mtlstm_hf`), the model class is registered and no
code from this repository runs:

```python
import mtlstm_hf  # registers model_type "mtlstm" with the Auto classes
from transformers import AutoModelForCausalLM, AutoTokenizer

revision = "{revision}"  # better: a commit id of this repository, for reproducible results
model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision=revision)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision=revision)
```

Without the package, the modelling code stored in this repository is used
(`trust_remote_code=True` runs it on your machine: read it first, and pin the commit you read):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

revision = "<commit id>"  # see "Files and versions", or HfApi().list_repo_commits("{repo_id}")
model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision=revision, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision=revision)
ids = tokenizer("the meaning of", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=20)[0]))
```

Both give the same logits. The tokenizer is word-level with the training corpus's convention
(`tokenizer_config.json`, `word_convention`): raw text is split and normalised as the corpus was
(punctuation split off for WikiText; lower case and numbers as `N` for PTB); words outside the
vocabulary become `<unk>`. Decoding puts a space before every word."""


_LIMITATIONS = """- A small research language model with a closed word-level vocabulary, trained on a single corpus;
  its text reflects that corpus (news or Wikipedia English) and its biases. Not meant for
  applications beyond studying memory in recurrent language models.
- Perplexities are comparable only between models with the same vocabulary, tokenization and test
  split; per-frequency-bin numbers also depend on which splits the words were counted in.
- The *assigned* timescales above describe the bias initialisation; the timescales the trained
  network actually uses must be estimated from its gates (see the analysis tools).
- The reference implementation's weight-drop wrapper never trains the raw recurrent weights; this
  implementation does, so numbers are not directly comparable with the paper's tables.
- Loading with `trust_remote_code=True` executes the Python files of this repository; pin a commit.
- Check the license of the training data (WikiText: CC BY-SA 3.0; Penn Treebank: LDC license)
  before reusing the weights."""


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
    report: Mapping[str, Any] | None = None,
    figures: Sequence[str] = (),
    dataset: str | None = None,
) -> ModelCard:
    """The model card of a checkpoint.

    Args:
        model: the loaded ``MTLSTMForCausalLM`` (its ``config`` and ``assigned_timescales()`` are read).
        repo_id: the repository the card is for (``namespace/name``); ``name`` becomes the
            ``model-index`` name.
        revision: branch the card is published to (shown in the loading snippet).
        license: metadata license id (default :data:`DEFAULT_LICENSE`).
        training_config: ``training_config.json`` of the run, when known.
        training_metrics: ``training_metrics.json`` of the run, when known.
        eval_results: output of ``evaluate_checkpoint`` / ``mtlstm-eval --output``, when known.
        report: the analysis report (``mtlstm_hf.analysis.load_report``), when published with the model.
        figures: repository paths of the report's figures (``analysis/*.png``); those whose name
            contains ``timescale`` are also shown in the model description.
        dataset: Hub dataset id to name in the metadata, overriding what the other inputs say.

    Returns:
        The card; ``card.save(folder / "README.md")`` writes it.
    """
    dataset_ref = resolve_dataset(dataset, eval_results, training_config)
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license=license,
        tags=list(CARD_TAGS),
        datasets=[dataset_ref.type] if dataset_ref.on_hub else None,
        pipeline_tag=TASK_TYPE,
        metrics=["perplexity"],
        eval_results=card_eval_results(eval_results, training_metrics, dataset_ref) or None,
    )
    # Same order as CARD_SECTIONS, the one list of sections (documented in MODEL_CARD.md).
    texts = [
        _model_section(model, figures),
        _training_section(training_config, training_metrics),
        _evaluation_section(eval_results, training_metrics, dataset_ref),
        _analysis_section(report, figures),
        _usage_section(repo_id, revision),
        _LIMITATIONS,
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
