"""Everything a node needs to open sessions: engine, tokenizer, decoder, voices, defaults."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from ..codec.decode_batcher import SnacDecodeBatcher
from ..engine.base import Engine, SamplingConfig
from ..orpheus.prompt import TextTokenizer
from ..orpheus.tags import ORPHEUS_TAGS
from ..voices.registry import VoiceRegistry
from .options import SessionOptions
from .synthesis import SynthesisSession, Voice

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SessionFactory:
    engine: Engine
    tokenizer: TextTokenizer
    decoder: SnacDecodeBatcher
    voices: VoiceRegistry
    default_sampling: SamplingConfig
    options: SessionOptions
    emotion_tags: frozenset[str] = frozenset(ORPHEUS_TAGS)  # the model's (tags_for_model)
    warming: set[asyncio.Task[None]] = field(default_factory=set)  # voices loading ahead

    def loaded_adapters(self) -> frozenset[str]:
        return self.engine.loaded_adapters()

    def create(
        self,
        session_id: str,
        voice_name: str,
        sampling: SamplingConfig,
        *,
        trim_head_silence: bool = True,
    ) -> SynthesisSession:
        """Open a session; raises the registry's errors for bad or unknown voices."""
        spec = self.voices.resolve(voice_name)
        voice = Voice(spec.name, spec.name if spec.kind == "lora" else None)
        options = self.options
        if not trim_head_silence:
            options = replace(options, trim_head_silence=False)
        if voice.adapter is not None:
            self._warm(voice.adapter)
        return SynthesisSession(
            session_id,
            voice,
            engine=self.engine,
            tokenizer=self.tokenizer,
            decoder=self.decoder,
            sampling=sampling,
            options=options,
            emotion_tags=self.emotion_tags,
        )

    def _warm(self, adapter: str) -> None:
        """Start loading the voice's adapter as its session opens. A client opens the session
        while its LLM is still writing the first sentences (the plugin does), so the disk
        read is over before the text arrives instead of adding to its first audio. A voice
        that cannot load fails its first request, with the error a client gets."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the first request loads it
            return
        task = loop.create_task(self.engine.prepare(adapter), name=f"warm-voice-{adapter}")
        self.warming.add(task)
        task.add_done_callback(self._warmed)

    def _warmed(self, task: asyncio.Task[None]) -> None:
        self.warming.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("voice not loaded ahead: %s", exc)
