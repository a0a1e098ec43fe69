"""The voices a node can speak: its model's base voices plus LoRA clones in `--voices-dir`.

The directory holds one PEFT adapter directory per voice. It is polled (a few stats
per voice per second) so voices dropped in, replaced or removed take effect without
a restart. Broken adapters (including ones whose shapes do not fit the model or exceed
the rank limit) are logged once with the reason and not listed; a session asking for one
is refused with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..engine.adapter_fit import AdapterFit
from ..errors import NotFound
from ..orpheus.tokens import BASE_VOICES
from .adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, BrokenAdapterError, check_adapter_dir
from .names import InvalidVoiceNameError, normalize_voice_name, validate_voice_name

log = logging.getLogger(__name__)

VoiceKind = Literal["base", "lora"]
ChangeListener = Callable[[frozenset[str]], None]
_Signature = tuple[int, ...]


class UnknownVoiceError(NotFound):
    """A well-formed voice name that this node does not have."""


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    name: str
    kind: VoiceKind
    adapter_path: Path | None  # resolved adapter directory for "lora" voices
    model: str  # the base model this voice runs on


@dataclass(frozen=True, slots=True)
class _Entry:
    signature: _Signature
    spec: VoiceSpec | None  # None: broken (already reported)
    problem: str = ""  # why it is broken, for a client that asks for it


class VoiceRegistry:
    """Base voices + LoRA voices found in `voices_dir`, refreshed by polling."""

    def __init__(
        self,
        voices_dir: Path | None,
        model_name: str,
        *,
        poll_interval: float = 1.0,
        fit: AdapterFit | None = None,
        base_voices: Sequence[str] = BASE_VOICES,
    ) -> None:
        """`fit`: the model's layers and rank limit that adapters must match (None: any);
        `base_voices`: the model's own voices (its card, voices/model_card.py)."""
        self.model_name = model_name
        self._fit = fit
        self.poll_interval = poll_interval
        self._root = voices_dir.resolve() if voices_dir is not None else None
        self._base = {n: VoiceSpec(n, "base", None, model_name) for n in base_voices}
        self._entries: dict[str, _Entry] = {}
        self._clashes: set[str] = set()  # names spelt by several directories (NFC/NFD)
        self._listeners: list[ChangeListener] = []
        self._task: asyncio.Task[None] | None = None
        self._last_refresh = 0.0
        self._refreshing = threading.Lock()
        if self._root is not None and not self._root.is_dir():
            raise FileNotFoundError(f"--voices-dir {voices_dir}: not a directory")
        self.refresh()

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener(names)` with LoRA voices added, changed or removed by a refresh."""
        self._listeners.append(listener)

    def voices(self) -> list[VoiceSpec]:
        """All usable voices: base voices first, then LoRA voices by name."""
        loras = sorted((e.spec for e in self._entries.values() if e.spec), key=lambda s: s.name)
        return [*self._base.values(), *loras]

    def resolve(self, name: str) -> VoiceSpec:
        """The voice called `name` (in any Unicode normal form); raises `InvalidVoiceNameError`,
        `UnknownVoiceError`, or `BrokenAdapterError` for a voice directory that cannot be
        served."""
        name = validate_voice_name(name)  # its NFC form
        spec = self._lookup(name)
        if spec is None and time.monotonic() - self._last_refresh > 0.2:
            self.refresh()  # a voice dropped in since the last poll is usable at once
            spec = self._lookup(name)
        entry = self._entries.get(name)
        if spec is None and entry is not None and entry.problem:
            raise BrokenAdapterError(f"voice {name!r} cannot be used: {entry.problem}")
        if spec is None:
            valid = ", ".join(v.name for v in self.voices())
            raise UnknownVoiceError(f"unknown voice {name!r}; valid voices: {valid}")
        return spec

    def refresh(self) -> frozenset[str]:
        """Rescan the voices directory; return the LoRA voice names that changed."""
        with self._refreshing:  # the poll thread and an on-demand resolve may race
            return self._refresh()

    def _refresh(self) -> frozenset[str]:
        self._last_refresh = time.monotonic()
        if self._root is None:
            return frozenset()
        seen: dict[str, _Entry] = {}
        for name, path, signature in self._scan(self._root):
            old = self._entries.get(name)
            seen[name] = (
                old if old and old.signature == signature else self._load(name, path, signature)
            )
        changed = {
            n for n in seen.keys() | self._entries.keys() if _sig(seen, n) != _sig(self._entries, n)
        }
        self._entries = seen
        if changed:
            log.info("voices changed: %s", ", ".join(sorted(changed)))
            for listener in self._listeners:
                listener(frozenset(changed))
        return frozenset(changed)

    async def start(self) -> None:
        """Start polling the voices directory."""
        if self._root is not None and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="voice-registry-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("voice registry refresh failed; keeping the previous voices")

    def _lookup(self, name: str) -> VoiceSpec | None:
        if name in self._base:
            return self._base[name]
        entry = self._entries.get(name)
        return entry.spec if entry else None

    def _scan(self, root: Path) -> list[tuple[str, Path, _Signature]]:
        found = []
        try:
            children = list(os.scandir(root))
        except OSError as exc:
            log.error("cannot list voices directory %s: %s", root, exc)
            return [(name, Path(), e.signature) for name, e in self._entries.items()]
        spellings: dict[str, list[str]] = {}
        for child in children:
            if child.name.startswith("."):
                continue  # hidden: e.g. an adapter still being written by orpheus-finetune
            # the voice is the NFC name: a directory written NFD (macOS) serves the same voice
            name = normalize_voice_name(child.name)
            spellings.setdefault(name, []).append(child.name)
            found.append((name, Path(child.path), _signature(Path(child.path))))
        clashes = {name for name, dirs in spellings.items() if len(dirs) > 1}
        for name in sorted(clashes - self._clashes):  # once, not every poll
            log.error(
                "voice %r: %d directories spell it (%s); serving none of them, rename all but one",
                name, len(spellings[name]), ", ".join(map(ascii, sorted(spellings[name]))),
            )  # fmt: skip
        self._clashes = clashes
        return [(n, p, s) for n, p, s in found if n not in clashes]

    def _load(self, name: str, path: Path, signature: _Signature) -> _Entry:
        try:
            validate_voice_name(name)
            if name in self._base:
                raise BrokenAdapterError(f"{name!r} is a base voice name; rename the directory")
            real = check_adapter_dir(path, self._root, self._fit)  # type: ignore[arg-type]
        except InvalidVoiceNameError as exc:
            log.error("skipping voice directory %s: %s", path, exc)
            return _Entry(signature, None)
        except BrokenAdapterError as exc:
            log.error("skipping voice directory %s: %s", path, exc)
            return _Entry(signature, None, str(exc))
        return _Entry(signature, VoiceSpec(name, "lora", real, self.model_name))


def _sig(entries: dict[str, _Entry], name: str) -> _Signature | None:
    entry = entries.get(name)
    return entry.signature if entry else None


def _signature(path: Path) -> _Signature:
    """Modification times and sizes that change whenever the adapter is rewritten."""
    out: list[int] = []
    for p in (path, path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS):
        try:
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            out += [-1, -1, -1]
    return tuple(out)
