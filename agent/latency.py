"""Per-turn latency timeline, built from the AgentSession's own events and metrics.

For each agent turn the timeline is, in ms after the anchor (the user's speech end, or
the reply's creation when no one spoke: greeting, typed input):

    user_speech_end -> eot_decision -> llm_first_token -> tts_text_sent
        -> tts_first_audio (first PCM from the server) -> first_audio (first frame played)

`tts_text_sent` is when the plugin's sentence gate released text to the server, so
`tts_first_audio - tts_text_sent` is the server's time to first audio. Preemptive
generation can start the LLM before the end-of-turn decision: then `llm_first_token`
is smaller than `eot_decision`.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.metrics import EOUMetrics, LLMMetrics, TTSMetrics
from livekit.agents.voice import (
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    MetricsCollectedEvent,
    SpeechCreatedEvent,
)
from livekit.agents.voice.speech_handle import SpeechHandle

logger = logging.getLogger("orpheus-agent.latency")

FIRST_AUDIO_BUDGET_S = 1.5


@dataclass
class TurnTimes:
    """Absolute wall-clock times (time.time()) of one agent turn's milestones."""

    speech_id: str
    created_at: float
    user_speech_end: float | None = None
    eot_decision: float | None = None
    llm_first_token: float | None = None
    tts_text_sent: float | None = None
    tts_first_audio: float | None = None
    first_audio: float | None = None
    interrupted: bool = False


@dataclass
class TurnLatency:
    """One turn's timeline in ms after its anchor; None where the stage did not happen."""

    turn: int
    speech_id: str
    trigger: str  # "user_speech" (VAD/STT turn), "reply" (generate_reply, typed input), "say"
    user_speech_end_ms: float | None
    eot_decision_ms: float | None
    llm_first_token_ms: float | None
    tts_text_sent_ms: float | None
    tts_first_audio_ms: float | None
    first_audio_ms: float | None
    budget_ms: float
    within_budget: bool | None
    interrupted: bool
    event: str = field(default="agent_turn_latency")

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def timeline(turn: int, t: TurnTimes, *, trigger: str, budget_s: float) -> TurnLatency:
    """Turn absolute milestones into ms offsets from the turn's anchor."""
    anchor = t.user_speech_end if t.user_speech_end is not None else t.created_at

    def ms(at: float | None) -> float | None:
        return None if at is None else round((at - anchor) * 1000.0, 1)

    first_audio_ms = ms(t.first_audio)
    return TurnLatency(
        turn=turn,
        speech_id=t.speech_id,
        trigger=trigger,
        user_speech_end_ms=ms(t.user_speech_end),
        eot_decision_ms=ms(t.eot_decision),
        llm_first_token_ms=ms(t.llm_first_token),
        tts_text_sent_ms=ms(t.tts_text_sent),
        tts_first_audio_ms=ms(t.tts_first_audio),
        first_audio_ms=first_audio_ms,
        budget_ms=budget_s * 1000.0,
        within_budget=None if first_audio_ms is None else first_audio_ms <= budget_s * 1000.0,
        interrupted=t.interrupted,
    )


class TurnLatencyTracker:
    """Listens to an AgentSession; logs one JSON line per finished agent turn.

    Attach before `session.start()`. `summary()` (also logged by `log_summary()`)
    aggregates the turns seen so far.
    """

    def __init__(
        self,
        *,
        budget_s: float = FIRST_AUDIO_BUDGET_S,
        log: logging.Logger = logger,
    ) -> None:
        self._budget_s = budget_s
        self._log = log
        self._session: AgentSession | None = None
        self._open: dict[str, TurnTimes] = {}
        self._awaiting_user_message: TurnTimes | None = None
        self._triggers: dict[str, str] = {}
        self.turns: list[TurnLatency] = []

    def attach(self, session: AgentSession) -> None:
        self._session = session
        session.on("speech_created", self._on_speech_created)
        session.on("metrics_collected", self._on_metrics)
        session.on("agent_state_changed", self._on_agent_state)
        session.on("conversation_item_added", self._on_item_added)
        session.on("close", lambda _: self.log_summary())

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        handle = ev.speech_handle
        self._open[handle.id] = TurnTimes(speech_id=handle.id, created_at=ev.created_at)
        # an EOU metric for this speech upgrades "reply" to "user_speech"
        self._triggers[handle.id] = "say" if ev.source == "say" else "reply"
        handle.add_done_callback(self._on_speech_done)

    def _on_item_added(self, ev: ConversationItemAddedEvent) -> None:
        # the user message (with the exact speech end) is added just after its EOU metrics
        item, t = ev.item, self._awaiting_user_message
        if not (isinstance(item, llm.ChatMessage) and item.role == "user") or t is None:
            return
        self._awaiting_user_message = None
        stopped = (item.metrics or {}).get("stopped_speaking_at")
        if stopped is not None and t.eot_decision is not None and t.user_speech_end is not None:
            t.eot_decision = stopped + (t.eot_decision - t.user_speech_end)
            t.user_speech_end = stopped

    def _on_metrics(self, ev: MetricsCollectedEvent) -> None:
        m = ev.metrics
        t = self._open.get(getattr(m, "speech_id", None) or "")
        if t is None:
            return
        if isinstance(m, EOUMetrics):
            # emitted after on_user_turn_completed ran, which followed the decision
            t.eot_decision = m.timestamp - m.on_user_turn_completed_delay
            t.user_speech_end = t.eot_decision - m.end_of_utterance_delay
            self._awaiting_user_message = t
            self._triggers[t.speech_id] = "user_speech"
        elif isinstance(m, LLMMetrics) and m.ttft >= 0 and t.llm_first_token is None:
            t.llm_first_token = m.timestamp - m.duration + m.ttft
        elif isinstance(m, TTSMetrics) and m.ttfb >= 0 and t.tts_text_sent is None:
            t.tts_text_sent = m.timestamp - m.duration
            t.tts_first_audio = t.tts_text_sent + m.ttfb

    def _on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if ev.new_state != "speaking" or self._session is None:
            return
        speech = self._session.current_speech
        if speech is not None and (t := self._open.get(speech.id)) and t.first_audio is None:
            t.first_audio = ev.created_at or time.time()

    def _on_speech_done(self, handle: SpeechHandle) -> None:
        t = self._open.pop(handle.id, None)
        if t is None:
            return
        t.interrupted = handle.interrupted
        trigger = self._triggers.pop(handle.id, "reply")
        record = timeline(len(self.turns) + 1, t, trigger=trigger, budget_s=self._budget_s)
        self.turns.append(record)
        self._log.info(record.to_json(), extra={"turn_latency": asdict(record)})

    def summary(self) -> dict[str, Any]:
        """Counts, budget hit rate and median/max of each stage over the turns seen."""
        out: dict[str, Any] = {
            "event": "agent_latency_summary",
            "turns": len(self.turns),
            "interrupted": sum(t.interrupted for t in self.turns),
            "budget_ms": self._budget_s * 1000.0,
        }
        judged = [t.within_budget for t in self.turns if t.within_budget is not None]
        out["within_budget"] = sum(judged)
        out["within_budget_rate"] = round(sum(judged) / len(judged), 3) if judged else None
        for stage in (
            "eot_decision_ms",
            "llm_first_token_ms",
            "tts_text_sent_ms",
            "tts_first_audio_ms",
            "first_audio_ms",
        ):
            values = [v for t in self.turns if (v := getattr(t, stage)) is not None]
            out[stage] = (
                {"p50": round(statistics.median(values), 1), "max": max(values)} if values else None
            )
        return out

    def log_summary(self) -> dict[str, Any]:
        summary = self.summary()
        self._log.info(json.dumps(summary, separators=(",", ":")), extra={"summary": summary})
        return summary
