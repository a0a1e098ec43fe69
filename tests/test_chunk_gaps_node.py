"""Later chunks' head silence on a real node over gRPC: cut down to --chunk-gap-ms.

Random SNAC weights never decode to silence, so the node's decoder is swapped for
`LeadingSilenceDecoder` (the real decode, with each chunk's first 600 ms scaled to
near-silence, as stock voices start) once the node has started; everything else is the
node as `orpheus-server` builds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from test_session_pipeline import SILENT_MS, LeadingSilenceDecoder

from inference_server.config import ServerConfig
from inference_server.local_server import free_port
from inference_server.orpheus.tokens import SAMPLE_RATE
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc
from inference_server.server import InferenceNode

GAP_MS = 120.0
SENTENCES = "First sentence here. Second one follows. And a third one."


@pytest.fixture
async def node() -> AsyncIterator[InferenceNode]:
    config = ServerConfig(
        port=free_port(), chunk_gap_ms=GAP_MS, max_chunk_chars=24, max_audio_ahead=0
    )
    node = InferenceNode(config)
    await node.start()
    batcher = node.service._sessions.decoder  # the seam: the node's own decode batcher
    batcher.decoder = LeadingSilenceDecoder(batcher.decoder.model)
    try:
        yield node
    finally:
        await node.stop(0)


async def test_later_chunks_start_after_the_configured_gap(node: InferenceNode) -> None:
    requests = [
        pb.SynthesizeRequest(
            start=pb.SessionStart(
                session_id="gaps",
                voice="tara",
                sampling=pb.SamplingOptions(temperature=0.0, max_tokens=140),
            )
        ),
        pb.SynthesizeRequest(text=pb.TextChunk(text=SENTENCES)),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.config.port}") as channel:
        responses = [r async for r in pb_grpc.TTSStub(channel).Synthesize(iter(requests))]
    metrics = responses[-1].segment_done.metrics
    later = metrics.text_chunks - 1
    assert later >= 2
    assert metrics.head_silence_trimmed_ms == pytest.approx(SILENT_MS, abs=20)
    assert metrics.gap_silence_trimmed_ms == pytest.approx(later * (SILENT_MS - GAP_MS), abs=40)
    chunks: dict[int, bytes] = {}
    for r in responses:
        if r.WhichOneof("kind") == "audio":
            chunks[r.audio.chunk_start] = chunks.get(r.audio.chunk_start, b"") + r.audio.pcm
    for start in sorted(chunks)[1:]:  # each later chunk starts with the gap, then speech
        loud = np.abs(np.frombuffer(chunks[start], np.int16)) > 0.01 * 32767
        assert 1000 * np.argmax(loud) / SAMPLE_RATE == pytest.approx(GAP_MS, abs=15)
    trimmed = node.metrics.registry.get_sample_value("orpheus_gap_silence_trimmed_ms_total")
    assert trimmed == pytest.approx(metrics.gap_silence_trimmed_ms)
