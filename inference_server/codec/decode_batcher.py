"""Cross-session batching of decode windows on worker threads, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio.listener import DecodeClass, Listener
from .snac_decoder import SnacDecoder
from .stream_decoder import DecodeWindow

URGENT_BUFFER_MS = 250.0  # a stream with less buffered audio than this decodes first
# Bulk decode waits for sessions racing to their first audio, but never longer than this
# at a time, so established streams cannot starve behind a stream of arrivals.
MAX_BULK_HOLD_S = 0.25
_HOLD_POLL_S = 0.01  # how often a held bulk worker looks for windows turning urgent


@dataclass(slots=True)
class _Job:
    window: DecodeWindow
    future: asyncio.Future[np.ndarray]
    listener: Listener  # its buffer drains while the window waits
    decode_class: DecodeClass  # when submitted

    def urgency(self) -> tuple[bool, float]:
        """Sort key: first audio first, then the least buffered."""
        return self.decode_class is not DecodeClass.FIRST_AUDIO, self.listener.buffer_ms()


class SnacDecodeBatcher:
    """`await decode(window)` from any session; windows queued together decode in one call.

    Windows submitted while the worker is idle are collected until the end of the
    current event-loop tick; windows submitted while a batch is decoding join the next
    batch, so batches grow with load. Each session awaits its own windows in order.

    Streaming-aware: each window carries its stream's listener (audio/listener.py), read
    live while it waits, and the decode class it had when submitted. First audio goes to
    the express worker, which does nothing else, so first audio never waits behind a
    batch of established streams' windows. A stream's start-up windows (its buffer still
    thin: `DecodeClass.START_UP`) have a worker of their own too, for the same reason, so they
    never hold up first audio either. While any session races to its first audio
    (`first_audio_race()`, from its request to its first decoded window) the bulk
    workers start no call except for streams close to underrun (and hold the rest for
    at most `MAX_BULK_HOLD_S`). Among bulk windows, when any is urgent only the urgent
    ones decode in the next call, least buffered first.

    `bulk_nice` / `start_up_nice` lower those workers' OS priority. Both default to 0:
    the engine is paced now (it sleeps while every listener has enough ahead), so a
    lower priority no longer protects it from anything, while a bulk window at nice 19
    got almost no CPU whenever the engine and the event loop were busy, and arrived late
    (2 sessions over gRPC here: worst underruns 400-700 ms at 19/10, 0-153 ms at 0/0).
    """

    def __init__(
        self,
        decoder: SnacDecoder,
        *,
        max_batch_windows: int = 64,
        max_batch_frames: int = 32,
        workers: int = 2,
        threads_per_worker: int = 1,
        express_worker: bool = True,
        express_threads: int = 2,
        bulk_nice: int = 0,
        start_up_nice: int = 0,
        max_bulk_hold_s: float = MAX_BULK_HOLD_S,
    ) -> None:
        """`workers` bulk calls may decode at once, each on `threads_per_worker` threads.

        Two single-threaded workers keep both cores of a small CPU busy when the engine
        idles, where one two-threaded call leaves a core waiting on every small op. The
        express worker's one call at a time is latency, not throughput: it may use
        `express_threads` (a 5-frame first window: 44 vs 48 ms here with 2 threads).
        """
        if max_batch_windows < 1:
            raise ValueError(f"max_batch_windows must be >= 1, got {max_batch_windows}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.decoder = decoder
        self.max_batch_windows = max_batch_windows
        self.max_batch_frames = max_batch_frames
        self.max_bulk_hold_s = max_bulk_hold_s
        self.ms_per_frame = 0.0  # moving average of decode wall time per `cost_frames`
        self.batches = 0  # decode calls made
        self.windows = 0  # windows decoded
        self._bulk = _Lane(
            _executor("snac-decode", workers, threads_per_worker, bulk_nice), workers
        )
        self._express = self._start_up = None
        if express_worker:
            self._express = _Lane(_executor("snac-first-audio", 1, express_threads, 0), 1)
            self._start_up = _Lane(_executor("snac-start-up", 1, 1, start_up_nice), 1)
        self._workers = workers
        self._racing = 0  # sessions between their request and their first decoded window
        self._no_race = asyncio.Event()
        self._no_race.set()
        self._tasks: list[asyncio.Task[None]] | None = None
        self._inflight: dict[str, list[_Job]] = {}
        self._closed = False

    @property
    def incremental(self) -> bool:
        """Whether a stream's windows should carry a `CodecState` (`SnacDecoder.incremental`)."""
        return self.decoder.incremental

    def start(self) -> None:
        """Start the worker tasks on the running loop (decode() does it lazily too)."""
        if self._closed:
            raise RuntimeError("SnacDecodeBatcher is closed")
        if self._tasks is None:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._run(f"bulk-{i}", self._bulk), name=f"snac-decode-{i}")
                for i in range(self._workers)
            ]
            for name, lane in (("express", self._express), ("start-up", self._start_up)):
                if lane is not None:
                    self._tasks.append(loop.create_task(self._run(name, lane), name=f"snac-{name}"))

    @contextlib.contextmanager
    def first_audio_race(self) -> Iterator[None]:
        """Mark a session racing to its first audio: bulk and start-up decode yield meanwhile."""
        self._racing += 1
        self._no_race.clear()
        try:
            yield
        finally:
            self._racing -= 1
            if not self._racing:
                self._no_race.set()

    async def decode(self, window: DecodeWindow, listener: Listener) -> np.ndarray:
        """Decoded float32 samples of `window` (only the kept range), for `listener`'s stream.

        Its decode class picks the lane: first audio the express worker, start-up the
        start-up worker, the rest the bulk workers.
        """
        self.start()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        job = _Job(window, future, listener, listener.decode_class())
        lane = self._bulk
        if job.decode_class is DecodeClass.FIRST_AUDIO and self._express is not None:
            lane = self._express
        elif job.decode_class is DecodeClass.START_UP and self._start_up is not None:
            lane = self._start_up
        lane.queue.append(job)
        lane.wakeup.set()
        if lane is not self._bulk:  # an idle worker may help if that lane's worker is busy
            for other in (self._bulk, self._start_up):
                if other is not None:
                    other.wakeup.set()
        return await future

    async def warm_up(self, max_frames: int) -> None:
        """Every decode thread decodes one warm-up stream (`SnacDecoder.warm_up`) before
        the node serves: a shape's first decode is slow once per thread, not just once
        per process (a 2-frame window: 134 ms on a fresh thread, 67 ms after)."""
        if max_frames < 1:
            return
        loop = asyncio.get_running_loop()
        calls = []
        for lane in (self._bulk, self._express, self._start_up):
            if lane is None:
                continue
            # Each call holds its thread until all have started: one call per thread.
            started = threading.Barrier(lane.workers)

            def warm(started: threading.Barrier = started) -> None:
                self.decoder.warm_up(max_frames)
                started.wait()

            calls += [loop.run_in_executor(lane.executor, warm) for _ in range(lane.workers)]
        await asyncio.gather(*calls)

    async def close(self) -> None:
        """Stop the workers; pending decodes fail with RuntimeError."""
        self._closed = True
        for task in self._tasks or ():
            task.cancel()
        for task in self._tasks or ():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lanes = [lane for lane in (self._bulk, self._express, self._start_up) if lane]
        inflight = [job for jobs in self._inflight.values() for job in jobs]
        for job in [*inflight, *(job for lane in lanes for job in lane.queue)]:
            if not job.future.done():
                job.future.set_exception(RuntimeError("SnacDecodeBatcher closed"))
        for lane in lanes:
            lane.queue.clear()
            lane.executor.shutdown(wait=True)

    async def __aenter__(self) -> SnacDecodeBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _yield_to_races(self, lane: _Lane) -> bool:
        """Hold `lane` while sessions race to first audio; True if a window turned urgent.

        The hold ends when no session races, when a queued window's stream gets close to
        underrun (then only urgent windows decode), or after `max_bulk_hold_s`.
        """
        deadline = time.perf_counter() + self.max_bulk_hold_s
        while self._racing:
            now = time.perf_counter()
            least = min((j.listener.buffer_ms() for j in lane.queue), default=float("inf"))
            if least < URGENT_BUFFER_MS:
                return True
            if now >= deadline:
                return False
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see membership._run
                async with asyncio.timeout(min(deadline - now, _HOLD_POLL_S)):
                    await self._no_race.wait()
        return False

    def _take(self, lane: _Lane, urgent_only: bool = False) -> list[_Job]:
        """The next batch for `lane`'s worker; an idle worker helps a busy express (then
        start-up) worker."""
        jobs = self._next_batch(lane, urgent_only)
        for other in (self._express, self._start_up):
            if not jobs and other is not None and other is not lane and other.busy:
                jobs = self._next_batch(other)
        return jobs

    def _next_batch(self, lane: _Lane, urgent_only: bool = False) -> list[_Job]:
        """The most urgent jobs first: first audio, then near-underrun, then everything.

        A call takes only windows shaped like its most urgent one: they share one pass,
        while a window of another shape would decode after them in the same call (a
        3-frame window once waited 762 ms behind a 12-frame one that way). A call is capped
        at `max_batch_frames` so an urgent window that arrives while a batch decodes
        waits for at most one bounded call.
        """
        live = sorted((j for j in lane.queue if not j.future.done()), key=_Job.urgency)
        first_audio = [j for j in live if j.decode_class is DecodeClass.FIRST_AUDIO]
        urgent = [j for j in live if j.listener.buffer_ms() < URGENT_BUFFER_MS]
        jobs, frames = [], 0
        for job in first_audio or urgent or ([] if urgent_only else live):
            if jobs and (
                len(jobs) >= self.max_batch_windows
                or frames + job.window.num_frames > self.max_batch_frames
            ):
                break
            if jobs and job.window.shape != jobs[0].window.shape:
                continue  # would run after the others in the same call: left for a worker
            jobs.append(job)
            frames += job.window.num_frames
        taken = {id(j) for j in jobs}
        lane.queue = [j for j in live if id(j) not in taken]
        return jobs

    async def _run(self, name: str, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await lane.wakeup.wait()
            await asyncio.sleep(0)  # let every submitter of this tick join the batch
            urgent_only = (
                lane is not self._express and self._racing and await self._yield_to_races(lane)
            )
            jobs = self._take(lane, urgent_only)
            if not lane.queue:
                lane.wakeup.clear()
            if not jobs:
                continue
            self._inflight[name] = jobs  # kept on cancellation so close() fails these waiters
            lane.busy += 1
            windows = [job.window for job in jobs]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    lane.executor, self.decoder.decode_windows, windows
                )
            except Exception as exc:  # a failed batch fails its waiters, never the worker
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                lane.busy -= 1
                self._inflight.pop(name, None)
            self._record(windows, time.perf_counter() - started)
            for job, pcm in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(pcm)

    def _record(self, windows: list[DecodeWindow], seconds: float) -> None:
        cost = 1000 * seconds / sum(w.cost_frames for w in windows)
        self.ms_per_frame = cost if not self.batches else 0.8 * self.ms_per_frame + 0.2 * cost
        self.batches += 1
        self.windows += len(windows)


@dataclass(slots=True)
class _Lane:
    """A queue of windows and the worker threads that decode it."""

    executor: ThreadPoolExecutor
    workers: int  # the executor's threads
    queue: list[_Job] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    busy: int = 0


def _executor(name: str, workers: int, threads: int, nice: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix=name,
        initializer=_init_worker_thread,
        initargs=(threads, nice),
    )


def _init_worker_thread(threads: int, nice: int) -> None:
    torch.set_num_threads(threads)
    if nice:
        # Linux: the nice value is per thread. Raising it needs no privilege; where the
        # OS refuses, the worker just runs at normal priority.
        with contextlib.suppress(OSError, AttributeError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
