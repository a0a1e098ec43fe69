"""The gRPC face of a node: orpheus.v1.TTS on top of sessions (and the fleet proxy)."""
