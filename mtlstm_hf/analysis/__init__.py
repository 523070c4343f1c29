"""Analyses of trained multi-timescale LSTM language models.

Modules (this package depends on the model and evaluation packages, never the reverse):

- :mod:`.traces`: per-layer gates/cells/hidden states from one forward (``layer_traces``), streamed
  over a long token stream with the state carried (``stream_traces``, ``trace_moments``);
- :mod:`.timescales`: estimated timescales ``T = -1 / ln mean(f)``, inverse-gamma and alternative
  fits with AIC/KS, comparison with assigned timescales (Mahto et al. 2021);
- :mod:`.ablation`: zero chosen units' output for the layers above (``ablate_units``), routing
  reports of per-bin perplexity ratios by frequency or word class;
- :mod:`.memory_span`: weighted-sum mass ``||w_{t-d}^t||`` vs distance (Levy et al. 2018);
- :mod:`.weighted_sum`: the ``||w_j^t||`` heat map of a passage;
- :mod:`.state_gradients`: ``d s_t / d x_{t-tau}`` memory analysis (Verwimp et al. 2020);
- :mod:`.mutual_information`: ``I(d)`` of a corpus and its power-law decay;
- :mod:`.figures`, :mod:`.plots`: matplotlib figures (``pip install mtlstm_hf[plot]``);
- :mod:`.report`, :mod:`.cli`: run everything on a checkpoint and write ``report.json`` + figures
  (command ``mtlstm-analyze``); ``load_report`` reads the folder back.

The functions ``state_gradients`` and ``mutual_information`` share their module's name, so they
are not re-exported here (that would hide the modules): call
``analysis.state_gradients.state_gradients(...)`` and
``analysis.mutual_information.mutual_information(...)``.
"""

from .ablation import (
    UnitAblation,
    ablate_units,
    ablation_log_probs,
    active_ablation,
    class_binned_perplexity,
    routing_report,
    timescale_chunks,
    units_by_timescale,
    word_class_routing_report,
    word_class_table,
)
from .figures import (
    plot_memory_span,
    plot_passage_weighted_sum,
    plot_routing_heatmap,
    plot_timescale_histograms,
    plot_timescales,
    save_figure,
)
from .memory_span import MemorySpan, estimate_memory_span, layers_with_memory_cell, passage_log_weights
from .mutual_information import (
    ESTIMATORS,
    DecayComparison,
    MutualInformationResult,
    PowerLawFit,
    compare_decay,
    entropy_from_counts,
    fit_power_law,
    log_spaced_distances,
    timescale_decay,
)
from .plots import plot_mutual_information, plot_state_gradient_memory
from .report import (
    ANALYSES,
    AnalysisSettings,
    analyze_checkpoint,
    default_ablation_layer,
    load_report,
    load_word_classes,
    run_analyses,
    write_report,
)
from .state_gradients import (
    LayerStep,
    LayerWeights,
    StateGradientAccumulator,
    StateGradientResult,
    accumulate_state_gradients,
    embedding_whitening,
    frequency_classes,
    lstm_cell_step,
    model_layer_steps,
    register_cell_step,
    unroll_layer_steps,
)
from .timescales import (
    DISTRIBUTION_FAMILIES,
    DistributionFit,
    LayerTimescales,
    TimescaleEstimate,
    best_family,
    compare_with_assigned,
    estimate_timescales,
    fit_inverse_gamma,
    fit_timescale_distribution,
    layers_with_forget_gate,
    timescale_report,
)
from .traces import (
    TraceChunk,
    TraceMoments,
    forward_traces,
    layer_traces,
    stream_rows,
    stream_traces,
    trace_moments,
)
from .weighted_sum import plot_weighted_sum_heatmap

__all__ = [
    # traces
    "TraceChunk",
    "TraceMoments",
    "forward_traces",
    "layer_traces",
    "stream_rows",
    "stream_traces",
    "trace_moments",
    # timescales
    "DISTRIBUTION_FAMILIES",
    "DistributionFit",
    "LayerTimescales",
    "TimescaleEstimate",
    "best_family",
    "compare_with_assigned",
    "estimate_timescales",
    "fit_inverse_gamma",
    "fit_timescale_distribution",
    "layers_with_forget_gate",
    "timescale_report",
    # ablation / routing
    "UnitAblation",
    "ablate_units",
    "ablation_log_probs",
    "active_ablation",
    "class_binned_perplexity",
    "routing_report",
    "timescale_chunks",
    "units_by_timescale",
    "word_class_routing_report",
    "word_class_table",
    # memory span / weighted sum
    "MemorySpan",
    "estimate_memory_span",
    "layers_with_memory_cell",
    "passage_log_weights",
    "plot_weighted_sum_heatmap",
    # state gradients (the function itself: analysis.state_gradients.state_gradients)
    "LayerStep",
    "LayerWeights",
    "StateGradientAccumulator",
    "StateGradientResult",
    "accumulate_state_gradients",
    "embedding_whitening",
    "frequency_classes",
    "lstm_cell_step",
    "model_layer_steps",
    "register_cell_step",
    "unroll_layer_steps",
    # mutual information (the function itself: analysis.mutual_information.mutual_information)
    "ESTIMATORS",
    "DecayComparison",
    "MutualInformationResult",
    "PowerLawFit",
    "compare_decay",
    "entropy_from_counts",
    "fit_power_law",
    "log_spaced_distances",
    "timescale_decay",
    # figures
    "plot_memory_span",
    "plot_mutual_information",
    "plot_passage_weighted_sum",
    "plot_routing_heatmap",
    "plot_state_gradient_memory",
    "plot_timescale_histograms",
    "plot_timescales",
    "save_figure",
    # report / command line
    "ANALYSES",
    "AnalysisSettings",
    "analyze_checkpoint",
    "default_ablation_layer",
    "load_report",
    "load_word_classes",
    "run_analyses",
    "write_report",
]
