"""What a LiveKit developer expects of a plugin beyond the API: env fallbacks, the default
sentence tokenizer of livekit-agents, clean error messages."""

from __future__ import annotations

import pytest
from livekit.agents import tokenize
from livekit.plugins import orpheus
from test_plugin_server import MAX_TOKENS, TEXT, assert_frames_conform


async def test_base_url_falls_back_to_the_environment(
    orpheus_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORPHEUS_BASE_URL", orpheus_server.address)
    async with orpheus.TTS(max_tokens=MAX_TOKENS) as t:
        assert_frames_conform([ev async for ev in t.synthesize(TEXT)])


def test_default_sentence_tokenizer_is_livekits_blingfire() -> None:
    t = orpheus.TTS(base_url="127.0.0.1:1")
    assert isinstance(t._opts.tokenizer, tokenize.blingfire.SentenceTokenizer)
