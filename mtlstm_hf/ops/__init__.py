"""Math on the model's layers that the forward pass does not need, so it stays out of the files
that travel to the Hub: the slow per-step reference loops (:mod:`.naive`, test oracles) and
the exact gates and cells of a sequence with the weighted-sum view of Levy et al. 2018
(:mod:`.gates`, used by analysis). Both are built on ``models/mtlstm/cells.py``.
"""
