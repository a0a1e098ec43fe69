"""The legal-slice LM head gives the full head's logits at the legal ids, and the same tokens."""

from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache

from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.legal_head import LegalSliceHead
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.sampling import RowSampler, legal_starts, sample_audio_tokens
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus import tokens as T
from inference_server.orpheus.prompt import build_prompt


def test_restricted_logits_are_the_full_logits_at_the_legal_ids() -> None:
    torch.manual_seed(0)
    full = nn.Linear(16, T.VOCAB_SIZE, bias=False)
    head = LegalSliceHead(full)
    hidden = torch.randn(5, 1, 16)
    starts = [T.position_range(p)[0] for p in (0, 3, 3, 6, 0)]
    with torch.inference_mode():
        expected = full(hidden)
        assert torch.equal(head(hidden), expected)  # outside restricted(): the full head
        with head.restricted(starts):
            got = head(hidden)
    assert got.shape == (5, 1, T.CODEBOOK_SIZE + 1)
    for row, start in enumerate(starts):
        legal = [*range(start, start + T.CODEBOOK_SIZE), T.END_OF_SPEECH]
        torch.testing.assert_close(got[row, 0], expected[row, 0, legal], atol=1e-5, rtol=1e-5)


def test_install_wraps_a_plain_head_once_and_declines_others() -> None:
    model = load_causal_lm("tiny-random")
    head = LegalSliceHead.install(model)
    assert head is not None and model.get_output_embeddings() is head
    assert LegalSliceHead.install(model) is head
    biased = nn.Module()
    biased.get_output_embeddings = lambda: nn.Linear(4, 8, bias=True)
    assert LegalSliceHead.install(biased) is None


async def test_engine_tokens_equal_a_full_head_greedy_loop() -> None:
    reference_model = load_causal_lm("tiny-random")  # never wrapped
    tokenizer = load_tokenizer("tiny-random")
    prompt = build_prompt(tokenizer, "tara", "The full head and the slice agree.")
    sampling = SamplingConfig(temperature=0.0, max_tokens=42)
    expected, sampler, cache = [], RowSampler(sampling), DynamicCache()
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        for _ in range(sampling.max_tokens):
            out = reference_model(input_ids=ids, past_key_values=cache, use_cache=True)
            token = sample_audio_tokens(out.logits[:, -1], [sampler])[0]
            expected.append(token)
            ids = torch.tensor([[token]])
    engine = TorchEngine(load_causal_lm("tiny-random"))
    assert engine._head is not None  # the engine runs the slice
    await engine.start()
    try:
        request = GenerationRequest("r", prompt, sampling, sampling.max_tokens)
        got = [tok async for chunk in engine.generate(request) for tok in chunk]
    finally:
        await engine.close()
    assert got == expected
    assert legal_starts([RowSampler(sampling)]) == [T.AUDIO_TOKEN_BASE]
