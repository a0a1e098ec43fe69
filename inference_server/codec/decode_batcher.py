"""Cross-session batching of decode windows on one worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .snac_decoder import SnacDecoder
from .stream_decoder import DecodeWindow

URGENT_SLACK_MS = 250.0  # a stream with less buffered audio than this decodes first


@dataclass(slots=True)
class _Job:
    window: DecodeWindow
    future: asyncio.Future[np.ndarray]
    slack_ms: float


class SnacDecodeBatcher:
    """`await decode(window)` from any session; windows queued together decode in one call.

    Windows submitted while the worker is idle are collected until the end of the
    current event-loop tick; windows submitted while a batch is decoding join the next
    batch, so batches grow with load. Each session awaits its own windows in order.

    Streaming-aware: each window carries its stream's slack (audio already delivered
    minus playback time; -inf before first audio). When any queued window is urgent,
    only the urgent ones decode in the next call, lowest slack first, so a new
    session's first audio and a stream close to underrun never wait behind streams
    that have seconds of audio buffered.
    """

    def __init__(
        self,
        decoder: SnacDecoder,
        *,
        max_batch_windows: int = 64,
        max_batch_frames: int = 32,
        workers: int = 2,
        threads_per_worker: int = 1,
    ) -> None:
        """`workers` calls may decode at once, each on `threads_per_worker` intra-op threads.

        Two single-threaded workers keep both cores of a small CPU busy when the engine
        idles, where one two-threaded call leaves a core waiting on every small op.
        """
        if max_batch_windows < 1:
            raise ValueError(f"max_batch_windows must be >= 1, got {max_batch_windows}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.decoder = decoder
        self.max_batch_windows = max_batch_windows
        self.max_batch_frames = max_batch_frames
        self.ms_per_frame = 0.0  # moving average of decode wall time per input frame
        self.batches = 0  # decode calls made
        self.windows = 0  # windows decoded
        self._queue: list[_Job] = []
        self._inflight: dict[int, list[_Job]] = {}
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="snac-decode",
            initializer=torch.set_num_threads,
            initargs=(threads_per_worker,),
        )
        self._workers = workers
        self._worker: list[asyncio.Task[None]] | None = None
        self._closed = False

    def start(self) -> None:
        """Start the worker task on the running loop (decode() does it lazily too)."""
        if self._closed:
            raise RuntimeError("SnacDecodeBatcher is closed")
        if self._worker is None:
            loop = asyncio.get_running_loop()
            self._worker = [
                loop.create_task(self._run(i), name=f"snac-decode-{i}")
                for i in range(self._workers)
            ]

    async def decode(self, window: DecodeWindow, slack_ms: float = 0.0) -> np.ndarray:
        """Decoded float32 samples of `window` (only the kept range)."""
        self.start()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(window, future, slack_ms))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop the workers; pending decodes fail with RuntimeError."""
        self._closed = True
        for worker in self._worker or ():
            worker.cancel()
        for worker in self._worker or ():
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        inflight = [job for jobs in self._inflight.values() for job in jobs]
        for job in [*inflight, *self._queue]:
            if not job.future.done():
                job.future.set_exception(RuntimeError("SnacDecodeBatcher closed"))
        self._queue.clear()
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> SnacDecodeBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _next_batch(self) -> list[_Job]:
        """The most urgent jobs first: first audio, then near-underrun, then everything.

        A call is capped at `max_batch_frames` so an urgent window that arrives while a
        batch decodes waits for at most one bounded call.
        """
        live = sorted((j for j in self._queue if not j.future.done()), key=lambda j: j.slack_ms)
        first_audio = [j for j in live if j.slack_ms == float("-inf")]
        urgent = [j for j in live if j.slack_ms < URGENT_SLACK_MS]
        jobs, frames = [], 0
        for job in first_audio or urgent or live:
            if jobs and (
                len(jobs) >= self.max_batch_windows
                or frames + job.window.num_frames > self.max_batch_frames
            ):
                break
            jobs.append(job)
            frames += job.window.num_frames
        taken = {id(j) for j in jobs}
        self._queue = [j for j in live if id(j) not in taken]
        return jobs

    async def _run(self, worker: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(0)  # let every submitter of this tick join the batch
            jobs = self._next_batch()
            if not self._queue:
                self._wakeup.clear()
            if not jobs:
                continue
            self._inflight[worker] = jobs  # kept on cancellation so close() fails these waiters
            windows = [job.window for job in jobs]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self.decoder.decode_windows, windows
                )
            except Exception as exc:  # a failed batch fails its waiters, never the worker
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                self._inflight.pop(worker, None)
                continue
            self._inflight.pop(worker, None)
            frames = sum(w.num_frames for w in windows)
            cost = 1000 * (time.perf_counter() - started) / frames
            self.ms_per_frame = cost if not self.batches else 0.8 * self.ms_per_frame + 0.2 * cost
            self.batches += 1
            self.windows += len(jobs)
            for job, pcm in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(pcm)
