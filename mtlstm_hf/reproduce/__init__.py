"""Reproductions of the experiments of Mahto et al. (ICLR 2021).

- :mod:`.dyck`: the Dyck-2 formal language task (section 5): baseline vs multi-timescale LSTM,
  sequence accuracy overall and by longest bracket span, mean and 95% CI over seeds.

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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
