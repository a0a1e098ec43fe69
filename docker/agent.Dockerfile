# The reference persona agent (LiveKit Agents worker) with livekit-plugins-orpheus.
# No torch, no server. Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t orpheus-agent:0.1.0 .
FROM python:3.11.13-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin agent
WORKDIR /app

# Dependencies first: the plugin's and the [agent] extra's, pinned in the pyprojects.
COPY pyproject.toml docker/pyproject_requirements.py /tmp/build/
COPY livekit_plugins_orpheus/pyproject.toml /tmp/build/plugin/pyproject.toml
RUN { python /tmp/build/pyproject_requirements.py /tmp/build/plugin/pyproject.toml; \
      python /tmp/build/pyproject_requirements.py /tmp/build/pyproject.toml agent \
        | grep -E '^(livekit|python-dotenv|pyyaml|pydantic-settings)'; echo "pyyaml>=6"; } \
      | sort -u > /tmp/build/requirements.txt \
 && pip install --no-cache-dir -r /tmp/build/requirements.txt

COPY livekit_plugins_orpheus ./livekit_plugins_orpheus
RUN pip install --no-cache-dir --no-deps ./livekit_plugins_orpheus
COPY agent ./agent

ENV PYTHONUNBUFFERED=1 \
    AGENT_WAV_DIR=/tmp/agent-turns
USER 10001
# The worker's own health server (livekit-agents, port 8081) in `start`/`dev` mode.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8081/', timeout=4)"]
ENTRYPOINT ["python", "agent/main.py"]
CMD ["start"]
