"""Everything a node needs to open sessions: engine, tokenizer, decoder, voices, defaults."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..codec.decode_batcher import SnacDecodeBatcher
from ..engine.base import Engine, SamplingConfig
from ..orpheus.prompt import TextTokenizer
from ..orpheus.tags import ORPHEUS_TAGS
from ..voices.registry import VoiceRegistry
from .options import SessionOptions
from .synthesis import SynthesisSession, Voice


@dataclass(slots=True)
class SessionFactory:
    engine: Engine
    tokenizer: TextTokenizer
    decoder: SnacDecodeBatcher
    voices: VoiceRegistry
    default_sampling: SamplingConfig
    options: SessionOptions
    emotion_tags: frozenset[str] = frozenset(ORPHEUS_TAGS)  # the model's (tags_for_model)

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
