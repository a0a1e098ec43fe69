"""`make demo`: a local node with tiny-random weights, one paragraph through the LiveKit plugin.

Starts `orpheus-server --model tiny-random --snac random` on a free loopback port,
streams a multi-sentence paragraph through `orpheus.TTS().stream()` exactly as an
agent would, writes the audio to a WAV file and prints TTFA, audio seconds, RTF and
tokens/s. The weights are random: the WAV is noise, by design.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import wave
from pathlib import Path

from livekit.agents.metrics import TTSMetrics
from livekit.plugins import orpheus

from inference_server.local_server import ServerProcess

PARAGRAPH = (
    "Once upon a time, in a village by the sea, there lived a girl who collected shells. "
    "Every morning she walked the shore before sunrise. <sigh> The tide was kind to her. "
    "One day she found a shell that hummed a song when she held it to her ear. "
    "She laughed, <laugh> and the shell laughed back."
)


async def synthesize(address: str, text: str, out: Path, voice: str) -> dict[str, float]:
    tts = orpheus.TTS(base_url=address, voice=voice, max_tokens=140)
    segments: list[TTSMetrics] = []
    tts.on("metrics_collected", segments.append)
    pcm = bytearray()
    stream = tts.stream()
    started = time.perf_counter()
    first_audio = None
    stream.push_text(text)
    stream.end_input()
    async for event in stream:
        if first_audio is None and event.frame.samples_per_channel:
            first_audio = time.perf_counter()
        pcm += bytes(event.frame.data)
    wall = time.perf_counter() - started
    await stream.aclose()
    await tts.aclose()
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(orpheus.tts.SAMPLE_RATE)
        wav.writeframes(bytes(pcm))
    audio_s = len(pcm) / 2 / orpheus.tts.SAMPLE_RATE
    tokens = sum(getattr(m.metadata, "tokens_generated", 0) for m in segments)
    return {
        "ttfa_ms": 1000 * ((first_audio or started) - started),
        "audio_s": audio_s,
        "wall_s": wall,
        "rtf": wall / audio_s if audio_s else float("inf"),
        "tokens": tokens,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "head_silence_trimmed_ms": sum(
            getattr(m.metadata, "head_silence_trimmed_ms", 0.0) for m in segments
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out/demo.wav"))
    parser.add_argument("--voice", default="tara")
    parser.add_argument("--text", default=PARAGRAPH)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print("Starting a local orpheus-server (tiny-random + random SNAC: the audio is NOISE) ...")
    log = Path(tempfile.mkdtemp(prefix="orpheus-demo-")) / "server.log"
    server = ServerProcess(log).start()
    try:
        figures = asyncio.run(synthesize(server.address, args.text, args.out, args.voice))
    finally:
        server.stop()
    print(f"wrote {args.out} ({figures['audio_s']:.2f} s of 24 kHz mono PCM; server log: {log})")
    print(
        f"TTFA {figures['ttfa_ms']:.0f} ms | audio {figures['audio_s']:.2f} s | "
        f"RTF {figures['rtf']:.2f} | {figures['tokens']} tokens, "
        f"{figures['tokens_per_s']:.0f} tokens/s | "
        f"head silence trimmed {figures['head_silence_trimmed_ms']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
