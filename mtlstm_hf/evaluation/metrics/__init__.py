"""``evaluate`` metric scripts shipped with the package (load them by path, see
:func:`mtlstm_hf.evaluation.frequency_binned_perplexity_metric_path`)."""
