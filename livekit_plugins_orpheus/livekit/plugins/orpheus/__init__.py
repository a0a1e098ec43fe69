"""Orpheus plugin for LiveKit Agents

Streaming text-to-speech from self-hosted Orpheus inference nodes over gRPC.
"""

from .models import EMOTION_TAGS, TTSModels, TTSVoices
from .tts import TTS, ChunkedStream, OrpheusSegmentMetadata, SynthesizeStream
from .version import __version__
from .voice_names import VOICE_NAME_RULE, validate_voice_name

__all__ = [
    "EMOTION_TAGS",
    "TTS",
    "VOICE_NAME_RULE",
    "ChunkedStream",
    "OrpheusSegmentMetadata",
    "SynthesizeStream",
    "TTSModels",
    "TTSVoices",
    "__version__",
    "validate_voice_name",
]

from livekit.agents import Plugin

from .log import logger


class OrpheusPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(OrpheusPlugin())

# Cleanup docs of unexported modules
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
