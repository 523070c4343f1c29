"""Analyses of trained multi-timescale LSTM language models.

Modules (this package depends on the model and evaluation packages, never the reverse):

- :mod:`.adapter`: the one way analyses reach the model: base model, layer selection, eval mode,
  the units an ablation zeroes (the stream is cut into rows and windows by
  ``mtlstm_hf.evaluation.perplexity``);
- :mod:`.traces`: per-layer gates/cells/hidden states from one forward (``layer_traces``), streamed
  over a long token stream with the state carried (``stream_traces``, ``trace_moments``);
- :mod:`.timescales`: estimated timescales ``T = -1 / ln mean(f)``, inverse-gamma and alternative
  fits with AIC/KS, comparison with assigned timescales (Mahto et al. 2021);
- :mod:`.ablation`: zero chosen units' output for the layers above (``ablate_units``), routing
  reports of per-bin perplexity ratios by frequency or word class;
- :mod:`.memory_span`: weighted-sum mass ``||w_{t-d}^t||`` vs distance (Levy et al. 2018);
- :mod:`.state_gradients`: ``d s_t / d x_{t-tau}`` memory analysis (Verwimp et al. 2020), with
  :mod:`.state_gradient_steps` (each layer's step, ``naive.cell_step``, and its linearisation) and
  :mod:`.state_gradient_result` (the sums and the measures read from them);
- :mod:`.mutual_information`: ``I(d)`` of a corpus and its power-law decay;
- :mod:`.figures`: every matplotlib figure (``pip install matplotlib``, a dependency of mtlstm_hf);
- :mod:`.registry`: the analyses a report run knows (``ANALYSIS_REGISTRY``, ``register_analysis``),
  each a module of :mod:`.runs` with ``run(context)`` (its report section and figures) and
  ``estimated_seconds(context)``, given an :class:`.context.AnalysisContext`;
- :mod:`.report`, :mod:`.cli`: run the registered analyses on a checkpoint and write
  ``report.json`` + figures (command ``mtlstm-analyze``); ``load_report`` reads the folder back.

The functions ``state_gradients`` and ``mutual_information`` share their module's name, so they
are not re-exported here (that would hide the modules): call
``analysis.state_gradients.state_gradients(...)`` and
``analysis.mutual_information.mutual_information(...)``.

Layers: arguments and attributes that index ``model.model.layers`` are 0-based; everything a person
reads (report.json, figure titles, legends and file names, ``mtlstm-analyze --ablation-layer``)
numbers layers from 1, as the paper does (README.md in this folder).

Attributes are imported on first use (PEP 562), so ``mtlstm-analyze --help`` imports no torch.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "UnitAblation": ".ablation",
    "ablate_units": ".ablation",
    "ablation_log_probs": ".ablation",
    "resolve_chunks": ".ablation",
    "routing_from_log_probs": ".ablation",
    "routing_report": ".ablation",
    "timescale_chunks": ".ablation",
    "units_by_timescale": ".ablation",
    "word_class_routing_report": ".ablation",
    "word_class_table": ".ablation",
    "layer_style": ".figures",
    "plot_memory_span": ".figures",
    "plot_mutual_information": ".figures",
    "plot_passage_weighted_sum": ".figures",
    "plot_routing_heatmap": ".figures",
    "plot_state_gradient_layers": ".figures",
    "plot_state_gradient_memory": ".figures",
    "plot_timescale_histograms": ".figures",
    "plot_timescales": ".figures",
    "plot_weighted_sum_heatmap": ".figures",
    "save_figure": ".figures",
    "active_ablation": ".adapter",
    "base_model": ".adapter",
    "eval_mode": ".adapter",
    "forget_gate_layers": ".adapter",
    "layers_with_forget_gate": ".adapter",
    "resolve_layers": ".adapter",
    "token_rows": "..evaluation.perplexity",
    "MemorySpan": ".memory_span",
    "estimate_memory_span": ".memory_span",
    "passage_log_weights": ".memory_span",
    "ESTIMATORS": ".mutual_information",
    "DecayComparison": ".mutual_information",
    "MutualInformationResult": ".mutual_information",
    "PowerLawFit": ".mutual_information",
    "compare_decay": ".mutual_information",
    "entropy_from_counts": ".mutual_information",
    "fit_power_law": ".mutual_information",
    "log_spaced_distances": ".mutual_information",
    "timescale_decay": ".mutual_information",
    "ANALYSES": ".report",
    "ANALYSIS_REGISTRY": ".registry",
    "Analysis": ".registry",
    "AnalysisContext": ".context",
    "register_analysis": ".registry",
    "unregister_analysis": ".registry",
    "DEFAULT_STATE_GRADIENT_POSITIONS": ".report",
    "AnalysisSettings": ".report",
    "analyze_checkpoint": ".report",
    "default_ablation_layer": ".report",
    "load_report": ".report",
    "load_word_classes": ".report",
    "run_analyses": ".report",
    "write_report": ".report",
    "StateGradientResult": ".state_gradient_result",
    "embedding_whitening": ".state_gradient_result",
    "CellStep": ".state_gradient_steps",
    "LSTMLinearization": ".state_gradient_steps",
    "Linearization": ".state_gradient_steps",
    "StepFunction": ".state_gradient_steps",
    "model_layer_steps": ".state_gradient_steps",
    "unroll_layer_steps": ".state_gradient_steps",
    "StateGradientAccumulator": ".state_gradients",
    "accumulate_state_gradients": ".state_gradients",
    "frequency_classes": ".state_gradients",
    "matrix_count": ".state_gradients",
    "source_positions": ".state_gradients",
    "DISTRIBUTION_FAMILIES": ".timescales",
    "MIN_TIMESCALE_SPREAD": ".timescales",
    "DistributionFit": ".timescales",
    "LayerTimescales": ".timescales",
    "TimescaleEstimate": ".timescales",
    "best_family": ".timescales",
    "compare_with_assigned": ".timescales",
    "estimate_timescales": ".timescales",
    "fit_inverse_gamma": ".timescales",
    "fit_timescale_distribution": ".timescales",
    "inverse_gamma_fit_note": ".timescales",
    "timescale_report": ".timescales",
    "TraceChunk": ".traces",
    "TraceMoments": ".traces",
    "forward_traces": ".traces",
    "layer_traces": ".traces",
    "stream_traces": ".traces",
    "trace_moments": ".traces",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
