# Hecate as a long-running service: uvicorn with the app factory, one app per worker.
# Not built in CI here (no Docker engine on the development machines); see README, "Deploying".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_CONCURRENCY=2 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/hecate-metrics

COPY pyproject.toml README.md openapi.yaml /src/
COPY hecate /src/hecate
RUN pip install '/src[server]' && rm -rf /src \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hecate

WORKDIR /tmp
USER hecate
EXPOSE 8080

# Settings come from the environment (README, "Settings"); MONGODB_URL, JWT_SECRET, APP_URL and
# MAIL_TRANSPORT are required. Workers: WEB_CONCURRENCY (uvicorn reads it); with
# METRICS_ENABLED=true they share their counts through PROMETHEUS_MULTIPROC_DIR. Proxy headers off:
# TRUSTED_PROXIES decides whom to believe. Exec form, so uvicorn is PID 1 and gets the SIGTERM;
# in-flight requests get 8 s, inside the 10 s that `docker stop` and Cloud Run allow.
CMD ["uvicorn", "--factory", "hecate.asgi:create", "--host", "0.0.0.0", "--port", "8080", "--no-proxy-headers", "--no-server-header", "--no-access-log", "--lifespan", "off", "--timeout-graceful-shutdown", "8"]
