"""The decode warm-up: every decode thread decodes one stream before a node serves."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inference_server.audio.listener import Listener
from inference_server.codec.decode_batcher import SnacDecodeBatcher
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.codec.stream_decoder import SnacStreamDecoder


class ThreadsSeen(SnacDecoder):
    """The real decoder, noting which threads ran its warm-up."""

    def __init__(self) -> None:
        super().__init__(load_snac("random", seed=0))
        self.warmed_on: list[int] = []

    def warm_up(self, max_frames: int) -> int:
        self.warmed_on.append(threading.get_ident())
        return super().warm_up(max_frames)


@pytest.mark.parametrize("incremental", [True, False])
def test_warm_up_decodes_windows_of_each_size_and_leaves_no_state(incremental: bool) -> None:
    decoder = SnacDecoder(load_snac("random", seed=0), incremental=incremental)
    assert decoder.warm_up(4) == 5  # windows of 1, 2, 3 and 4 frames, then the last 2
    frames = np.random.default_rng(3).integers(0, 4096, (12, 7))
    stream = SnacStreamDecoder(min_lead_ms=0, incremental=incremental)
    windows = [*stream.push(frames), *stream.finish()]
    streamed = np.concatenate(decoder.decode_windows(windows))
    whole = decoder.decode_frames(frames)
    rms = np.sqrt(np.mean((streamed - whole) ** 2) / np.mean(whole**2))
    assert rms < 1e-4  # a stream decoded after the warm-up is unchanged by it


async def test_every_decode_thread_warms_up_once_before_serving() -> None:
    decoder = ThreadsSeen()
    async with SnacDecodeBatcher(decoder, workers=2) as batcher:
        await batcher.warm_up(2)
        # 2 bulk threads, the first-audio thread and the start-up thread: each once.
        assert len(decoder.warmed_on) == 4
        assert len(set(decoder.warmed_on)) == 4
        assert threading.get_ident() not in decoder.warmed_on  # never the event loop
        stream = SnacStreamDecoder(min_lead_ms=0, incremental=batcher.incremental)
        windows = [*stream.push(np.zeros((6, 7), np.int64)), *stream.finish()]
        listener = Listener()
        audio = [await batcher.decode(window, listener) for window in windows]
        assert sum(len(a) for a in audio) == 6 * 2048  # the lanes serve after it


async def test_no_warm_up_frames_means_no_warm_up() -> None:
    decoder = ThreadsSeen()
    async with SnacDecodeBatcher(decoder) as batcher:
        await batcher.warm_up(0)
    assert decoder.warmed_on == []


def test_a_node_warms_its_decoder_before_it_serves(server_factory) -> None:
    server = server_factory("--warm-up-frames", "3")
    log = server.log_path.read_text()
    assert "decode warm-up: windows of 1..3 frames" in log
    assert log.index("decode warm-up") < log.index("orpheus-server listening on")
