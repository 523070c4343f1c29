"""Deprecated alias of :mod:`mtlstm_hf.models.mtlstm.naive` (removed in the next minor version)."""

import warnings

from mtlstm_hf.models.mtlstm.naive import *  # noqa: F403
from mtlstm_hf.models.mtlstm.naive import reference_sequence, reference_trace  # noqa: F401

warnings.warn(
    "mtlstm_hf.ops.naive moved to mtlstm_hf.models.mtlstm.naive; the old name goes in the next minor version.",
    DeprecationWarning,
    stacklevel=2,
)
