"""Accepted API keys: a file (one key per line, `#` comments) reloaded when it changes, plus env."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def key_digest(key: str) -> bytes:
    """Keys are held and compared as SHA-256 digests: a timing side channel reveals nothing."""
    return hashlib.sha256(key.encode()).digest()


def key_label(key: str) -> str:
    """A short, non-secret name for a key in logs and quotas."""
    return "key-" + key_digest(key).hex()[:8]


def parse_keys(text: str) -> set[str]:
    """Keys in a key file: the first word of each line; blank lines and `#` comments skipped."""
    keys = set()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            keys.add(words[0])
    return keys


class ApiKeyStore:
    """The current set of accepted keys; the file is re-read when its mtime/size/inode change.

    A file that disappears or cannot be read keeps the last good keys (and says so): an
    editor's atomic rename must not lock every agent out for an instant.
    """

    def __init__(
        self,
        path: Path | None = None,
        env_keys: str = "",
        *,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.path = path
        self._poll_interval_s = poll_interval_s
        self._static = {key_digest(k.strip()) for k in env_keys.split(",") if k.strip()}
        self._file: set[bytes] = set()
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"--api-keys-file {path} does not exist")
            self._reload()

    @property
    def enabled(self) -> bool:
        """Whether any key source is configured (an empty key file still means 'auth on')."""
        return self.path is not None or bool(self._static)

    def __len__(self) -> int:
        self._maybe_reload()
        return len(self._static | self._file)

    def accepts(self, key: str) -> bool:
        self._maybe_reload()
        digest = key_digest(key)
        return digest in self._static or digest in self._file

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._checked_at < self._poll_interval_s:
            return
        self._checked_at = now
        try:
            st = self.path.stat()
        except OSError as exc:
            if self._stamp is not None:
                log.error("api keys file %s unreadable (%s); keeping the last keys", self.path, exc)
                self._stamp = None
            return
        if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
            self._reload()

    def _reload(self) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
            keys = parse_keys(self.path.read_text())
        except OSError as exc:
            log.error("cannot read api keys file %s: %s; keeping the last keys", self.path, exc)
            return
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self._checked_at = time.monotonic()
        self._file = {key_digest(k) for k in keys}
        log.info("api keys: %d loaded from %s", len(self._file), self.path)
