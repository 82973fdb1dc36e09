# One container for a small VPS: the Discord bot, the engine and its SQLite journal.
# Build: docker build -t discord-trader .   Run: docker compose up -d (see docker-compose.yml)

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md run_bot.py ./
COPY config ./config
COPY engine ./engine
COPY bot ./bot
COPY cogs ./cogs
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip install --no-cache-dir --no-deps /wheels/*.whl

FROM python:3.11-slim
# A non-root user owns the data volume; nothing else is writable.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin trader \
    && mkdir /data \
    && chown trader:trader /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY run_bot.py ./
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
VOLUME ["/data"]
# Secrets come from the environment at run time (compose env_file), never from a layer.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "run_bot.py", "healthcheck"]
STOPSIGNAL SIGTERM
# A configuration error (exit 2: a bad setting, no or a rejected Discord token) is held 5 minutes
# before exiting, so `restart: unless-stopped` retries slowly instead of in a loop; the error is
# in `docker compose logs trader`. SIGTERM (docker stop) still ends the wait at once.
CMD ["python", "run_bot.py", "--config-error-wait", "300"]
