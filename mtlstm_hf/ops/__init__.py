"""Deprecated: ``mtlstm_hf.ops`` was split by what it holds. The naive per-step references are
``mtlstm_hf.models.mtlstm.naive`` (beside the kernels they check); the gates, cells and weighted
sums of a sequence are ``mtlstm_hf.analysis.gates``. These aliases go in the next minor version."""
