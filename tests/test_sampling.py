import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from core.models.sampling import NucleusSampling


def transformers_way(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    ids = torch.zeros(scores.shape[0], 1, dtype=torch.long)
    return TopPLogitsWarper(top_p)(ids, TemperatureLogitsWarper(temperature)(ids, scores))


def logits(rows: int, vocab: int, spread: float, seed: int) -> torch.Tensor:
    """Rows from peaked (a nucleus of a few tokens) to flat (a nucleus of thousands), as a language model gives."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=generator) * torch.linspace(spread, 0.3, rows)[:, None]


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("first", [256, 8])  # 8: most rows take the fallback, a full sort
def test_the_nucleus_is_the_one_transformers_keeps(top_p, first):
    scores = logits(rows=24, vocab=5000, spread=6.0, seed=int(top_p * 100) + first)
    ours = NucleusSampling(0.9, top_p, first=first)(torch.zeros(24, 1, dtype=torch.long), scores)
    theirs = transformers_way(scores, 0.9, top_p)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    kept = ~torch.isinf(theirs)
    torch.testing.assert_close(ours[kept], theirs[kept])
    sizes = kept.sum(dim=-1)
    assert sizes.min() < 8 < sizes.max()  # both paths were taken


def test_a_batch_with_one_wide_nucleus_falls_back_to_the_full_sort():
    peaked = torch.zeros(1, 1000)
    peaked[0, 7] = 20.0
    flat = torch.zeros(1, 1000)
    scores = torch.cat([peaked, flat])
    out = NucleusSampling(1.0, 0.9, first=16)(torch.zeros(2, 1, dtype=torch.long), scores)
    assert (~torch.isinf(out[0])).nonzero().flatten().tolist() == [7]
    assert (~torch.isinf(out[1])).sum() == 900  # ties: any 900 of the 1,000 equal tokens, as transformers keeps


def test_top_p_one_only_divides_by_the_temperature_and_zero_keeps_the_likeliest():
    scores = logits(rows=3, vocab=100, spread=2.0, seed=0)
    torch.testing.assert_close(NucleusSampling(0.5, 1.0)(None, scores), scores / 0.5)
    out = NucleusSampling(1.0, 0.0)(None, scores)
    assert torch.equal((~torch.isinf(out)).nonzero()[:, 1], scores.argmax(dim=-1))
    with pytest.raises(ValueError, match="temperature"):
        NucleusSampling(0.0, 0.9)
