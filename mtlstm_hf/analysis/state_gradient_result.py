"""What state gradients are summed into, and the measures read from the sums.

Verwimp, Van hamme, Wambacq, "State gradients for analyzing memory in LSTM language models",
Computer Speech & Language 61 (2020), Sec. 3: the average state gradient ``G(t, tau) = d s_t /
d x_{t-tau}`` per delay and source-word class, normalised by a square root ``D`` of the
embedding covariance (``G~ = G D``, :func:`embedding_whitening`), and the singular values of
``G~`` as the memory of each delay. Singular values do not depend on the choice of square root
(``D -> D Q``, ``Q`` orthogonal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .adapter import deprecated_layer_attribute

__all__ = ["StateGradientResult", "embedding_whitening"]


@dataclass
class StateGradientResult:
    """Sums of signed state gradients per delay and source-word class.

    Attributes:
        sums: ``(D, C, H, E)`` float64; ``sums[tau, k] = sum G(t, tau)`` over all ``t`` whose
            source word ``w_{t-tau}`` is in class ``k`` (and lies in the same segment as ``t``).
        counts: ``(D, C)`` int64, the number of matrices in each sum.
        layer_index: 0-based index of the layer whose state was differentiated (None for a custom stack).
        state: ``"cell"``, ``"hidden"`` or ``"custom"``.
        class_labels: optional names of the ``C`` classes.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    layer_index: int | None = None
    state: str = "custom"
    class_labels: list[str] | None = field(default=None)

    layer = deprecated_layer_attribute()

    @property
    def max_delay(self) -> int:
        return self.sums.shape[0]

    @property
    def num_classes(self) -> int:
        return self.sums.shape[1]

    def mean(self) -> torch.Tensor:
        """Average signed state gradient ``(D, C, H, E)``; NaN where a ``(delay, class)`` has no count."""
        counts = self.counts.to(self.sums.dtype)[:, :, None, None]
        mean = self.sums / counts.clamp(min=1)
        return mean.masked_fill(counts == 0, float("nan"))

    def pooled(self) -> StateGradientResult:
        """All classes merged into one (``C = 1``), e.g. the curve for "all words"."""
        return StateGradientResult(
            self.sums.sum(1, keepdim=True), self.counts.sum(1, keepdim=True), self.layer_index, self.state, ["all"]
        )

    def normalized(self, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """``G~ = mean(G) D`` ``(D, C, H, E)`` with ``D`` from :func:`embedding_whitening`.

        ``whitening=None`` returns the raw average (no normalisation).
        """
        mean = self.mean()
        if whitening is None:
            return mean
        return mean @ _check_whitening(whitening, self.sums.shape[-1]).to(mean)

    def summarize(
        self, summary: Callable[[torch.Tensor], torch.Tensor], whitening: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply a user measure to the normalised averages: ``summary(G~ (D, C, H, E))``.

        The hook for measures whose exact definition is not verified (the paper's "average
        memory" and "selectiveness" of Verwimp et al. 2020), e.g.
        ``result.summarize(lambda g: torch.linalg.svdvals(g).mean(-1), whitening)``.
        Entries without count are NaN matrices; the summary decides what to do with them.
        """
        return summary(self.normalized(whitening))

    def singular_values(self, k: int = 5, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """The ``k`` largest singular values of ``G~`` per delay and class, ``(D, C, k)`` (NaN: no count)."""
        normalized = self.normalized(whitening)
        limit = min(normalized.shape[-2:])
        if not 1 <= k <= limit:
            raise ValueError(f"k must lie in [1, min(H, E) = {limit}], got {k}.")
        empty = self.counts == 0
        # LAPACK rejects NaN input: decompose zeros for empty entries, then mark them NaN.
        values = torch.linalg.svdvals(torch.nan_to_num(normalized, nan=0.0))[..., :k]
        return values.masked_fill(empty[..., None], float("nan"))

    def memory(self, k: int = 5, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of the ``k`` largest singular values of ``G~``, ``(D, C)``: "memory" vs delay."""
        return self.singular_values(k, whitening).sum(-1)

    def relative_memory(self, direction: torch.Tensor, whitening: torch.Tensor | None = None) -> torch.Tensor:
        """Relative memory of embedding directions: ``|G~ d~| / sigma_1(G~)``.

        ``d~ = D^-1 d / |D^-1 d|`` (the direction in whitened coordinates, unit length;
        ``D = I`` when ``whitening`` is None). The value lies in ``[0, 1]``: 1 when ``d`` is
        the best-remembered direction.

        Args:
            direction: ``(E,)`` or ``(P, E)``, e.g. mean noun embedding minus mean verb embedding.
            whitening: ``D`` from :func:`embedding_whitening`, or None.

        Returns:
            ``(D, C)`` for one direction, ``(D, C, P)`` for ``P``; NaN where there is no count.
        """
        num_features = self.sums.shape[-1]
        direction = torch.as_tensor(direction, dtype=torch.float64, device=self.sums.device)
        if direction.shape[-1] != num_features or direction.dim() not in (1, 2):
            raise ValueError(f"direction must be (E,) or (P, E) with E={num_features}, got {tuple(direction.shape)}.")
        directions = direction.reshape(-1, num_features)
        if whitening is not None:
            # A general solve, not a triangular one: any square root D Q of Sigma is allowed.
            square_root = _check_whitening(whitening, num_features).to(directions)
            directions = torch.linalg.solve(square_root, directions.T).T
        norms = directions.norm(dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("direction must be non-zero.")
        directions = directions / norms
        normalized = self.normalized(whitening)
        remembered = (normalized @ directions.T).norm(dim=-2)  # (D, C, P)
        top = self.singular_values(1, whitening)  # (D, C, 1)
        relative = remembered / top
        return relative[..., 0] if direction.dim() == 1 else relative


def _check_whitening(whitening: torch.Tensor, num_features: int) -> torch.Tensor:
    whitening = torch.as_tensor(whitening)
    if whitening.shape != (num_features, num_features):
        raise ValueError(
            f"whitening must be the (E, E) = ({num_features}, {num_features}) matrix from embedding_whitening(), "
            f"got shape {tuple(whitening.shape)}."
        )
    return whitening


def embedding_whitening(embedding_matrix: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """``D = cholesky(Sigma)``, Sigma the covariance of the vocabulary's embedding rows.

    ``Sigma = (X - mean)^T (X - mean) / (V - 1)`` over the ``V`` rows of ``X``; the normalised
    state gradient is ``G~ = G D`` (Verwimp et al. 2020): an input change of one standard
    deviation along any direction of embedding space then counts the same.

    Args:
        embedding_matrix: ``(V, E)``, e.g. ``model.get_input_embeddings().weight``.
        ridge: added to the diagonal of ``Sigma`` (for a rank-deficient embedding matrix).

    Returns:
        ``(E, E)`` float64 lower-triangular ``D`` with ``D D^T = Sigma``.
    """
    embeddings = torch.as_tensor(embedding_matrix).detach().to(torch.float64)
    if embeddings.dim() != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embedding_matrix must be (V, E) with V >= 2 rows, got {tuple(embeddings.shape)}.")
    centered = embeddings - embeddings.mean(0)
    covariance = centered.T @ centered / (embeddings.shape[0] - 1)
    covariance = covariance + ridge * torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
    lower, info = torch.linalg.cholesky_ex(covariance)
    if int(info) != 0:
        raise ValueError(
            "the embedding covariance is not positive definite (the rows do not span all E dimensions); pass ridge > 0."
        )
    return lower
