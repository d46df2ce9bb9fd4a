# The gateway image. `vllm-gateway serve` by default; the same image runs the CPU stand-in for
# vLLM (`vllm-server standin`) in docker-compose.yml's `cpu` profile. vLLM itself runs from
# the stock vllm/vllm-openai image: the gateway never imports vLLM.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY vllm_server ./vllm_server
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home gateway \
    && mkdir /data \
    && chown gateway /data

USER 10001
# Listen on every interface inside the container; the embedded SQLite store (used when no
# Redis is configured) lives in /data, a volume.
ENV VLLM_GATEWAY_SERVER__HOST=0.0.0.0 \
    VLLM_GATEWAY_SERVER__PORT=8080 \
    VLLM_GATEWAY_STORE__SQLITE_PATH=/data/gateway.db
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["vllm-gateway"]
CMD ["serve"]
