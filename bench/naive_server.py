"""The baseline: a naive Orpheus server as the reference implementation streams.

Each session is generated on its own (a per-request token loop in its own thread, no
cross-session batching) and decoded with the reference's sliding window: every 7 tokens,
once 28 exist, decode the last 4 frames and keep the 2nd (it never emits the first
frame nor the last two), through SNAC's own layer code. Same model, sampling, token
budget and wire protocol as ours, so a client measures both the same way.
Benchmarks only: not a product path.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import AsyncIterator

import grpc
import numpy as np
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from transformers import DynamicCache

from inference_server.audio.pcm import float_to_pcm16
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.engine.base import SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.sampling import RowSampler, sample_audio_tokens
from inference_server.orpheus import tokens as T
from inference_server.orpheus.codes import FrameAssembler
from inference_server.orpheus.prompt import build_prompt
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc
from inference_server.session.options import DEFAULT_SESSION_OPTIONS as OPTIONS
from inference_server.session.overrun import chunk_budget

WINDOW_FRAMES = 4  # the reference decodes 28 tokens ...
KEEP_FRAME = 1  # ... and keeps the 2nd frame


class NaiveTTS(pb_grpc.TTSServicer):
    def __init__(self, model: torch.nn.Module, tokenizer: object, decoder: SnacDecoder) -> None:
        self._model, self._tokenizer, self._decoder = model, tokenizer, decoder

    async def Synthesize(
        self, request_iterator: AsyncIterator[pb.SynthesizeRequest], context: object
    ) -> AsyncIterator[pb.SynthesizeResponse]:
        start, text = None, ""
        async for request in request_iterator:
            kind = request.WhichOneof("kind")
            if kind == "start":
                start = request.start
            elif kind == "text":
                text += request.text.text
            elif kind == "end_input":
                break
        assert start is not None
        yield pb.SynthesizeResponse(started=pb.SessionStarted(session_id=start.session_id))
        sampling = SamplingConfig(max_tokens=start.sampling.max_tokens or 2800)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        emit = lambda pcm: loop.call_soon_threadsafe(queue.put_nowait, pcm)  # noqa: E731
        worker = threading.Thread(target=self._generate, args=(start.voice, text, sampling, emit))
        worker.start()
        sequence = 0
        while (pcm := await queue.get()) is not None:
            yield pb.SynthesizeResponse(audio=pb.AudioChunk(pcm=pcm, sequence=sequence))
            sequence += 1
        yield pb.SynthesizeResponse(segment_done=pb.SegmentDone(segment_id="seg-0"))

    def _generate(self, voice: str, text: str, sampling: SamplingConfig, emit: object) -> None:
        prompt = build_prompt(self._tokenizer, voice or "tara", text)
        sampler = RowSampler(sampling)
        cache = DynamicCache()
        ids = torch.tensor([prompt])
        assembler, frames, tokens = FrameAssembler(), [], 0
        with torch.inference_mode():
            budget, _ = chunk_budget(text, OPTIONS.language, OPTIONS.overrun_factor, sampling)
            while tokens < budget:
                out = self._model(input_ids=ids, past_key_values=cache, use_cache=True)
                token = sample_audio_tokens(out.logits[:, -1], [sampler])[0]
                if token == T.END_OF_SPEECH:
                    break
                tokens += 1
                ids = torch.tensor([[token]])
                frames += assembler.push([token])
                if tokens % T.FRAME_TOKENS == 0 and len(frames) >= WINDOW_FRAMES:
                    window = np.stack(frames[-WINDOW_FRAMES:])
                    audio = self._decoder.decode_frames(window)
                    keep = audio[
                        KEEP_FRAME * T.SAMPLES_PER_FRAME : (KEEP_FRAME + 1) * T.SAMPLES_PER_FRAME
                    ]
                    emit(float_to_pcm16(keep))
        emit(None)


async def serve(port: int) -> None:
    model = load_causal_lm("tiny-random")
    server = grpc.aio.server()
    pb_grpc.add_TTSServicer_to_server(
        NaiveTTS(
            model,
            load_tokenizer("tiny-random"),
            SnacDecoder(load_snac("random", fast_kernels=False)),
        ),
        server,
    )
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"naive server listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
