"""Orpheus TTS inference node: gRPC service -> session -> engine -> codec -> audio."""

__version__ = "0.1.0"
