"""Voices: the base Orpheus voices and LoRA clones found in the voices directory."""

from .adapters import BrokenAdapterError, check_adapter_dir
from .names import VOICE_NAME_RULE, InvalidVoiceNameError, validate_voice_name
from .registry import UnknownVoiceError, VoiceRegistry, VoiceSpec

__all__ = [
    "VOICE_NAME_RULE",
    "BrokenAdapterError",
    "InvalidVoiceNameError",
    "UnknownVoiceError",
    "VoiceRegistry",
    "VoiceSpec",
    "check_adapter_dir",
    "validate_voice_name",
]
