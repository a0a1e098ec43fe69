"""Prometheus series of one node, on its own registry (several nodes can share a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_MS_BUCKETS = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.live_sessions = Gauge(
            "orpheus_live_sessions", "Sessions open on this node", registry=r
        )
        self.engine_live_requests = Gauge(
            "orpheus_engine_live_requests", "Generation requests queued or running", registry=r
        )
        self.engine_queue_depth = Gauge(
            "orpheus_engine_queue_depth", "Requests waiting for prefill", registry=r
        )
        self.ttfa_ms = Histogram(
            "orpheus_ttfa_ms", "Segment time to first audio (ms)", buckets=_MS_BUCKETS, registry=r
        )
        self.head_silence_trimmed_ms = Histogram(
            "orpheus_head_silence_trimmed_ms",
            "Leading silence trimmed per segment (ms)",
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.chunks_stopped = Counter(
            "orpheus_chunks_stopped",
            "Text chunks the model did not end: overrun (looping, or past the text's "
            "overrun limit) or max_tokens (the client's cap)",
            ["reason"],
            registry=r,
        )
        self.gap_silence_trimmed_ms = Counter(
            "orpheus_gap_silence_trimmed_ms",
            "Head silence cut from segments' later chunks down to --chunk-gap-ms (ms)",
            registry=r,
        )
        self.tokens = Counter("orpheus_tokens_generated", "Audio tokens generated", registry=r)
        self.audio_seconds = Counter("orpheus_audio_seconds", "Audio seconds sent", registry=r)
        self.segments = Counter("orpheus_segments", "Segments completed", registry=r)
        self.sessions = Counter(
            "orpheus_sessions", "Sessions ended, by status code", ["code"], registry=r
        )
        self.proxy_hops = Counter(
            "orpheus_proxy_hops", "Sessions forwarded to their owner node", registry=r
        )

    def watch_lora_cache(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Expose the engine's LoRA cache hit/miss counts (read at scrape time)."""
        self.registry.register(_LoraCacheCollector(read))

    def watch_streams(self, read: Callable[[], object]) -> None:
        """Expose how many streams play and starve (service/admission.py's StreamLoad)."""
        playing = Gauge(
            "orpheus_streams_playing", "Sessions past their first audio", registry=self.registry
        )
        starving = Gauge(
            "orpheus_streams_starving",
            "Playing sessions whose listener has waited for audio longer than "
            "--admit-starving-ms (the stream fell behind real time)",
            registry=self.registry,
        )
        playing.set_function(lambda: read().playing)
        starving.set_function(lambda: read().starving)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose /metrics over HTTP on `port`."""
        start_http_server(port, addr=host, registry=self.registry)


class _LoraCacheCollector(Collector):
    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "orpheus_lora_cache", "LoRA adapter cache lookups", labels=["result"]
        )
        stats = self._read()
        for label, key in (("hit", "hits"), ("miss", "misses")):
            family.add_metric([label], stats.get(key, 0))
        yield family
