"""Deprecated alias of :mod:`mtlstm_hf.analysis.gates` (removed in the next minor version)."""

import warnings

from mtlstm_hf.analysis.gates import *  # noqa: F403
from mtlstm_hf.analysis.gates import (  # noqa: F401
    gates_and_cells,
    layer_gates_and_cells,
    reconstruct_cells,
    weighted_sum_log_weights,
    weighted_sum_norms,
    weighted_sum_span,
)

warnings.warn(
    "mtlstm_hf.ops.gates moved to mtlstm_hf.analysis.gates; the old name goes in the next minor version.",
    DeprecationWarning,
    stacklevel=2,
)
