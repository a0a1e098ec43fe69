"""Token generation engines behind one small async interface (torch on CPU/GPU, vLLM on GPU)."""

from .base import Engine, EngineStats, GenerationRequest, SamplingConfig

__all__ = ["Engine", "EngineStats", "GenerationRequest", "SamplingConfig"]
