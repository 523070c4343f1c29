"""The language-model experiments of Mahto et al. (ICLR 2021): a standard LSTM (baseline) and the
multi-timescale LSTM trained on PTB or WikiText-2, seed by seed, and everything the paper
measures on them, through the library:

1. training (:func:`mtlstm_hf.training.train`, presets ``paper-baseline`` / ``paper`` or their
   WikiText-2 forms, sizes from the scale): a finished run is skipped (its completion record,
   :func:`.output.finished_run`), an interrupted one continues exactly (``resume_from``);
2. ``evaluation``: test perplexity overall and per word-frequency bin with the state carried over
   the whole split (batch 1), bins from the word counts of the training split and of train + valid
   + test (the reference code's), and the paired block bootstrap of multi-timescale minus baseline
   per bin (:func:`mtlstm_hf.evaluation.compare_checkpoints`: difference, interval, p-value);
3. ``timescales``: the baseline's estimated timescales ``T = -1 / ln mean f`` over the test split
   (batch 1, as the reference's ``estimate_timescale.py``), each layer and pooled over all layers
   (the reference notebook's figure), with maximum-likelihood fits of the inverse gamma, log-normal
   and exponential and their KS statistics (:func:`mtlstm_hf.analysis.timescale_report`);
4. ``ablation``: the multi-timescale model's layer-2 units in chunks ordered by assigned timescale
   (longest first), each chunk's output zeroed in turn, perplexity ratio ablated / intact per bin,
   for both ways of counting (:func:`mtlstm_hf.analysis.ablation_log_probs` and
   :func:`~mtlstm_hf.analysis.routing_from_log_probs`).

Every run is trained first, then the stages of every seed. Each stage of each seed is kept in
its own file as soon as it is done and merged into ``report.json`` (:mod:`.output`); a rerun
continues with what is missing. The summary over seeds and the verdicts are in :mod:`.summary`
and :mod:`.claims`.

Processes: with ``--processes N`` (:mod:`.workers`) N worker processes train one run each at a
time, then analyse one seed each at a time. Under ``torchrun`` / ``accelerate launch`` every
process takes part in every run (the training library shards the rows: data parallelism) and the
stages run on the main process only, after all training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..devices import float32_precision
from . import output
from .scales import ARMS, RECIPES
from .workers import EVERYTHING, Share

FAMILIES: tuple[str, ...] = ("inverse_gamma", "lognormal", "exponential")
"""Distributions fitted to the baseline's timescales (maximum likelihood, location 0)."""

COUNTINGS: dict[str, tuple[str, ...]] = {"train": ("train",), "train_valid_test": ("train", "valid", "test")}
"""The two ways the frequency bins are counted: over the training split (the clean choice) and
over train + valid + test (the reference code's, which the paper's per-bin numbers use)."""

ABLATION_LAYER = 1
"""0-based index of the ablated layer: the paper's layer 2, the inverse-gamma layer."""


class RunInterrupted(KeyboardInterrupt):
    """A training run stopped before its budget (SIGINT / SIGTERM); rerunning the command continues it."""


@dataclass
class LMPlan:
    """Everything one ``lm-*`` reproduction needs.

    Attributes:
        experiment, scale, recipe: names (:data:`~.experiments.EXPERIMENTS`, :data:`~.scales.SCALES`, :data:`RECIPES`).
        settings: :func:`.scales.lm_scale` of the experiment and scale.
        seeds: model seeds (each seeds both arms).
        corpus_dir: the folder with the corpus files.
        output_dir: the output folder (:mod:`.output`).
        progress: progress bars / lines during training.
        device: torch device of the evaluation stages (default: CUDA when available, else CPU).
        arms: the models compared, baseline first (:data:`ARMS`; the prior sweep has more).
        arm_overrides: per arm, ``MTLSTMConfig`` fields over the scale's ``model_overrides``.
        stages: the analyses of one seed (default :data:`STAGES`).
    """

    experiment: str
    scale: str
    recipe: str
    settings: dict[str, Any]
    seeds: list[int]
    corpus_dir: Path
    output_dir: Path
    progress: bool = True
    device: str | None = None
    log: Callable[[str], None] = field(default=print)
    arms: tuple[str, ...] = ARMS
    arm_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, Callable[[LMPlan, int], dict[str, Any]]] | None = None

    def preset(self, arm: str) -> str:
        """The training preset of ``arm``: its own, else the multi-timescale arm's (a prior of the sweep)."""
        presets = self.settings["reference_presets" if self.recipe == "reference" else "presets"]
        return presets.get(arm, presets["multi_timescale"])

    def model_overrides(self, arm: str) -> dict[str, Any]:
        """The scale's ``model_overrides`` with ``arm``'s own on top."""
        return {**self.settings["model_overrides"], **self.arm_overrides.get(arm, {})}

    def stage_functions(self) -> dict[str, Callable[[LMPlan, int], dict[str, Any]]]:
        return STAGES if self.stages is None else self.stages


def training_config(plan: LMPlan, arm: str, seed: int) -> Any:
    """The :class:`~mtlstm_hf.training.TrainingSettings` of one run (a new run; the caller adds
    ``resume_from`` to continue one)."""
    from ..training import TrainingSettings

    settings = plan.settings
    return TrainingSettings(
        data=str(plan.corpus_dir),
        preset=plan.preset(arm),
        model_overrides=plan.model_overrides(arm),
        freeze_recurrent_weights=plan.recipe == "reference",
        replay_reference_loop=plan.recipe == "reference",
        batch_size=settings["batch_size"],
        eval_batch_size=settings["eval_batch_size"],
        bptt=settings["bptt"],
        epochs=settings["epochs"],
        seed=seed,
        output_dir=str(output.run_dir(plan.output_dir, arm, seed)),
        tracker="jsonl",
        progress_bar=plan.progress,
        evaluate_test=False,  # the evaluation stage scores the test split at batch 1
        keep_checkpoints=1,
        save_every_epochs=settings.get("save_every_epochs", 1),
        cpu=plan.device is not None and torch_device_type(plan.device) == "cpu",  # --device cpu: train there too
    )


def torch_device_type(device: str) -> str:
    """``"cpu"``, ``"cuda"``, ...: the type of a device name such as ``cuda:1``."""
    return device.split(":", 1)[0]


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` / ``accelerate launch`` start (or a single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def train_run(plan: LMPlan, arm: str, seed: int) -> dict[str, Any]:
    """Train one arm with one seed, or skip it when it finished before, or continue it.

    Returns:
        The run's completion record: ``{"arm", "seed", "preset", "epochs", "global_step",
        "tokens_seen", "best_val_perplexity", "best_val_step", "asgd_start_step",
        "train_seconds", "resumed", "status"}``.

    Raises:
        RunInterrupted: the run was stopped by a signal (its checkpoint is kept).
    """
    from ..training import train
    from ..training.checkpoint import has_training_run

    folder = output.run_dir(plan.output_dir, arm, seed)
    record = output.finished_run(folder)
    if record is not None:
        plan.log(f"{arm} seed {seed}: finished before, skipped ({folder})")
        return record
    config = training_config(plan, arm, seed)
    resumed = has_training_run(folder)
    if resumed:
        config = config.replace(resume_from=str(folder))
        plan.log(f"{arm} seed {seed}: continuing the interrupted run in {folder}")
    else:
        plan.log(f"{arm} seed {seed}: training ({config.preset}, {config.epochs} epochs) into {folder}")
    result = train(config)
    if result.status != "completed":
        raise RunInterrupted(
            f"{arm} seed {seed} stopped ({result.status}) at step {result.progress.global_step}; "
            "run the same command again to continue it"
        )
    progress = result.progress
    record = {
        "arm": arm,
        "seed": seed,
        "preset": config.preset,
        "freeze_recurrent_weights": config.freeze_recurrent_weights,
        "epochs": progress.epoch,
        "global_step": progress.global_step,
        "tokens_seen": progress.tokens_seen,
        "best_val_perplexity": result.best_val_perplexity,
        "best_val_step": progress.best_val_step,
        "asgd_start_step": progress.asgd_start_step,
        "train_seconds": progress.train_seconds,
        "resumed": resumed,
    }
    if is_main_process():
        output.mark_finished(folder, record)
    return output.finished_run(folder) or {**record, "status": "completed"}


def best_model(plan: LMPlan, arm: str, seed: int) -> Path:
    """The ``best_model/`` folder of a finished run."""
    return output.run_dir(plan.output_dir, arm, seed) / "best_model"


def _device(plan: LMPlan) -> str:
    from ..devices import default_device_name

    return plan.device if plan.device is not None else default_device_name()


def compare_arms(plan: LMPlan, seed: int, arm: str, baseline: str = "baseline") -> dict[str, Any]:
    """Test perplexity of ``baseline`` (``a``) and ``arm`` (``b``) of ``seed`` and their paired block
    bootstrap, for each way of counting the bins (:data:`COUNTINGS`): ``{counting:
    compare_checkpoints result}`` (``comparison.*.diff`` = ``arm`` minus ``baseline``)."""
    from ..evaluation import compare_checkpoints
    from ..evaluation.json_values import to_json_compatible

    results = {}
    for name, splits in COUNTINGS.items():
        results[name] = to_json_compatible(
            compare_checkpoints(
                best_model(plan, baseline, seed),
                best_model(plan, arm, seed),
                str(plan.corpus_dir),
                split="test",
                batch_size=1,
                window=plan.settings["bptt"],
                count_splits=splits,
                n_resamples=plan.settings["n_resamples"],
                seed=seed,
                device=_device(plan),
            )
        )
    return results


def evaluation_stage(plan: LMPlan, seed: int) -> dict[str, Any]:
    """The multi-timescale model against the baseline (:func:`compare_arms`)."""
    return compare_arms(plan, seed, "multi_timescale")


def _test_streams(plan: LMPlan, tokenizer: Any) -> dict[str, Any]:
    from ..data import load_corpus, split_to_stream

    corpus = load_corpus(str(plan.corpus_dir))
    return {split: split_to_stream(corpus, split, tokenizer) for split in ("train", "valid", "test")}


def timescale_stage(plan: LMPlan, seed: int) -> dict[str, Any]:
    """The baseline's estimated timescales on the test split (batch 1, state carried) with the fits
    of :data:`FAMILIES` per layer and pooled over all layers (:func:`mtlstm_hf.analysis.timescale_report`)."""
    from ..analysis import estimate_timescales, timescale_report
    from ..evaluation import load_checkpoint

    model, tokenizer = load_checkpoint(best_model(plan, "baseline", seed), device=_device(plan))
    stream = _test_streams(plan, tokenizer)["test"]
    estimate = estimate_timescales(model, stream, batch_size=1, window=plan.settings["bptt"])
    return output.jsonable(timescale_report(estimate, FAMILIES, include_units=True))


def ablation_stage(plan: LMPlan, seed: int) -> dict[str, Any]:
    """Routing of the multi-timescale model: its layer-2 units in chunks of ``chunk_size`` ordered
    by assigned timescale (longest first), each chunk ablated in turn on the test split (batch 1);
    ``{counting: routing report}`` for each way of counting the bins."""
    from ..analysis import ablation_log_probs, resolve_chunks, routing_from_log_probs
    from ..evaluation import (
        DEFAULT_BIN_EDGES,
        bin_labels,
        frequency_bin_of_token,
        load_checkpoint,
        target_positions,
        token_counts,
    )

    model, tokenizer = load_checkpoint(best_model(plan, "multi_timescale", seed), device=_device(plan))
    streams = _test_streams(plan, tokenizer)
    chunk_size, window = plan.settings["chunk_size"], plan.settings["bptt"]
    chunks, ordering, order = resolve_chunks(model, ABLATION_LAYER, None, chunk_size, None)
    log_probs = ablation_log_probs(model, streams["test"], ABLATION_LAYER, chunks, batch_size=1, window=window)
    targets = streams["test"][target_positions(streams["test"].numel(), 1)]
    vocab_size = int(model.config.vocab_size)
    results = {}
    for name, splits in COUNTINGS.items():
        bins = frequency_bin_of_token(token_counts([streams[split] for split in splits], vocab_size), DEFAULT_BIN_EDGES)
        results[name] = output.jsonable(
            routing_from_log_probs(
                log_probs,
                targets,
                bins,
                bin_labels(DEFAULT_BIN_EDGES),
                False,
                ABLATION_LAYER,
                chunks,
                ordering,
                order,
                chunk_size,
                1,
                window,
            )
        )
    return results


STAGES: dict[str, Callable[[LMPlan, int], dict[str, Any]]] = {
    "evaluation": evaluation_stage,
    "timescales": timescale_stage,
    "ablation": ablation_stage,
}
"""The analyses of one seed, in order; each result goes to ``report.json`` under
``per_seed[seed][stage]``."""


def train_runs(plan: LMPlan, share: Share = EVERYTHING, on_run: Callable[[], object] | None = None) -> None:
    """Train every (arm, seed) run of ``share`` (all processes of a ``torchrun`` start take part in
    each), seed by seed, baseline first: a finished run is skipped, an interrupted one continued
    (:func:`train_run`). ``on_run()`` is called after each run (what it returns is not used).

    Raises:
        RunInterrupted: a run was stopped by a signal.
    """
    for arm, seed in share.mine([(arm, seed) for seed in plan.seeds for arm in plan.arms]):
        train_run(plan, arm, seed)
        if on_run is not None:
            on_run()


def analyse_seeds(
    plan: LMPlan, share: Share = EVERYTHING, recorded: dict[str, Any] | None = None,
    on_seed: Callable[[int], None] | None = None,
) -> None:  # fmt: skip
    """Run the :data:`STAGES` of every seed of ``share`` whose two runs are finished, each stage
    kept in its file as soon as it is done (:func:`.output.write_stage`); a stage already kept
    there, or in ``recorded`` (``report.json``'s ``per_seed`` of an earlier version), is skipped.
    ``on_seed(seed)`` is called after each seed."""
    recorded = recorded or {}
    for seed in share.mine(plan.seeds):
        if any(output.finished_run(output.run_dir(plan.output_dir, arm, seed)) is None for arm in plan.arms):
            continue  # not trained yet (a worker of the training phase failed): the report says so
        for stage, function in plan.stage_functions().items():
            if output.finished_stage(plan.output_dir, seed, stage) is not None or stage in recorded.get(str(seed), {}):
                continue
            started = time.perf_counter()
            plan.log(f"seed {seed}: {stage}")
            with float32_precision("highest"):  # the analyses never use TensorFloat-32 (cuDNN's default)
                result = function(plan, seed)
            output.write_stage(plan.output_dir, seed, stage, result, time.perf_counter() - started)
        if on_seed is not None:
            on_seed(seed)


def collect_report(plan: LMPlan, configuration: dict[str, Any]) -> dict[str, Any]:
    """``report.json``'s content from the output folder: the completion record of every finished run
    and every kept stage (and what an earlier ``report.json`` holds for stages kept nowhere else)."""
    report = output.load_report(plan.output_dir)
    report.update(
        format=output.REPORT_FORMAT, experiment=plan.experiment, scale=plan.scale, recipe=plan.recipe,
        configuration=configuration,
    )  # fmt: skip
    report.setdefault("runs", {arm: {} for arm in plan.arms})
    report.setdefault("per_seed", {})
    seeds = set(plan.seeds) | {int(seed) for seed in report["per_seed"]}
    seeds |= {int(seed) for arm in plan.arms for seed in report["runs"].get(arm, {})}
    for seed in sorted(seeds):
        for arm in plan.arms:
            record = output.finished_run(output.run_dir(plan.output_dir, arm, seed))
            if record is not None:
                report["runs"].setdefault(arm, {})[str(seed)] = record
        for stage in plan.stage_functions():
            kept = output.finished_stage(plan.output_dir, seed, stage)
            if kept is not None:
                entry = report["per_seed"].setdefault(str(seed), {})
                entry[stage] = kept["result"]
                entry.setdefault("seconds", {})[stage] = kept["seconds"]
    report["seeds"] = sorted(seeds)
    return report


def run_lm_experiment(
    plan: LMPlan, configuration: dict[str, Any], on_update: Callable[[dict[str, Any]], None] | None = None,
    share: Share = EVERYTHING,
) -> dict[str, Any]:  # fmt: skip
    """Train every run, then analyse every seed (:func:`train_runs`, :func:`analyse_seeds`), writing
    ``report.json`` after each run and each seed's stages; returns the report.

    Training comes first for all seeds: the analyses run on the main process only, and the other
    processes of a ``torchrun`` start would otherwise wait for them in the next run's first
    collective (NCCL gives up after 10 minutes). ``on_update(report)`` is called after each seed's
    stages (the caller writes the summary, claims, REPORT.md and figures from it). A worker of
    ``--processes`` (``share``) does its share of its phase and writes no report.

    Raises:
        RunInterrupted: a training run was stopped by a signal.
    """
    main = is_main_process() and not share.is_worker

    def save() -> dict[str, Any] | None:
        if not main:
            return None
        report = collect_report(plan, configuration)
        output.save_report(plan.output_dir, report)
        return report

    if share.does("train"):
        train_runs(plan, share, save)
    if share.does("analyse") and (is_main_process() or share.is_worker):
        recorded = output.load_report(plan.output_dir).get("per_seed", {})

        def seed_done(seed: int) -> None:
            report = save()
            if on_update is not None and report is not None:
                on_update(report)

        analyse_seeds(plan, share, recorded, seed_done)
    return save() or collect_report(plan, configuration)


def expected_training_seconds(plan: LMPlan, steps: int = 3) -> dict[str, Any]:
    """Time ``steps`` optimizer steps of the last arm (multi-timescale; after one uncounted step) and
    extrapolate to every run still to train: ``{"tokens_per_second", "tokens_per_epoch",
    "runs_left", "seconds"}``. Writes nothing (the steps run in memory)."""
    from ..training import LanguageModelTrainer, finish_accelerator

    config = training_config(plan, plan.arms[-1], plan.seeds[0]).replace(
        output_dir=str(plan.output_dir / ".throughput-probe"), tracker="none", progress_bar=False
    )
    trainer = LanguageModelTrainer(config)
    try:
        tokens, seconds = 0, 0.0
        with float32_precision(config.matmul_precision):  # as the runs will train
            for step in range(steps + 1):
                windows, _ = trainer.next_windows()
                started = time.perf_counter()
                trainer.train_step(windows)
                if step > 0:
                    seconds += time.perf_counter() - started
                    tokens += sum(inputs.shape[1] for inputs, _ in windows) * config.batch_size
        tokens_per_epoch = int(trainer.rows.shape[1] - 1) * config.batch_size
    finally:
        finish_accelerator(trainer.accelerator)
    rate = tokens / max(seconds, 1e-9)
    left = sum(
        output.finished_run(output.run_dir(plan.output_dir, arm, seed)) is None
        for arm in plan.arms
        for seed in plan.seeds
    )
    return {
        "tokens_per_second": rate,
        "tokens_per_epoch": tokens_per_epoch,
        "runs_left": left,
        "seconds": left * plan.settings["epochs"] * tokens_per_epoch / rate,
    }


__all__ = [
    "ABLATION_LAYER",
    "ARMS",
    "COUNTINGS",
    "FAMILIES",
    "LMPlan",
    "RECIPES",
    "RunInterrupted",
    "STAGES",
    "ablation_stage",
    "best_model",
    "compare_arms",
    "evaluation_stage",
    "expected_training_seconds",
    "is_main_process",
    "analyse_seeds",
    "collect_report",
    "run_lm_experiment",
    "train_runs",
    "timescale_stage",
    "train_run",
    "training_config",
]
