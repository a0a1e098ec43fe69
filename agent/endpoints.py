"""Which OpenAI-compatible server the LLM and the STT talk to, and the error when there is none.

Each model has its own endpoint (AGENT_LLM_BASE_URL, AGENT_STT_BASE_URL), falls back to the
shared OPENAI_BASE_URL, and else goes to OpenAI itself, which needs OPENAI_API_KEY. A local
server (vLLM, llama.cpp, Ollama, Speaches) needs no key: the openai client refuses to start
without one, so a placeholder is sent.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
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


class EndpointUnreachable(RuntimeError):
    """A configured server does not answer at all; the message is one line."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str | None  # None: OpenAI
    api_key: str
    variable: str | None = None  # the variable that set base_url

    @property
    def shown(self) -> str:
        return self.base_url or "OpenAI"


def endpoint(config: AgentConfig, model: Model) -> Endpoint:
    """The endpoint of `model`, or EndpointMissing naming the variables to set."""
    own_url = config.llm_base_url if model == "llm" else config.stt_base_url
    own_key = config.llm_api_key if model == "llm" else config.stt_api_key
    base_url = own_url or config.openai_base_url
    own = AgentConfig.env_name(f"{model}_base_url")
    api_key = _secret(own_key) or _secret(config.openai_api_key)
    # OpenAI itself without a key would fail on the first turn (compose's default URL)
    if not api_key and (base_url is None or urlparse(base_url).hostname == OPENAI_HOST):
        raise EndpointMissing(
            f"no {model.upper()} configured: set {own} to {_SERVERS[model]}; e.g. "
            "http://127.0.0.1:8000/v1), or OPENAI_API_KEY for OpenAI (OPENAI_BASE_URL sets "
            "one server for LLM and STT)"
        )
    variable = own if own_url else "OPENAI_BASE_URL" if base_url else None
    return Endpoint(base_url=base_url, api_key=api_key or NO_KEY, variable=variable)


def check_answers(target: Endpoint, model: Model, *, timeout_s: float = 3.0) -> None:
    """EndpointUnreachable when nothing answers at the base URL (any HTTP reply will do:
    only a server that is not there fails here, the rest shows on the first request)."""
    if target.base_url is None:
        return
    request = urllib.request.Request(
        target.base_url.rstrip("/") + "/models",
        headers={"Authorization": f"Bearer {target.api_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise EndpointUnreachable(
            f"no {model.upper()} server answers at {target.base_url} ({target.variable}): "
            f"{reason}; start it, or point {target.variable} at one that runs"
        ) from None


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def check_node_answers(tts_url: str, *, timeout_s: float = 3.0) -> None:
    """EndpointUnreachable unless some Orpheus node of ORPHEUS_BASE_URL accepts a connection."""
    from livekit.plugins.orpheus.endpoints import parse_base_url

    try:
        addresses, _ = parse_base_url(tts_url)
    except ValueError as e:
        raise EndpointUnreachable(f"ORPHEUS_BASE_URL={tts_url!r}: {e}") from None
    errors = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
            return
        except (OSError, ValueError) as e:
            errors.append(f"{address}: {getattr(e, 'strerror', None) or e}")
    raise EndpointUnreachable(
        f"no Orpheus node answers at ORPHEUS_BASE_URL ({'; '.join(errors)}); start one "
        "(to try: `orpheus-server --model tiny-random --snac random`) or point "
        "ORPHEUS_BASE_URL at one"
    )
