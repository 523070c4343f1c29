"""Reproductions of the experiments of Mahto et al. (ICLR 2021).

- ``mtlstm-reproduce EXPERIMENT --scale SCALE --output-dir DIR`` (:mod:`.cli`): one command per
  experiment (``lm-ptb``, ``lm-wikitext2``, ``dyck2``: one :class:`.experiments.Experiment` each in
  the registry :data:`.experiments.EXPERIMENTS`) at a scale (``smoke``, ``cpu``, ``paper``,
  defined in :mod:`.scales`); :func:`.experiment.prepare` checks every input before anything is
  written and :func:`.experiment.run` trains both arms over the seeds (resumable), evaluates and
  writes ``report.json``, figures and ``REPORT.md`` (a verdict per claim, :mod:`.claims`).
- :mod:`.lm`: the language-model experiments (training through :mod:`mtlstm_hf.training`,
  per-bin perplexity and bootstrap through :mod:`mtlstm_hf.evaluation`, timescale fits and
  ablation routing through :mod:`mtlstm_hf.analysis`).
- :mod:`.dyck`: the Dyck-2 formal language task (section 5): baseline vs multi-timescale LSTM,
  sequence accuracy overall and by longest bracket span, mean and 95% CI over seeds.
- :mod:`.statistics`: the intervals over seeds of every experiment (t, geometric, Welch).

Attributes are imported on first use (:mod:`mtlstm_hf.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    name: ".dyck"
    for name in (
        "DyckSettings",
        "DyckRun",
        "DyckExperiment",
        "build_dyck_model",
        "dyck_config",
        "run_dyck_experiment",
        "run_dyck_seed",
    )
}
_EXPORTS.update(welch_difference=".statistics", mean_confidence_interval=".statistics")
_EXPORTS.update(EXPERIMENTS=".experiments", Experiment=".experiments")
_EXPORTS.update(prepare=".experiment", run=".experiment", ReproduceSettings=".settings", SCALES=".scales")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
