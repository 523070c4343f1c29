"""The built-in analyses of a report run, one module each (registered in :mod:`..registry`, in
the order they run): ``run(context)`` returns the analysis's section of ``report.json`` and its
figures, ``estimated_seconds(context)`` its rough cost (:class:`..context.AnalysisContext`).

- :mod:`.timescales`: estimated timescales, fitted distributions (:mod:`..timescales`);
- :mod:`.ablation`: routing of one layer's unit chunks by frequency bin and word class (:mod:`..ablation`);
- :mod:`.state_gradients`: state-gradient memory vs delay (:mod:`..state_gradients`);
- :mod:`.weighted_sum`: weighted-sum norms of one passage (:mod:`..memory_span`);
- :mod:`.memory_span`: weighted-sum mass vs distance (:mod:`..memory_span`);
- :mod:`.mutual_information`: ``I(d)`` of the split, its fit, the model's decay (:mod:`..mutual_information`).
"""
