"""Which OpenAI-compatible server the LLM and the STT talk to, and the error when there is none.

Each model has its own endpoint (AGENT_LLM_BASE_URL, AGENT_STT_BASE_URL), falls back to the
shared OPENAI_BASE_URL, and else goes to OpenAI itself, which needs OPENAI_API_KEY. A local
server (vLLM, llama.cpp, Ollama, Speaches) needs no key: the openai client refuses to start
without one, so a placeholder is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from pydantic import SecretStr

from .config import AgentConfig

# sent as the bearer token to a server that has no keys; never to OpenAI itself
NO_KEY = "no-key"

Model = Literal["llm", "stt"]

_SERVERS = {
    "llm": "an OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama",
    "stt": "an OpenAI-compatible transcription server (Speaches, vLLM",
}
OPENAI_HOST = "api.openai.com"


class EndpointMissing(RuntimeError):
    """No endpoint and no OpenAI key for a model this mode needs; the message is one line."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str | None  # None: OpenAI
    api_key: str

    @property
    def shown(self) -> str:
        return self.base_url or "OpenAI"


def endpoint(config: AgentConfig, model: Model) -> Endpoint:
    """The endpoint of `model`, or EndpointMissing naming the variables to set."""
    own_url = config.llm_base_url if model == "llm" else config.stt_base_url
    own_key = config.llm_api_key if model == "llm" else config.stt_api_key
    base_url = own_url or config.openai_base_url
    api_key = _secret(own_key) or _secret(config.openai_api_key)
    # OpenAI itself without a key would fail on the first turn (compose's default URL)
    if not api_key and (base_url is None or urlparse(base_url).hostname == OPENAI_HOST):
        own = AgentConfig.env_name(f"{model}_base_url")
        raise EndpointMissing(
            f"no {model.upper()} configured: set {own} to {_SERVERS[model]}; e.g. "
            "http://127.0.0.1:8000/v1), or OPENAI_API_KEY for OpenAI (OPENAI_BASE_URL sets "
            "one server for LLM and STT)"
        )
    return Endpoint(base_url=base_url, api_key=api_key or NO_KEY)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""
