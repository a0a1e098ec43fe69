"""The sampler's nucleus and draw: the same set as top-p by sorting, seeded draws repeat,
and draws follow the nucleus's distribution (the sampler itself, no model)."""

from __future__ import annotations

import torch

from inference_server.engine.base import SamplingConfig
from inference_server.engine.sampling import (
    RowSampler,
    _inverse_cdf,
    _nucleus_probs,
    legal_starts,
    sample_legal_tokens,
)
from inference_server.orpheus import tokens as T


def _sorted_nucleus(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Top-p as usually written: sort, keep while the mass before a value is below top_p."""
    probs = torch.softmax(scores / temperature, dim=-1)
    ordered, order = torch.sort(probs, dim=-1, descending=True)
    drop = torch.cumsum(ordered, dim=-1) - ordered >= top_p
    return probs.scatter(1, order, ordered.masked_fill(drop, 0.0))


def test_nucleus_keeps_the_same_values_as_sorting() -> None:
    generator = torch.Generator().manual_seed(3)
    for temperature, top_p, spread in [(0.6, 0.8, 3.0), (1.0, 0.95, 1.0), (0.3, 0.5, 8.0)]:
        rows = [RowSampler(SamplingConfig(temperature=temperature, top_p=top_p))] * 6
        scores = spread * torch.randn(6, T.CODEBOOK_SIZE + 1, generator=generator)
        got = _nucleus_probs(scores.clone(), rows)
        expected = _sorted_nucleus(scores, temperature, top_p)
        assert torch.equal(got > 0, expected > 0)
        torch.testing.assert_close(got, expected)


def test_top_p_one_keeps_everything_and_a_peak_keeps_one() -> None:
    scores = torch.randn(2, T.CODEBOOK_SIZE + 1)
    everything = _nucleus_probs(scores.clone(), [RowSampler(SamplingConfig(top_p=1.0))] * 2)
    assert bool((everything > 0).all())
    peaked = torch.zeros(1, T.CODEBOOK_SIZE + 1)
    peaked[0, 17] = 50.0
    only = _nucleus_probs(peaked, [RowSampler(SamplingConfig(top_p=0.5))])
    assert (only[0] > 0).nonzero().flatten().tolist() == [17]


def test_draws_fall_in_the_nucleus_with_its_frequencies() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.0, 0.2]]).repeat(20_000, 1)
    picks = _inverse_cdf(probs, torch.rand(20_000, generator=torch.Generator().manual_seed(1)))
    counts = torch.bincount(picks, minlength=5).float() / 20_000
    assert counts[1] == 0 and counts[3] == 0
    torch.testing.assert_close(counts, probs[0], atol=0.015, rtol=0)


def test_seeded_rows_repeat_their_tokens_and_unseeded_rows_differ() -> None:
    def tokens(seed: int | None) -> list[int]:
        sampler = RowSampler(SamplingConfig(seed=seed))
        scores = torch.randn(40, T.CODEBOOK_SIZE + 1, generator=torch.Generator().manual_seed(0))
        return [
            sample_legal_tokens(scores[i : i + 1].clone(), [sampler], legal_starts([sampler]))[0]
            for i in range(40)
        ]

    assert tokens(7) == tokens(7)
    assert tokens(7) != tokens(8)
    assert tokens(None) != tokens(None)
