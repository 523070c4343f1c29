"""Heat map of the LSTM-as-weighted-sum weights (Levy et al. 2018, Fig. 2 style).

``c_t = sum_j w_j^t * c~_j``: the map shows ``||w_j^t||_2`` (norm over hidden units), rows =
context word ``j``, columns = current word ``t``. The drawing lives with every other figure in
:mod:`mtlstm_hf.analysis.figures`; this module keeps the name importable from here.
"""

from __future__ import annotations

from .figures import plot_weighted_sum_heatmap

__all__ = ["plot_weighted_sum_heatmap"]
