# One image for all five ICEP processes; the command picks the service:
#   docker run icep serve plans        (see docker-compose.yml)
#   docker run icep migrate plans

FROM python:3.11-slim AS build

# Use the image's Python (never download one), copy files out of the cache
# instead of hard-linking, and compile bytecode once at build time.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m pip install --quiet uv

WORKDIR /app
# Third-party dependencies first, from the lock alone, so that a change to our
# own code does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace
# Then the workspace members, installed editable: code finds its migrations and
# other files next to its sources.
COPY . .
RUN uv sync --frozen --no-dev --all-packages


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH

RUN groupadd --system --gid 10001 icep \
    && useradd --system --uid 10001 --gid icep --home-dir /app --no-create-home icep

WORKDIR /app
# The workspace comes along whole: the venv refers to the members' sources, and
# each service's Alembic migrations and deploy/dev-clients.toml live beside them.
COPY --from=build /app /app
# ./var holds the SQLite databases when no DATABASE_URL is given.
RUN mkdir -p /app/var && chown icep:icep /app/var

USER icep
# API ports (gateway, plans, procurement, standards, notifications), then their
# management ports (/metrics, health, a service's own API documents).
EXPOSE 8000 8001 8002 8003 8004 9000 9001 9002 9003 9004
ENTRYPOINT ["/app/.venv/bin/icep"]
CMD ["--help"]
