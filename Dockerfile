# Herald: one image for every Python service of the compose stack (migrate, worker,
# scheduler, exporter); the command picks the role. Default: the Dramatiq workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies change less often than code: install them in their own layer first.
# README* is optional (pyproject's readme); the glob keeps the build working without it.
COPY pyproject.toml README* ./
COPY actors ./actors
COPY orchestrator ./orchestrator
COPY monitoring ./monitoring
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin herald \
    && mkdir -p /tmp/herald-metrics \
    && chown herald /tmp/herald-metrics

USER herald

# prometheus_client multiprocess mode (dramatiq --processes N): the middleware empties
# this directory at start; in compose it is a tmpfs, so a restart starts clean too.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/herald-metrics \
    HERALD_METRICS_PORT=9191

EXPOSE 9191

CMD ["dramatiq", "herald.worker:setup", "--processes", "2", "--threads", "8"]
