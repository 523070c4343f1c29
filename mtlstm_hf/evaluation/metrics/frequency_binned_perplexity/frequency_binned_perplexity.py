"""``evaluate`` metric: overall and per-word-frequency-bin perplexity from per-token log-probabilities.

Load it by path (works offline, ``HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1``)::

    import evaluate
    from mtlstm_hf.evaluation import frequency_binned_perplexity_metric_path
    metric = evaluate.load(frequency_binned_perplexity_metric_path())
    metric.compute(log_probs=lp, token_frequencies=freq, bin_edges=[100, 1000, 10000])

Why the arithmetic is not in this file: ``evaluate.load`` copies this script alone into its
module cache and imports the copy. Instead of restating the binning rules here (two copies
that could drift apart), ``_compute`` imports :mod:`mtlstm_hf.evaluation.frequency` *inside
the function*. The import is absolute, so it resolves against the installed ``mtlstm_hf``
wherever the copy lives, and it is indented, so evaluate's import scanner (which only reads
top-level ``import``/``from`` lines) does not treat it as a file to fetch. The metric therefore
needs ``mtlstm_hf`` importable, which holds for anyone who got its path from the package.
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{mahto2021multitimescale,
  title={Multi-timescale Representation Learning in {LSTM} Language Models},
  author={Mahto, Shivangi and Vo, Vy A. and Turek, Javier S. and Huth, Alexander G.},
  booktitle={International Conference on Learning Representations},
  year={2021}
}
"""

_DESCRIPTION = """\
Perplexity of a language model on a token stream, overall and separately for target words
grouped by their corpus frequency (default bins: >=10K, 1K-10K, 100-1K, <100 occurrences, as in
Mahto et al. 2021). Per bin k: exp(mean over tokens whose target frequency falls in bin k of
-log p). Lower edges are inclusive (a word seen exactly 10,000 times is in ">=10K").
"""

_KWARGS_DESCRIPTION = """
Args:
    log_probs (list of float): log p(target_t | context), natural log, one per scored token (<= 0).
    token_frequencies (list of int): corpus count of each target word (same length), e.g.
        token_counts(train_ids, V)[targets]. Which corpus is counted is the caller's choice
        (the paper's code counts train+valid+test; train only is the cleaner default).
        Floating-point or boolean counts are refused (ValueError), not rounded.
    bin_edges (list of int, optional): bin thresholds, default [100, 1000, 10000].
Returns:
    {"perplexity": float, "n_tokens": int, "nll_sum": float (nats),
     "bins": {label: {"perplexity": float (NaN if empty), "n_tokens": int, "nll_sum": float}}},
    bins ordered most frequent first.
Example:
    >>> metric = evaluate.load(frequency_binned_perplexity_metric_path())
    >>> metric.compute(log_probs=[-1.0, -3.0], token_frequencies=[20000, 5])["bins"]["<100"]["perplexity"]
    20.085536923187668
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FrequencyBinnedPerplexity(evaluate.Metric):
    """Per-frequency-bin perplexity; the computation is :func:`mtlstm_hf.evaluation.binned_perplexity_by_frequency`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"log_probs": datasets.Value("float64"), "token_frequencies": datasets.Value("int64")}
            ),
            # Python lists (format=None): datasets' "numpy" format would cast float64 to float32.
            reference_urls=["https://arxiv.org/abs/2009.12727"],
        )

    # datasets casts every input to the declared features before _compute sees it (int(20000.7) is
    # 20000, int(True) is 1): the inputs are checked as given, before that cast.
    def add_batch(self, *, log_probs=None, token_frequencies=None, **kwargs):
        """Check a batch as given (:func:`_check_inputs`), then add it."""
        _check_inputs(log_probs, token_frequencies)
        super().add_batch(log_probs=log_probs, token_frequencies=token_frequencies, **kwargs)

    def add(self, *, log_probs=None, token_frequencies=None, **kwargs):
        """Check one token's inputs as given (:func:`_check_inputs`), then add them."""
        _check_inputs(
            None if log_probs is None else [log_probs], None if token_frequencies is None else [token_frequencies]
        )
        super().add(log_probs=log_probs, token_frequencies=token_frequencies, **kwargs)

    def _compute(self, log_probs, token_frequencies, bin_edges=None):
        frequency = _frequency_module()
        edges = frequency.DEFAULT_BIN_EDGES if bin_edges is None else tuple(bin_edges)
        return frequency.binned_perplexity_by_frequency(log_probs, token_frequencies, edges)


def _frequency_module():
    """:mod:`mtlstm_hf.evaluation.frequency`, imported here (see the module docstring)."""
    try:
        from mtlstm_hf.evaluation import frequency
    except ImportError as err:  # the copy in evaluate's cache has no other source of the logic
        raise ImportError(
            "The frequency_binned_perplexity metric computes with the mtlstm_hf package; install it "
            "(pip install -e <repo>) or put it on PYTHONPATH."
        ) from err
    return frequency


def _check_inputs(log_probs, token_frequencies):
    """Refuse what the features' cast would silently change: counts that are not integers
    (``20000.7``, ``True``) and booleans as log-probabilities (``ValueError`` naming the input)."""
    frequency = _frequency_module()
    if token_frequencies is not None:
        frequency.as_integers(token_frequencies, "token_frequencies", "integer counts (each target's corpus count)")
    if log_probs is not None:
        frequency.check_log_probs(log_probs, "log_probs")
