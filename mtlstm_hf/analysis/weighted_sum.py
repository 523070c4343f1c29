"""Heat map of the LSTM-as-weighted-sum weights (Levy et al. 2018, Fig. 2 style).

``c_t = sum_j w_j^t * c~_j``: the map shows ``||w_j^t||_2`` (norm over hidden units), rows =
context word ``j``, columns = current word ``t``, so column ``t`` tells how much each earlier
word's content still contributes to the memory cell at ``t``. Inputs come from
:func:`mtlstm_hf.models.mtlstm.gates.weighted_sum_log_weights` (or ``weighted_sum_span``).
matplotlib is imported only when plotting.
"""

from __future__ import annotations

from typing import Any

import torch

from mtlstm_hf.models.mtlstm.gates import weighted_sum_norms


def _import_pyplot() -> Any:
    try:
        import matplotlib.pyplot as pyplot
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot_weighted_sum_heatmap needs matplotlib: pip install mtlstm_hf[plot]"
        ) from error
    return pyplot


def plot_weighted_sum_heatmap(
    log_weights: torch.Tensor,
    tokens: list[str],
    ax: Any = None,
    *,
    cmap: str = "viridis",
    colorbar: bool = True,
    title: str | None = None,
) -> tuple[Any, Any]:
    """Draw ``||w_j^t||_2`` for one sequence as a heat map.

    Args:
        log_weights: ``(T, T, H)`` log weights of one batch row, indexed ``[t, j, unit]``
            (``-inf`` above the diagonal, ``j > t``), e.g. ``weighted_sum_log_weights(...)[0][b]``.
        tokens: the ``T`` words, used as tick labels on both axes.
        ax: a matplotlib Axes to draw into; a new figure is created if None.
        cmap: colour map name.
        colorbar: add a colour bar labelled with the quantity.
        title: optional axes title.

    Returns:
        ``(figure, axes)``. Cells with ``j > t`` (the future) are left blank.

    Raises:
        ImportError: if matplotlib is missing (``pip install mtlstm_hf[plot]``).
        ValueError: if shapes and tokens disagree.
    """
    if log_weights.dim() != 3 or log_weights.shape[0] != log_weights.shape[1]:
        raise ValueError(f"log_weights must be (T, T, H) for one sequence; got {tuple(log_weights.shape)}.")
    if len(tokens) != log_weights.shape[0]:
        raise ValueError(f"got {len(tokens)} tokens for T={log_weights.shape[0]} steps.")
    pyplot = _import_pyplot()
    # norms[t, j] -> image[j, t]: rows = context word j, columns = current word t.
    norms = weighted_sum_norms(log_weights.detach().double().cpu()).T
    total_steps = norms.shape[0]
    future = torch.arange(total_steps)[:, None] > torch.arange(total_steps)[None, :]  # j > t
    image = norms.masked_fill(future, float("nan")).numpy()
    if ax is None:
        figure, ax = pyplot.subplots(figsize=(0.45 * total_steps + 2.5, 0.45 * total_steps + 1.5))
    else:
        figure = ax.figure
    artist = ax.imshow(image, cmap=cmap, origin="upper", aspect="equal", interpolation="nearest")
    ax.set_xticks(range(total_steps), labels=tokens, rotation=90)
    ax.set_yticks(range(total_steps), labels=tokens)
    ax.set_xlabel("current word t")
    ax.set_ylabel("context word j")
    if title is not None:
        ax.set_title(title)
    if colorbar:
        figure.colorbar(artist, ax=ax, label=r"$\|w_j^t\|_2$")
    return figure, ax
