"""The ``state_gradients`` analysis: state-gradient memory vs delay per layer (Verwimp et al.
2020), over all sampled source words and per frequency bin (:mod:`..state_gradients`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from mtlstm_hf.evaluation.perplexity import token_rows
from mtlstm_hf.models.mtlstm.layouts import layer_number
from mtlstm_hf.progress import Share

from ..adapter import base_model
from ..context import STEP_RATE, AnalysisContext
from ..registry import Figures

if TYPE_CHECKING:
    from ..state_gradient_result import StateGradientResult

__all__ = ["estimated_seconds", "run"]


def _source_positions_setting(context: AnalysisContext) -> int | None:
    """``state_gradient_positions``: AnalysisSettings makes ``'all'`` None and a number an int (a
    string left is a TypeError, as torch raised for it)."""
    positions = context.settings.state_gradient_positions
    if isinstance(positions, str):
        raise TypeError(f"state_gradient_positions must be an int or None here, got {positions!r}.")
    return positions


def _layer_index(result: StateGradientResult) -> int:
    """The result's 0-based layer index (state_gradients sets it on every result)."""
    assert result.layer_index is not None
    return result.layer_index


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures
    from ..state_gradient_result import embedding_whitening
    from ..state_gradients import frequency_classes, source_positions, state_gradients

    settings = context.settings
    positions = _source_positions_setting(context)
    base: Any = base_model(context.model)  # the model's own modules (torch's Module typing says Tensor | Module)
    vocab_size = base.embeddings.num_embeddings
    classes, labels = frequency_classes(context.counting_streams, vocab_size, settings.bin_edges)
    stream = context.stream
    try:
        whitening = embedding_whitening(base.embeddings.weight)
    except ValueError:  # rank-deficient embeddings: raw (un-normalised) gradients
        whitening = None
    cell_layers = [index for index, layer in enumerate(base.layers) if layer.layout.has_cell]
    hidden_layers = [index for index, layer in enumerate(base.layers) if not layer.layout.has_cell]
    groups = [(layers, state) for layers, state in ((cell_layers, "cell"), (hidden_layers, "hidden")) if layers]
    results: list[StateGradientResult] = []
    for position, (layers, state) in enumerate(groups):
        share = (
            context.progress.part(1.0 / (len(groups) - position))
            if isinstance(context.progress, Share)
            else context.progress
        )
        results += cast(
            list["StateGradientResult"],
            state_gradients(  # (a list of layers: a list of results)
                context.model,
                stream,
                max_delay=settings.max_delay,
                segment_length=settings.segment_length,
                layer=layers,
                state=state,
                token_classes=classes,
                num_classes=len(labels),
                class_labels=labels,
                batch_size=settings.batch_size,
                positions=positions,
                progress=share,
            ),
        )
        if isinstance(share, Share):
            share.finish()
    results.sort(key=_layer_index)
    k = max(1, min(settings.k, base.embeddings.embedding_dim, *(layer.hidden_size for layer in base.layers)))
    row_length = token_rows(stream, settings.batch_size).shape[1]  # the rows state_gradients used
    sources = source_positions(row_length, positions)
    layers_out = [
        {
            "layer": layer_number(_layer_index(result)),
            "state": result.state,
            "memory": result.memory(k, whitening).tolist(),
            "pooled_memory": result.pooled().memory(k, whitening)[:, 0].tolist(),
            "counts": result.counts.tolist(),
        }
        for result in results
    ]
    report = {
        "layers": layers_out,
        "class_labels": labels,
        "max_delay": settings.max_delay,
        "segment_length": settings.segment_length,
        "n_tokens": int(stream.numel()),
        "batch_size": settings.batch_size,
        "positions": "all" if settings.state_gradient_positions is None else settings.state_gradient_positions,
        "n_sources": int(sources.numel()) * settings.batch_size,
        "source_positions": sources.tolist(),
        "k": k,
        "whitened": whitening is not None,
    }
    drawings: Figures = {
        "state_gradients": lambda: figures.plot_state_gradient_layers(results, k=k, whitening=whitening)
    }
    return report, drawings


def estimated_seconds(context: AnalysisContext) -> float:
    """The tangent products of every ``G(t, tau)`` matrix computed (0 when the rows are shorter
    than the delays: the analysis is then skipped)."""
    from ..state_gradients import matrix_count, source_positions

    settings = context.settings
    sizes, inputs = context.layer_sizes()
    row_length = max(context.stream.numel() // settings.batch_size, 1)
    if row_length < settings.max_delay:
        return 0.0
    sources = source_positions(row_length, _source_positions_setting(context))
    matrices = settings.batch_size * matrix_count(sources, row_length, settings.max_delay, settings.segment_length)
    per_matrix = sum(2 * hidden * (hidden + size_in) for hidden, size_in in zip(sizes, inputs))
    # an nn.Embedding (torch's Module typing says Tensor | Module)
    embeddings: Any = base_model(context.model).embeddings
    return matrices * per_matrix * embeddings.embedding_dim / STEP_RATE
