"""A local OpenAI-compatible LLM server with scripted replies, for the agent's tests.

    python tests/agent/llm_stub.py --port 8000 --replies replies.json --requests requests.jsonl

It speaks `POST /v1/chat/completions` with `stream: true` (server-sent events, the way
vLLM, llama.cpp and Ollama do): each reply streamed word by word, then a usage chunk and
`data: [DONE]`. Replies are used in order, cycling. Each request body is appended to the
requests file as one JSON line, so a test can see what the agent sent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


def chunk(request_id: str, model: str, delta: dict, finish: str | None = None) -> str:
    body = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def stream_reply(
    request_id: str, model: str, reply: str, delay_s: float
) -> AsyncIterator[str]:
    words = reply.split(" ")
    yield chunk(request_id, model, {"role": "assistant", "content": ""})
    for n, word in enumerate(words):
        await asyncio.sleep(delay_s)
        yield chunk(request_id, model, {"content": word if n == 0 else " " + word})
    yield chunk(request_id, model, {}, finish="stop")
    usage = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
    final = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage,
    }
    yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"


def app(replies: list[str], requests_log: Path, delay_s: float) -> Starlette:
    script = itertools.cycle(replies)
    counter = itertools.count(1)

    async def completions(request: Request) -> StreamingResponse | JSONResponse:
        body = await request.json()
        with requests_log.open("a") as f:
            f.write(json.dumps(body) + "\n")
        request_id, reply = f"chatcmpl-stub-{next(counter)}", next(script)
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply}
            return JSONResponse(
                {
                    "id": request_id,
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )
        return StreamingResponse(
            stream_reply(request_id, body["model"], reply, delay_s), media_type="text/event-stream"
        )

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models),
        ]
    )


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--replies", type=Path, required=True, help="JSON list of reply strings")
    cli.add_argument("--requests", type=Path, required=True, help="JSON-lines log of requests")
    cli.add_argument("--word-delay", type=float, default=0.02, help="seconds between words")
    args = cli.parse_args()
    replies = json.loads(args.replies.read_text())
    uvicorn.run(
        app(replies, args.requests, args.word_delay),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
