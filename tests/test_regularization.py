"""AWD-LSTM regularisers as pure functions: DropConnect masks and word-level embedding dropout."""

import pytest
import torch
from torch.nn import functional as F

from mtlstm_hf.models.mtlstm.layers import drop_connect, embedding_dropout
from mtlstm_hf.models.mtlstm.validation import DROP_CONNECT_LEVELS, drop_connect_levels


@pytest.mark.parametrize("probability", [0.2, 0.5, 0.65])
def test_drop_connect_drops_the_requested_fraction_and_is_unbiased(probability):
    weight = torch.ones(1000, 1000)
    dropped = drop_connect(weight, probability, training=True)
    realised = round(probability * 2**16) / 2**16
    assert abs(realised - probability) <= 2**-17
    kept = dropped != 0
    # Every entry is either dropped or the weight times exactly 1 / (1 - realised p).
    assert torch.equal(dropped[kept].unique(), torch.tensor([1.0 / (1.0 - realised)]))
    # 1e6 independent Bernoulli draws: the dropped fraction is within 5 standard deviations.
    sigma = (probability * (1 - probability) / weight.numel()) ** 0.5
    assert abs((~kept).float().mean().item() - probability) < 5 * sigma
    assert abs(dropped.double().mean().item() - 1.0) < 5 * sigma / (1 - probability)


def test_drop_connect_decisions_are_independent_between_neighbours():
    """Four neighbouring entries share one 64-bit draw; their decisions must still be independent."""
    probability = 0.5
    mask = drop_connect(torch.ones(4 * 250_000), probability, training=True) != 0
    quads = mask.view(-1, 4).float()
    for first in range(4):
        for second in range(first + 1, 4):
            both_kept = (quads[:, first] * quads[:, second]).mean().item()
            assert abs(both_kept - 0.25) < 5 * (0.25 * 0.75 / quads.shape[0]) ** 0.5
    # Each of the 16 patterns of a quad is equally likely (chi-square, 15 dof, p ~ 1e-6 cut-off).
    patterns = (quads * torch.tensor([1.0, 2.0, 4.0, 8.0])).sum(1).long()
    counts = torch.bincount(patterns, minlength=16).double()
    expected = quads.shape[0] / 16
    assert ((counts - expected) ** 2 / expected).sum().item() < 50.0


def test_drop_connect_follows_the_torch_seed_and_handles_any_shape_and_dtype():
    weight = torch.randn(7, 3, dtype=torch.bfloat16)  # 21 entries: not a multiple of 4
    torch.manual_seed(3)
    first = drop_connect(weight, 0.5, training=True)
    torch.manual_seed(3)
    assert torch.equal(first, drop_connect(weight, 0.5, training=True))
    assert first.dtype == torch.bfloat16 and first.shape == weight.shape
    kept = first != 0
    assert torch.equal(first[kept], weight[kept] * 2)
    torch.manual_seed(4)
    assert not torch.equal(
        drop_connect(torch.ones(64, 64), 0.5, training=True), drop_connect(torch.ones(64, 64), 0.5, training=True)
    )


def test_drop_connect_is_identity_in_eval_and_at_zero():
    weight = torch.randn(5, 5)
    assert drop_connect(weight, 0.5, training=False) is weight
    assert drop_connect(weight, 0.0, training=True) is weight


@pytest.mark.parametrize("probability", [-0.1, 1.0, 1e-7, 1 - 1e-7])
def test_drop_connect_levels_rejects_unrealisable_probabilities(probability):
    with pytest.raises(ValueError, match="weight_drop"):
        drop_connect_levels(probability)
    with pytest.raises(ValueError, match="weight_drop"):
        drop_connect(torch.ones(3), probability, training=True)


def test_drop_connect_levels_counts_steps_of_two_to_minus_sixteen():
    assert drop_connect_levels(0.0) == 0
    assert drop_connect_levels(0.5) == DROP_CONNECT_LEVELS // 2
    assert drop_connect_levels(0.2) == 13107
    assert drop_connect_levels(2**-16) == 1


def test_embedding_dropout_equals_masking_the_whole_matrix():
    """Oracle: AWD-LSTM's formulation, which masks rows of the (V, E) matrix before the lookup."""
    vocab, width, probability = 50, 8, 0.3
    weight = torch.randn(vocab, width, requires_grad=True)
    ids = torch.randint(0, vocab, (4, 30))
    torch.manual_seed(11)
    ours = embedding_dropout(ids, F.embedding(ids, weight), vocab, probability, training=True)
    (grad_ours,) = torch.autograd.grad((ours * torch.arange(8.0)).sum(), weight)
    torch.manual_seed(11)
    row_mask = torch.empty(vocab, 1).bernoulli_(1 - probability) / (1 - probability)
    reference = F.embedding(ids, weight * row_mask)
    (grad_reference,) = torch.autograd.grad((reference * torch.arange(8.0)).sum(), weight)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    torch.testing.assert_close(grad_ours, grad_reference, rtol=1e-6, atol=1e-6)
    # Whole words are dropped: every occurrence of a dropped word embeds to zero.
    dropped_words = (row_mask.squeeze(1) == 0).nonzero().flatten()
    occurrences = torch.isin(ids, dropped_words)
    assert occurrences.any() and (ours[occurrences] == 0).all() and (ours[~occurrences] != 0).all()


def test_embedding_dropout_is_a_plain_lookup_in_eval():
    weight = torch.randn(20, 4)
    ids = torch.randint(0, 20, (2, 5))
    assert torch.equal(
        embedding_dropout(ids, F.embedding(ids, weight), 20, 0.5, training=False), F.embedding(ids, weight)
    )
