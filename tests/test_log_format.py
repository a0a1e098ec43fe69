"""`--log-format json`: one JSON object per line, with the session and voice being served."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import asyncio, logging
from inference_server.log_context import bind_session, configure_logging

configure_logging("INFO", "json")
log = logging.getLogger("inference_server.session")

async def serve(session_id, voice):
    bind_session(session_id, voice)
    await asyncio.sleep(0)
    log.info("segment done in %d ms", 42)

async def main():
    log.warning("node starting")
    await asyncio.gather(serve("s-1", "tara"), serve("s-2", "유나"))

asyncio.run(main())
"""


def test_json_lines_carry_the_session_and_voice_of_the_task_that_wrote_them() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(r["level"], r["session_id"], r["voice"], r["message"]) for r in lines] == [
        ("WARNING", "-", "-", "node starting"),
        ("INFO", "s-1", "tara", "segment done in 42 ms"),
        ("INFO", "s-2", "유나", "segment done in 42 ms"),
    ]
    assert all(r["name"] == "inference_server.session" and r["asctime"] for r in lines)
