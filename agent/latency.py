"""Per-turn latency timeline, built from the AgentSession's speeches and their chat messages.

For each agent turn the timeline is, in ms after the anchor (the user's speech end, or
the reply's creation when no one spoke: greeting, typed input):

    user_speech_end -> eot_decision -> llm_first_token -> tts_text_sent
        -> tts_first_audio (first PCM from the server) -> first_audio (first frame played)

`tts_text_sent` is when the plugin's sentence gate released text to the server, so
`tts_first_audio - tts_text_sent` is the server's time to first audio. Preemptive
generation can start the LLM before the end-of-turn decision: then `llm_first_token`
is smaller than `eot_decision`.

Sources, all non-deprecated in livekit-agents 1.8.9 (`AgentSession`'s `metrics_collected` is
deprecated there and not used):

- the user `ChatMessage.metrics` (`conversation_item_added`): `stopped_speaking_at` and
  `end_of_turn_delay` give the speech end and the decision;
- the reply's first assistant `ChatMessage.metrics` (`SpeechHandle.chat_items`):
  `started_speaking_at` is the first frame played; `llm_node_ttft` (first token) and
  `llm_node_ttfs` (first text handed to the TTS provider) count from the LLM node's start,
  `tts_node_ttfb` from that hand-over to the first audio frame;
- `speech_created.created_at` places the LLM node's start on the wall clock: the framework
  emits it in the call that creates the reply's task, and that task starts the LLM with no
  I/O in between (one or two event-loop passes, not measured, so the LLM/TTS milestones
  read early by that much).

A `say` (the greeting) has no LLM node, and 1.8.9 reports only its TTS time to first audio
(`tts_node_ttfb`), not when synthesis started: its TTS milestones are None. So are the
LLM/TTS ones of a reply that ran a tool: its spoken message may be a later LLM step's.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.voice import ConversationItemAddedEvent, SpeechCreatedEvent
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


def user_turn_times(t: TurnTimes, user: llm.MetricsReport) -> None:
    """The user's speech end and the end-of-turn decision, from the user message's metrics."""
    stopped = user.get("stopped_speaking_at")
    if stopped is None:  # the framework drops a stale VAD anchor rather than report it
        return
    t.user_speech_end = stopped
    if (delay := user.get("end_of_turn_delay")) is not None:
        t.eot_decision = stopped + delay


def reply_times(t: TurnTimes, reply: llm.MetricsReport, *, llm_started_at: float | None) -> None:
    """First frame played, and the LLM/TTS milestones placed after the LLM node's start."""
    t.first_audio = reply.get("started_speaking_at")
    if llm_started_at is None:
        return
    if (ttft := reply.get("llm_node_ttft")) is not None:
        t.llm_first_token = llm_started_at + ttft
    if (ttfs := reply.get("llm_node_ttfs")) is not None:
        t.tts_text_sent = llm_started_at + ttfs
        if (ttfb := reply.get("tts_node_ttfb")) is not None:
            t.tts_first_audio = t.tts_text_sent + ttfb


def first_reply(handle: SpeechHandle) -> llm.ChatMessage | None:
    """The speech's first assistant message: the one whose metrics describe its first audio."""
    return next(
        (m for m in handle.chat_items if isinstance(m, llm.ChatMessage) and m.role == "assistant"),
        None,
    )


@dataclass
class _OpenTurn:
    times: TurnTimes
    trigger: str  # "say", "reply", or "user_speech" once paired with its user message


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
        self._open: dict[str, _OpenTurn] = {}
        self.turns: list[TurnLatency] = []

    def attach(self, session: AgentSession) -> None:
        session.on("speech_created", self._on_speech_created)
        session.on("conversation_item_added", self._on_item_added)
        session.on("close", lambda _: self.log_summary())

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        handle = ev.speech_handle
        trigger = "say" if ev.source == "say" else "reply"
        self._open[handle.id] = _OpenTurn(TurnTimes(handle.id, ev.created_at), trigger)
        handle.add_done_callback(self._on_speech_done)

    def _on_item_added(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        # only a detected user turn ran on_user_turn_completed: typed input and skipped turns
        # carry no such delay and answer nothing here
        if not (
            isinstance(item, llm.ChatMessage)
            and item.role == "user"
            and "on_user_turn_completed_delay" in item.metrics
        ):
            return
        # the framework adds the user message from the task of the reply answering it, as soon
        # as that reply is scheduled: the newest reply not yet paired
        turn = next((o for o in reversed(self._open.values()) if o.trigger == "reply"), None)
        if turn is not None:
            turn.trigger = "user_speech"
            user_turn_times(turn.times, item.metrics)

    def _on_speech_done(self, handle: SpeechHandle) -> None:
        turn = self._open.pop(handle.id, None)
        if turn is None:
            return
        t = turn.times
        t.interrupted = handle.interrupted
        if (reply := first_reply(handle)) is not None:
            # after a tool call the spoken message may be a later LLM step's, which started
            # when the tool returned, not when the speech was created
            llm_started_at = t.created_at if handle.num_steps == 1 else None
            reply_times(t, reply.metrics, llm_started_at=llm_started_at)
        record = timeline(len(self.turns) + 1, t, trigger=turn.trigger, budget_s=self._budget_s)
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
