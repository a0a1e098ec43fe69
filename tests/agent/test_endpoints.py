"""Which server the LLM and the STT talk to: own endpoint, shared OPENAI_BASE_URL, OpenAI."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig
from agent.endpoints import NO_KEY, Endpoint, EndpointMissing, endpoint


def test_a_local_server_needs_no_key() -> None:
    config = AgentConfig(llm_base_url="http://127.0.0.1:8080/v1")
    assert endpoint(config, "llm") == Endpoint(
        "http://127.0.0.1:8080/v1", NO_KEY, variable="AGENT_LLM_BASE_URL"
    )


def test_own_endpoint_and_key_win_over_the_shared_ones() -> None:
    config = AgentConfig(
        llm_base_url="http://llm:8000/v1",
        llm_api_key="llm-key",
        openai_base_url="http://shared:8000/v1",
        openai_api_key="sk-shared",
    )
    assert endpoint(config, "llm") == Endpoint(
        "http://llm:8000/v1", "llm-key", variable="AGENT_LLM_BASE_URL"
    )
    assert endpoint(config, "stt") == Endpoint(
        "http://shared:8000/v1", "sk-shared", variable="OPENAI_BASE_URL"
    )


def test_openai_key_alone_means_openai() -> None:
    target = endpoint(AgentConfig(openai_api_key="sk-x"), "stt")
    assert target == Endpoint(None, "sk-x") and target.shown == "OpenAI"


@pytest.mark.parametrize(
    "model,variable", [("llm", "AGENT_LLM_BASE_URL"), ("stt", "AGENT_STT_BASE_URL")]
)
def test_nothing_configured_names_the_variables_in_one_line(model: str, variable: str) -> None:
    with pytest.raises(EndpointMissing) as e:
        endpoint(AgentConfig(), model)
    message = str(e.value)
    assert message.startswith(f"no {model.upper()} configured")
    assert variable in message and "OPENAI_API_KEY" in message and "\n" not in message


def test_one_model_configured_does_not_configure_the_other() -> None:
    config = AgentConfig(llm_base_url="http://127.0.0.1:8080/v1")
    with pytest.raises(EndpointMissing, match="AGENT_STT_BASE_URL"):
        endpoint(config, "stt")


def test_openai_itself_without_a_key_is_not_configured() -> None:
    # docker-compose's default OPENAI_BASE_URL with no key: fail at start, not on the first turn
    config = AgentConfig(openai_base_url="https://api.openai.com/v1")
    with pytest.raises(EndpointMissing, match="OPENAI_API_KEY"):
        endpoint(config, "llm")
