"""Session id and voice on every log line written while a session is being served."""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s session=%(session_id)s voice=%(voice)s: %(message)s"
)
JSON_FIELDS = ["asctime", "levelname", "name", "session_id", "voice", "message"]

_session: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "orpheus_session", default=("-", "-")
)


def bind_session(session_id: str, voice: str) -> None:
    """Tag this task's log records (and tasks it starts later) with the session and voice."""
    _session.set((session_id or "-", voice or "-"))


class SessionLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session_id, record.voice = _session.get()
        return True


def configure_logging(level: str, log_format: str = "text") -> None:
    """Text lines, or (`json`) one JSON object per line for log collectors."""
    handler = logging.StreamHandler()
    handler.addFilter(SessionLogFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
