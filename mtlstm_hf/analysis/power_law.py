"""The power law of a population of timescales (Mahto et al., ICLR 2021, Sec. 3.1): the density
and survival function of the inverse gamma distribution of timescales, and the mean decay
``E[exp(-t/T)] = (1 + t/beta) ** -alpha`` of units with ``T ~ InverseGamma(alpha, beta)``.

Pure torch float64 math (no scipy), used by the analyses (fits, figures, mutual information).
The inverse survival function, which places a layer's timescales, is
``mtlstm_hf.models.mtlstm.timescales.inverse_gamma_isf`` (it travels to the Hub with the model).
"""

from __future__ import annotations

import math

import torch

from mtlstm_hf.models.mtlstm.checks import check_positive_finite
from mtlstm_hf.models.mtlstm.timescales import as_float64

__all__ = ["inverse_gamma_pdf", "inverse_gamma_sf", "power_law_decay"]


def inverse_gamma_pdf(t: torch.Tensor | float, alpha: float, beta: float) -> torch.Tensor:
    """Density of ``T ~ InverseGamma(alpha, scale=beta)`` at ``t`` (tokens).

    ``p(t) = beta**alpha / Gamma(alpha) * t**(-alpha - 1) * exp(-beta / t)``
    for ``t > 0`` and 0 otherwise (same parametrisation as
    ``scipy.stats.invgamma(a=alpha, scale=beta)``).

    Returns:
        float64 tensor with the shape of ``t``.
    """
    alpha = check_positive_finite(alpha, "alpha")
    beta = check_positive_finite(beta, "beta")
    t = as_float64(t)
    positive = t > 0.0
    safe_t = torch.where(positive, t, torch.ones_like(t))  # avoid log(0) * inf = nan
    log_pdf = alpha * math.log(beta) - math.lgamma(alpha) - (alpha + 1.0) * torch.log(safe_t) - beta / safe_t
    return torch.where(positive, torch.exp(log_pdf), torch.zeros_like(t))


def inverse_gamma_sf(t: torch.Tensor | float, alpha: float, beta: float) -> torch.Tensor:
    """Survival function ``P(T > t)`` of ``T ~ InverseGamma(alpha, scale=beta)``.

    ``T = beta / X`` with ``X ~ Gamma(alpha, 1)``, so ``P(T > t) = P(X < beta/t)``,
    the regularized lower incomplete gamma function ``P(alpha, beta / t)``.

    Args:
        t: timescale in tokens, any shape. ``t <= 0`` gives 1, ``t = inf`` gives 0.

    Returns:
        float64 tensor with the shape of ``t``.
    """
    alpha = check_positive_finite(alpha, "alpha")
    beta = check_positive_finite(beta, "beta")
    t = as_float64(t)
    x = torch.where(t > 0.0, beta / t, torch.full_like(t, math.inf))
    return torch.special.gammainc(torch.full_like(x, alpha), x)


def power_law_decay(t: torch.Tensor | float, alpha: float, beta: float) -> torch.Tensor:
    """Mean decay ``E[exp(-t/T)]`` of units with ``T ~ InverseGamma(alpha, beta)``.

    Equals ``(1 + t/beta) ** -alpha`` (the Laplace transform of the gamma
    distribution of ``1/T``): a power law in the delay ``t`` (tokens), the
    paper's motivation (Sec. 3.1). Check values for ``alpha=0.56, beta=1``:
    ``t=1 -> 0.6783``, ``t=10 -> 0.2611``, ``t=100 -> 0.0754``.

    Returns:
        float64 tensor with the shape of ``t``.
    """
    alpha = check_positive_finite(alpha, "alpha")
    beta = check_positive_finite(beta, "beta")
    t = as_float64(t)
    return torch.exp(-alpha * torch.log1p(t / beta))
