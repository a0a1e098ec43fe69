"""The HTTP front door's routes (Starlette): OpenAI speech API, voices, stream, playground."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..proto import tts_pb2 as pb
from .errors import HttpError, ParamError, http_error_listing_voices
from .node_client import NodeClient
from .speech import (
    SpeechFigures,
    StreamBroken,
    audio_body,
    media_type,
    response_headers,
    session_messages,
    until_audio,
)
from .speech_schema import parse_speech_request
from .stream_ws import serve_stream

log = logging.getLogger(__name__)

PLAYGROUND_DIR = Path(__file__).with_name("playground")
PLACEHOLDER = (
    "Orpheus TTS node. HTTP API: POST /v1/audio/speech, GET /v1/models, "
    "GET /v1/audio/voices, WS /v1/audio/stream.\n"
)
MAX_BODY_BYTES = 4 * 1024 * 1024  # a speech request is text: the node's own limits are lower
_KINDS = {pb.Voice.KIND_BASE: "base", pb.Voice.KIND_LORA: "lora"}


def build_app(node: NodeClient, playground_dir: Path = PLAYGROUND_DIR) -> ASGIApp:
    routes = Routes(node)
    app_routes = [
        Route("/v1/audio/speech", routes.speech, methods=["POST"]),
        Route("/v1/models", routes.models, methods=["GET"]),
        Route("/v1/audio/voices", routes.voices, methods=["GET"]),
        WebSocketRoute("/v1/audio/stream", routes.stream),
    ]
    if (playground_dir / "index.html").is_file():
        app_routes.append(Mount("/", StaticFiles(directory=playground_dir, html=True)))
    else:
        app_routes.append(Route("/", lambda _: PlainTextResponse(PLACEHOLDER)))
    return EndBrokenStreams(Starlette(routes=app_routes))


class Routes:
    def __init__(self, node: NodeClient) -> None:
        self.node = node

    async def speech(self, request: Request) -> Response:
        received = time.monotonic()
        session = None
        try:
            req = parse_speech_request(await _json_body(request))
            session = await self.node.open(session_messages(req), _auth(request))
            head = await until_audio(session)
        except Exception as exc:
            if session is not None:
                session.cancel()
            return await self._error(exc, request)
        figures = SpeechFigures(
            node_id=session.started.node_id,
            session_id=session.started.session_id,
            voice=session.started.voice,
            model=req.model,
            received_at=received,
        )
        return StreamingResponse(
            audio_body(session, head, req, figures),
            media_type=media_type(req),
            headers=response_headers(session),
        )

    async def models(self, request: Request) -> Response:
        try:
            models = await self.node.list_models(_auth(request))
        except Exception as exc:
            return await self._error(exc, request)
        return JSONResponse({"object": "list", "data": [_model(m) for m in models]})

    async def voices(self, request: Request) -> Response:
        try:
            voices = await self.node.list_voices(
                _auth(request), request.query_params.get("model", "")
            )
        except Exception as exc:
            return await self._error(exc, request)
        return JSONResponse({"voices": [_voice(v) for v in voices]})

    async def stream(self, ws: WebSocket) -> None:
        await serve_stream(ws, self.node)

    async def _error(self, exc: BaseException, request: Request) -> Response:
        auth = _auth(request)
        err = await http_error_listing_voices(exc, lambda: self.node.voice_names(auth))
        log.info("%s %s: %d %s", request.method, request.url.path, err.status, err.message)
        return error_response(err)


def error_response(err: HttpError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers())


def _model(m: pb.Model) -> dict:
    """OpenAI's model object, plus what this fleet serves it with."""
    return {
        "id": m.name,
        "object": "model",
        "created": 0,
        "owned_by": "orpheus",
        "language": m.language,
        "voices": list(m.base_voices),
    }


def _voice(v: pb.Voice) -> dict:
    return {
        "id": v.name,
        "name": v.name,
        "model": v.model,
        "language": v.language,
        "kind": _KINDS.get(v.kind, "unknown"),
        "loaded": v.loaded,
    }


def _auth(request: Request) -> str | None:
    return request.headers.get("authorization")


async def _json_body(request: Request) -> object:
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise ParamError("body", f"request body over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise ParamError("body", "request body must be JSON") from None


class EndBrokenStreams:
    """A response whose audio failed midway ends without its final chunk (so the client
    knows it is cut short) and without a stack trace in the log: the failure was logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except StreamBroken:
            return  # uvicorn closes the connection of an unfinished response
