"""Real 24 kHz SNAC (random weights): streamed decode vs full decode, batching, the batcher."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from inference_server.audio.listener import Clock, DecodeClass, Listener
from inference_server.codec.decode_batcher import SnacDecodeBatcher
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import encode_audio, load_snac
from inference_server.codec.stream_decoder import DecodeWindow, SnacStreamDecoder

SPF = 2048
ERROR_BOUND = 1e-4  # relative RMS budget; measured ~2e-5 (default) .. 6e-5 (1 frame/window)


@pytest.fixture(scope="module")
def decoder() -> SnacDecoder:
    return SnacDecoder(load_snac("random", seed=0))


def random_frames(n: int, seed: int) -> np.ndarray:
    seq = np.random.default_rng(seed).integers(0, 4096, (n, 7), dtype=np.int64)
    seq[1], seq[-2] = 0, 4095  # the code range edges are valid codes
    return seq


def rel_rms(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - ref) ** 2)) / np.sqrt(np.mean(ref**2)))


def stream(seq: np.ndarray, dec: SnacStreamDecoder) -> list[DecodeWindow]:
    windows = [w for frame in seq for w in dec.push(frame)]
    return windows + dec.finish()


def test_load_snac_random_is_the_24khz_architecture_and_deterministic() -> None:
    a, b = load_snac("random", seed=3), load_snac("random", seed=3)
    assert a.sampling_rate == 24000 and int(a.hop_length) == 512
    assert sum(p.numel() for p in a.parameters()) > 19_000_000
    assert not a.training
    codes = [torch.zeros(1, k, dtype=torch.long) for k in (1, 2, 4)]
    with torch.inference_mode():
        assert torch.equal(a.decode(codes), a.decode(codes))  # noise disabled
        assert torch.equal(a.decode(codes), b.decode(codes))  # seeded


def test_load_snac_rejects_unknown_spec(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--snac 'hubuser/snac_24khz'"):
        load_snac("hubuser/snac_24khz")
    with pytest.raises(FileNotFoundError, match=r"pytorch_model\.bin"):
        load_snac(str(tmp_path))


def test_load_snac_reads_a_local_checkpoint(tmp_path, decoder: SnacDecoder) -> None:
    import json

    from snac import SNAC

    from inference_server.codec.snac_model import SNAC_24KHZ_CONFIG

    torch.manual_seed(5)
    original = SNAC(**SNAC_24KHZ_CONFIG)
    (tmp_path / "config.json").write_text(json.dumps(SNAC_24KHZ_CONFIG))
    torch.save(original.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = SnacDecoder(load_snac(str(tmp_path)))
    seq = random_frames(3, seed=9)
    np.testing.assert_allclose(
        loaded.decode_frames(seq),
        SnacDecoder(load_snac("random", seed=5)).decode_frames(seq),
        atol=1e-6,
    )


def test_encode_audio_returns_frames(decoder: SnacDecoder) -> None:
    audio = 0.1 * np.sin(np.arange(SPF * 4) * 2 * np.pi * 220 / 24000).astype(np.float32)
    frames = encode_audio(decoder.model, audio)
    assert frames.shape == (4, 7) and frames.dtype == np.int64
    assert frames.min() >= 0 and frames.max() < 4096
    with pytest.raises(ValueError, match="mono"):
        encode_audio(decoder.model, np.zeros((2, 100), dtype=np.float32))


def test_streamed_24_frames_match_full_decode(decoder: SnacDecoder) -> None:
    seq = random_frames(24, seed=1)
    full = decoder.decode_frames(seq)
    windows = stream(seq, SnacStreamDecoder(listener=listening(1_000.0)))  # held into big windows
    streamed = np.concatenate(decoder.decode_windows(windows))
    assert streamed.dtype == np.float32
    assert len(streamed) == SPF * 24 == len(full)
    assert rel_rms(streamed, full) <= ERROR_BOUND
    # The sequence edges are decoded exactly like the full decode sees them (zero padding).
    half = SPF // 2
    assert np.abs(streamed[:half] - full[:half]).max() < 1e-5
    assert np.abs(streamed[-half:] - full[-half:]).max() < 1e-5


def test_one_frame_per_window_is_within_bound(decoder: SnacDecoder) -> None:
    seq = random_frames(12, seed=2)
    windows = stream(seq, SnacStreamDecoder(min_lead_ms=0))
    assert [w.emitted_frames for w in windows][:-1] == [1] * 10  # finish() flushes 2 at once
    streamed = np.concatenate(decoder.decode_windows(windows))
    assert rel_rms(streamed, decoder.decode_frames(seq)) <= ERROR_BOUND


def test_batched_windows_equal_windows_decoded_alone(decoder: SnacDecoder) -> None:
    windows = []
    for seed in range(3):  # three streams, same window length, plus one other length
        seq = random_frames(8, seed=10 + seed)
        windows.append(DecodeWindow(seq[:6], 3 * SPF, 4 * SPF, 3))
    windows.append(DecodeWindow(random_frames(4, seed=20), 0, 2 * SPF, 0))
    batched = decoder.decode_windows(windows)
    for window, pcm in zip(windows, batched, strict=True):
        (alone,) = decoder.decode_windows([window])
        assert pcm.shape == (window.keep_end - window.keep_start,)
        np.testing.assert_allclose(pcm, alone, atol=1e-5)


async def test_batcher_decodes_concurrent_windows_in_one_call(decoder: SnacDecoder) -> None:
    windows = [DecodeWindow(random_frames(5, seed=s), SPF, 3 * SPF, 1) for s in range(4)]
    expected = decoder.decode_windows(windows)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1

    async with SnacDecodeBatcher(decoder) as batcher:
        tick_task = asyncio.create_task(ticker())
        results = await asyncio.gather(*(batcher.decode(w, listening(5_000.0)) for w in windows))
        tick_task.cancel()
        assert (batcher.batches, batcher.windows) == (1, 4)
        assert ticks > 0  # the loop kept running while the batch decoded on the worker thread
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
        # a stream awaiting its windows in order gets them in order
        seq = random_frames(6, seed=30)
        dec = SnacStreamDecoder()
        windows = stream(seq, dec)
        pcm = [await batcher.decode(w, listening(5_000.0)) for w in windows]
        assert batcher.batches == 1 + len(windows)
        assert rel_rms(np.concatenate(pcm), decoder.decode_frames(seq)) <= ERROR_BOUND


def listening(buffer_ms: float | None, sent_ms: float = 10_000.0) -> Listener:
    """A stream's listener on a stopped clock: None = before its first audio; else with
    `buffer_ms` buffered of `sent_ms` sent."""
    now = [0.0]
    listener = Listener(Clock(now=lambda: now[0]))
    if buffer_ms is not None:
        listener.sent(sent_ms)
        now[0] = (sent_ms - buffer_ms) / 1000.0
    return listener


async def test_batcher_close_fails_pending_decodes(decoder: SnacDecoder) -> None:
    batcher = SnacDecodeBatcher(decoder)
    pending = asyncio.create_task(
        batcher.decode(DecodeWindow(random_frames(3, 40), 0, SPF, 0), listening(None))
    )
    await asyncio.sleep(0)
    await batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pending


@pytest.mark.parametrize(
    "new_listener",
    [listening(None), listening(300.0, sent_ms=300.0)],
    ids=["first audio", "start-up window"],
)
async def test_new_stream_window_does_not_wait_behind_bulk_batches(
    decoder: SnacDecoder, new_listener: Listener
) -> None:
    bulk_windows = [DecodeWindow(random_frames(21, seed=s), 3 * SPF, 19 * SPF, 3) for s in (1, 2)]
    new = DecodeWindow(random_frames(5, seed=3), 0, 3 * SPF, 0)
    finished: list[str] = []

    async def decode(name: str, window: DecodeWindow, listener: Listener) -> None:
        await batcher.decode(window, listener)
        finished.append(name)

    async with SnacDecodeBatcher(decoder, max_batch_frames=21) as batcher:
        bulk = [
            asyncio.create_task(decode(f"bulk{i}", w, listening(50.0)))
            for i, w in enumerate(bulk_windows)
        ]
        await asyncio.sleep(0.02)  # both bulk calls are decoding
        assert new_listener.decode_class() is not DecodeClass.BULK
        await decode("new", new, new_listener)
        await asyncio.gather(*bulk)
    assert finished[0] == "new"


async def test_bulk_decode_yields_to_a_first_audio_race(decoder: SnacDecoder) -> None:
    window = DecodeWindow(random_frames(6, seed=4), 3 * SPF, 4 * SPF, 3)
    # held for as long as the race lasts, however slow this machine is: then bounded
    async with SnacDecodeBatcher(decoder, max_bulk_hold_s=3600.0) as batcher:
        with batcher.first_audio_race():
            pending = asyncio.create_task(batcher.decode(window, listening(5_000.0)))
            await asyncio.sleep(0.1)
            assert not pending.done() and batcher.batches == 0  # held while the race runs
            # A stream close to underrun is not held: it decodes during the race.
            await asyncio.wait_for(batcher.decode(window, listening(100.0)), timeout=10)
            assert not pending.done()
        await pending  # released when the race ends
        assert batcher.batches == 2
        batcher.max_bulk_hold_s = 0.25
        with batcher.first_audio_race():  # a race that never ends holds bulk only so long
            await asyncio.wait_for(batcher.decode(window, listening(5_000.0)), timeout=10)
        assert batcher.batches == 3


class RecordingDecoder(SnacDecoder):
    """The real decoder, recording the window sizes of each call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.calls: list[list[int]] = []

    def decode_windows(self, windows: list[DecodeWindow]) -> list[np.ndarray]:
        self.calls.append([w.num_frames for w in windows])
        return super().decode_windows(windows)


async def test_a_call_never_mixes_window_shapes(decoder: SnacDecoder) -> None:
    """Mixed shapes would decode one after another inside one call: the small window
    would wait for the big one. Same-shape windows still share a call."""
    recording = RecordingDecoder(decoder.model)
    small = [DecodeWindow(random_frames(8, seed=s), 3 * SPF, 6 * SPF, 3) for s in (1, 2)]
    big = DecodeWindow(random_frames(17, seed=3), 3 * SPF, 15 * SPF, 3)
    async with SnacDecodeBatcher(recording, workers=1, express_worker=False) as batcher:
        await asyncio.gather(
            batcher.decode(small[0], listening(2000.0)),
            batcher.decode(big, listening(1000.0)),  # the most urgent: decodes first
            batcher.decode(small[1], listening(3000.0)),
        )
    assert recording.calls == [[17], [8, 8]]
