"""orpheus.v1.TTS: one Synthesize call = one session on this node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NoReturn

import grpc

from .. import errors as E
from ..audio.listener import Listener
from ..config import DEFAULT_STARVING_MS
from ..fleet.catalog import ModelCatalog, ServedModel
from ..fleet.dispatch import FleetDispatch
from ..log_context import bind_session
from ..metrics import NodeMetrics
from ..node_state import NodeState
from ..orpheus.tokens import BASE_VOICES
from ..proto import tts_pb2 as pb
from ..proto import tts_pb2_grpc as pb_grpc
from ..session.events import SegmentOut, SessionEvent
from ..session.factory import SessionFactory
from ..session.synthesis import SynthesisSession
from ..voices.model_card import DEFAULT_LANGUAGE
from ..voices.names import validate_voice_name
from .admission import AdmissionPolicy
from .client_writes import IDLE_S, read_in_flight
from .errors import Status, to_status
from .messages import (
    ResponseEncoder,
    check_audio_format,
    check_language,
    check_session_id,
    model_to_proto,
    resume_from_proto,
    sampling_from_proto,
)
from .read_stall import ReadStall, end_stalled_call

log = logging.getLogger(__name__)

_DONE = object()  # end of the session's events
_OUTPUT_QUEUE = 32  # events buffered ahead of a slow reader before generation waits


@dataclass(slots=True)
class NodeIdentity:
    node_id: str
    model_name: str
    capacity: int  # concurrent sessions this node admits
    starving_ms: float = DEFAULT_STARVING_MS  # admission: see service/admission.py
    realtime_streams: int = 0  # admission: speaking streams kept real time (0 = unmeasured)
    language: str = DEFAULT_LANGUAGE  # of the model (voices/model_card.py)
    base_voices: tuple[str, ...] = BASE_VOICES  # the first is the default voice

    def catalog(self) -> ModelCatalog:
        """This node's own model, for the checks a session start gets here."""
        model = ServedModel(self.model_name, self.language, self.base_voices, (self.node_id,))
        return ModelCatalog([model])


class TTSService(pb_grpc.TTSServicer):
    def __init__(
        self,
        sessions: SessionFactory | None,
        identity: NodeIdentity,
        metrics: NodeMetrics | None = None,
        *,
        dispatch: FleetDispatch | None = None,
        state: NodeState | None = None,
        first_text_timeout: float = 0.0,
        max_stalled_read: float = 0.0,
    ) -> None:
        """`sessions` is None on a `--role router` node (it forwards every session).

        `first_text_timeout`: a session that has had no text this many seconds after its
        start is ended, so idle calls cannot hold the node's capacity (0 = no limit).
        `max_stalled_read`: a response write pending this long (the client stopped
        reading) ends the session (0 = no limit; service/read_stall.py)."""
        self._sessions = sessions
        self._first_text_timeout = first_text_timeout or None
        self._max_stalled_read = max_stalled_read
        self.dispatch = dispatch
        self._identity = identity
        self._admission = AdmissionPolicy(
            identity.capacity, identity.starving_ms, identity.realtime_streams
        )
        self._metrics = metrics or NodeMetrics()
        self.state = state or NodeState()  # draining, live sessions: shared with the fleet
        self.state.add_load_listener(self._metrics.live_sessions.set)
        self._metrics.watch_streams(lambda: self._admission.load(self._speaking()))

    async def Synthesize(
        self,
        request_iterator: AsyncIterator[pb.SynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.SynthesizeResponse]:
        requests = aiter(request_iterator)
        try:
            start = _with_session_id(await self._read_start(requests))
            bind_session(start.session_id, start.voice or self._identity.base_voices[0])
        except Exception as exc:
            err = to_status(exc)
            self._metrics.sessions.labels(err.code.name).inc()
            await _refuse(requests, context, err)
        if self.dispatch is None:
            responses = self._serve(start, requests, context)
        else:  # a fleet: serve here or forward to the session's owner
            responses = self.dispatch.dispatch(start, requests, context, self._serve)
        try:
            async with contextlib.aclosing(responses):
                async for response in responses:
                    yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the fleet's refusals and relayed peer statuses
            err = to_status(exc)
            log.info("session %s: %s %s", start.session_id, err.code.name, err.details)
            await _refuse(requests, context, err)

    async def _serve(
        self,
        start: pb.SessionStart,
        requests: AsyncIterator[pb.SynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.SynthesizeResponse]:
        """Run the session on this node."""
        try:
            session = self._open(start)
        except Exception as exc:
            err = to_status(exc)
            log.info("session refused: %s %s", err.code.name, err.details)
            self._metrics.sessions.labels(err.code.name).inc()
            await _refuse(requests, context, err)
        bind_session(session.session_id, session.voice.name)
        self.state.session_opened(session.session_id, session)
        code = grpc.StatusCode.CANCELLED
        stall = ReadStall(self._max_stalled_read) if self._max_stalled_read else None
        log.info("session %s started voice=%s", session.session_id, session.voice.name)
        try:
            yield pb.SynthesizeResponse(
                started=pb.SessionStarted(
                    session_id=session.session_id,
                    node_id=self._identity.node_id,
                    voice=session.voice.name,
                    sample_rate=24000,
                    num_channels=1,
                    seed=session.seed,
                    model=self._identity.model_name,
                    language=self._identity.language,
                )
            )
            encoder = ResponseEncoder(start.resume.next_sequence)
            events = _run_session(session, requests, self._first_text_timeout, stall, context)
            async with contextlib.aclosing(events):
                async for event in events:
                    self._observe(event)
                    yield encoder.encode(event)
            code = grpc.StatusCode.OK
        except GeneratorExit:
            if stall is not None and stall.error is not None:  # ended by end_stalled_call
                code = to_status(stall.error).code
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            err = to_status(exc)
            code = err.code
            log.info("session %s ended: %s %s", session.session_id, err.code.name, err.details)
            await context.abort(err.code, err.details)
        finally:
            self.state.session_closed(session.session_id)
            self._metrics.sessions.labels(code.name).inc()
            log.info("session %s closed: %s", session.session_id, code.name)

    def _observe(self, event: SessionEvent) -> None:
        if isinstance(event, SegmentOut):
            m = event.metrics
            self._metrics.segments.inc()
            self._metrics.ttfa_ms.observe(m.ttfa_ms)
            self._metrics.head_silence_trimmed_ms.observe(m.head_silence_trimmed_ms)
            self._metrics.tokens.inc(m.tokens_generated)
            self._metrics.audio_seconds.inc(m.audio_ms / 1000.0)
            self._metrics.chunks_stopped.labels("overrun").inc(m.chunks_overrun)
            self._metrics.chunks_stopped.labels("max_tokens").inc(m.chunks_budget_capped)
            self._metrics.gap_silence_trimmed_ms.inc(m.gap_silence_trimmed_ms)

    async def ListVoices(
        self, request: pb.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVoicesResponse:
        if self._sessions is None and self.dispatch is not None:
            return await self.dispatch.list_voices(request, context.invocation_metadata())
        model = self._identity.model_name
        if request.model and request.model != model:
            return pb.ListVoicesResponse()
        loaded = self._sessions.loaded_adapters()
        voices = [
            pb.Voice(
                name=spec.name,
                model=model,
                kind=pb.Voice.KIND_LORA if spec.kind == "lora" else pb.Voice.KIND_BASE,
                loaded=spec.kind == "base" or spec.name in loaded,
                language=self._identity.language,
            )
            for spec in self._sessions.voices.voices()
        ]
        return pb.ListVoicesResponse(voices=voices)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        """The fleet's models from its membership (this node's own without a fleet)."""
        try:
            language = check_language(request.language, "ListModelsRequest.language")
        except E.ClientError as exc:
            err = to_status(exc)
            await context.abort(err.code, err.details)
        catalog = self.dispatch.catalog() if self.dispatch else self._identity.catalog()
        return pb.ListModelsResponse(models=map(model_to_proto, catalog.models(language)))

    async def _read_start(self, requests: AsyncIterator[pb.SynthesizeRequest]) -> pb.SessionStart:
        first = await anext(requests, None)
        if first is None:
            raise E.ClientError("stream closed before SessionStart")
        if first.WhichOneof("kind") != "start":
            raise E.ProtocolOrderError(
                f"first message must be SessionStart, got {first.WhichOneof('kind') or 'empty'}",
            )
        return first.start

    def _listeners(self) -> list[Listener]:
        return [session.listener for session in self.state.live.values()]

    def _speaking(self) -> list[Listener]:
        """Listeners of the sessions not idle between turns (an idle one's buffer ran dry
        long ago: that is not a stream waiting for audio)."""
        return [session.listener for session in self.state.live.values() if not session.idle]

    def _open(self, start: pb.SessionStart) -> SynthesisSession:
        if self.state.draining:
            raise E.Unavailable("node is draining; retry on another node")
        self._admission.check(self._listeners(), self._speaking())
        self._identity.catalog().resolve(start.model, start.language)
        session_id = start.session_id or uuid.uuid4().hex
        check_session_id(session_id)
        if session_id in self.state.live:
            raise E.AlreadyExists(f"session {session_id!r} is live")
        check_audio_format(start.audio_format)
        sampling = sampling_from_proto(start.sampling, self._sessions.default_sampling)
        session = self._sessions.create(
            session_id,
            start.voice or self._identity.base_voices[0],
            sampling,
            trim_head_silence=start.trim_head_silence
            if start.HasField("trim_head_silence")
            else True,
        )
        if point := resume_from_proto(start.resume, sampling):
            session.resume(point)
        return session


async def _refuse(
    requests: AsyncIterator[pb.SynthesizeRequest],
    context: grpc.aio.ServicerContext,
    err: Status,
) -> NoReturn:
    """End the call with `err` once the messages the client already sent are in
    (service/client_writes.py: otherwise an aio client may see INTERNAL instead)."""
    await read_in_flight(requests, first_idle_s=IDLE_S)
    await context.abort(err.code, err.details)


def _with_session_id(start: pb.SessionStart) -> pb.SessionStart:
    """The session id, the voice and the model (or language) are the fleet's routing keys:
    the id checked, or assigned if the client sent none; the voice checked and NFC-normalised
    (voices/names.py) before any ring lookup, so every spelling of a voice routes, and is
    served, as one; the language checked and normalised (voices/model_card.py)."""
    if start.session_id:
        check_session_id(start.session_id)
    voice = validate_voice_name(start.voice) if start.voice else ""
    language = check_language(start.language)
    if start.session_id and voice == start.voice and language == start.language:
        return start
    assigned = pb.SessionStart()
    assigned.CopyFrom(start)
    assigned.session_id = start.session_id or uuid.uuid4().hex
    assigned.voice = voice
    assigned.language = language
    return assigned


def _apply(session: SynthesisSession, request: pb.SynthesizeRequest) -> None:
    kind = request.WhichOneof("kind")
    if kind == "text":
        session.add_text(request.text.text, request.text.segment_id)
    elif kind == "flush":
        session.flush(request.flush.segment_id)
    elif kind == "end_input":
        session.end_input()
    elif kind == "start":
        raise E.ProtocolOrderError("SessionStart sent twice")
    else:
        raise E.ClientError("empty SynthesizeRequest")


async def _run_session(
    session: SynthesisSession,
    requests: AsyncIterator[pb.SynthesizeRequest],
    first_text_timeout: float | None = None,
    stall: ReadStall | None = None,
    context: grpc.aio.ServicerContext | None = None,
) -> AsyncIterator[object]:
    """Feed client messages into the session while yielding its events, in one merge.

    With `stall` (and the call's `context`), a client that stops reading for
    `stall.limit_s` has its call ended and its session closed (service/read_stall.py)."""
    handler = asyncio.current_task()  # the call's: cancelled to end a stalled call
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=_OUTPUT_QUEUE)

    async def read() -> None:
        try:
            async with asyncio.timeout(first_text_timeout) as first_text:
                async for request in requests:
                    if request.WhichOneof("kind") == "text":
                        first_text.reschedule(None)
                    if not failing.is_set():
                        _apply(session, request)
            session.end_input()  # half-close without EndInput still means "no more text"
        except TimeoutError:
            await queue.put(
                E.ClientTimeout(
                    f"no text within first_text_timeout={first_text_timeout:g}s of "
                    "SessionStart (--first-text-timeout)",
                )
            )
        except Exception as exc:
            await read_in_flight(requests, first_idle_s=IDLE_S)  # the refusal reaches aio
            await queue.put(exc)

    async def pump() -> None:
        try:
            async with contextlib.aclosing(session.events()) as events:  # abort on cancel
                async for event in events:
                    await queue.put(event)
            await queue.put(_DONE)
        except Exception as exc:
            await queue.put(exc)

    async def watch_reads() -> None:
        error = await stall.watch()
        log.info("session %s: %s", session.session_id, error)
        await end_stalled_call(context, error, handler)

    failing = asyncio.Event()  # set: the call ends with an error; the reader only drops
    tasks = [asyncio.create_task(read()), asyncio.create_task(pump())]
    if stall is not None:
        tasks.append(asyncio.create_task(watch_reads()))
    writing = stall.writing if stall is not None else contextlib.nullcontext
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                failing.set()  # let writes in flight land first (see client_writes)
                await asyncio.wait(tasks[:1], timeout=IDLE_S)
                raise item
            with writing():
                yield item
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
