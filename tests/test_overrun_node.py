"""A real node serving a model that never ends its speech: every chunk is stopped at its
text's overrun limit and reported, chunks stopped by a client's max_tokens are counted
apart, and the sessions beside it finish intact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from transformers import LlamaForCausalLM

from inference_server.engine.base import SamplingConfig
from inference_server.engine.model_loading import tiny_random_config, write_tokenizer
from inference_server.orpheus import tokens as T
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc
from inference_server.session.overrun import chunk_budget
from tests.support_server import ServerProcess

TEXT = "Hello there, this is a test."
ENDLESS = pb.SamplingOptions(temperature=0.0, repetition_penalty=1.0)


def write_never_stopping_model(directory: Path) -> Path:
    """tiny-random with the stop token's logit always 0: random weights always give some
    audio code a higher score, so greedy decoding never ends a chunk by itself."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_random_config())
    with torch.no_grad():
        model.get_output_embeddings().weight[T.END_OF_SPEECH] = 0.0
    model.save_pretrained(directory)
    write_tokenizer(directory, model_max_length=8192)
    return directory


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    model = write_never_stopping_model(tmp_path_factory.mktemp("never-stopping"))
    proc = ServerProcess(
        tmp_path_factory.mktemp("node") / "node.log",
        extra_args=("--model", str(model), "--model-name", "tiny-random", "--max-audio-ahead", "0"),
    )
    yield proc.start()
    proc.stop()


async def speak(address: str, session_id: str, sampling: pb.SamplingOptions) -> pb.SegmentMetrics:
    async def requests():
        yield pb.SynthesizeRequest(
            start=pb.SessionStart(session_id=session_id, voice="tara", sampling=sampling)
        )
        yield pb.SynthesizeRequest(text=pb.TextChunk(text=TEXT))
        yield pb.SynthesizeRequest(end_input=pb.EndInput())

    async with grpc.aio.insecure_channel(address) as channel:
        responses = [r async for r in pb_grpc.TTSStub(channel).Synthesize(requests(), timeout=120)]
    audio = sum(len(r.audio.pcm) for r in responses if r.WhichOneof("kind") == "audio")
    metrics = responses[-1].segment_done.metrics
    assert metrics.audio_ms == pytest.approx(audio / 2 / T.SAMPLE_RATE * 1000, abs=0.1)
    return metrics


async def test_chunks_are_stopped_at_their_limit_and_counted_by_cause(node: ServerProcess) -> None:
    endless, capped, sampled = await asyncio.gather(
        speak(node.address, "endless", ENDLESS),
        speak(node.address, "capped", pb.SamplingOptions(temperature=0.0, max_tokens=70)),
        speak(node.address, "sampled", pb.SamplingOptions(seed=7)),
    )
    budget, _ = chunk_budget(TEXT, "en", 2.0, SamplingConfig())  # the node's default factor
    assert (endless.chunks_overrun, endless.chunks_budget_capped) == (1, 0)
    assert endless.tokens_generated == budget < SamplingConfig().max_tokens / 2
    assert (capped.chunks_overrun, capped.chunks_budget_capped) == (0, 1)
    assert capped.tokens_generated == 70
    # sampling can pick the stop (its logit is 0, not -inf): whichever way it ended, it ended
    # within the text's limit, and it was counted as exactly that
    assert sampled.tokens_generated <= budget
    stopped = sampled.tokens_generated == budget
    assert (sampled.chunks_overrun, sampled.chunks_budget_capped) == (int(stopped), 0)
    counted = node.metrics()
    assert counted['orpheus_chunks_stopped_total{reason="overrun"}'] >= 1 + int(stopped)
    assert counted['orpheus_chunks_stopped_total{reason="max_tokens"}'] == 1
