# Herald: one image for every Python service of the compose stack (migrate, worker,
# scheduler, exporter); the command picks the role. Default: the Dramatiq workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies change less often than code: install them in their own layer first, from
# pyproject.toml alone (its [project] dependencies; no extras: the demo's embedded
# PostgreSQL stays out of the image), so a code change rebuilds only the layers below.
# README* is optional (pyproject's readme); the glob keeps the build working without it.
COPY pyproject.toml README* ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin herald \
    && mkdir -p /tmp/herald-metrics \
    && chown herald /tmp/herald-metrics

# The code, then the package itself without resolving anything again.
COPY actors ./actors
COPY orchestrator ./orchestrator
COPY monitoring ./monitoring
COPY herald ./herald
RUN pip install . --no-deps

USER herald

# prometheus_client multiprocess mode (dramatiq --processes N): the middleware empties
# this directory at start; in compose it is a tmpfs, so a restart starts clean too.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/herald-metrics \
    HERALD_METRICS_PORT=9191

EXPOSE 9191

# The shape the benchmarks measure as "defaults" (benchmarks/defaults.py): an enrich batch
# waits on the model without holding more than one thread, so 16 threads a process keep
# the email and orchestrator queues busy meanwhile.
CMD ["dramatiq", "herald.worker:setup", "--processes", "2", "--threads", "16"]
