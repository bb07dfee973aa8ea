# One image for all five ICEP processes; the command picks the service:
#   docker run icep:0.1.0 serve plans        (see docker-compose.yml, deploy/k8s)
#   docker run icep:0.1.0 migrate plans      (the migrations Job)
#
# Two stages: the build stage installs the locked dependencies (no development
# group) and the workspace members; the runtime stage takes only the virtual
# environment and each member's sources and migrations, and the documents the
# gateway's developer portal serves (docs/: the guides and docs/api): no tests,
# benchmarks, development clients (deploy/dev-clients.toml) or build tools.
# Tag it with the release, never `latest`:
#   docker build -t icep:$(uv version --short) .

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
COPY shared/pyproject.toml shared/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/plans/pyproject.toml services/plans/
COPY services/procurement/pyproject.toml services/procurement/
COPY services/standards/pyproject.toml services/standards/
COPY services/notifications/pyproject.toml services/notifications/
# The partner SDK is a workspace member too (uv needs its pyproject.toml to read the
# workspace), but no process runs it: it stays out of the image.
COPY clients/python/pyproject.toml clients/python/
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace --no-install-package icep-client
# Then the workspace members' sources (and the services' Alembic migrations),
# installed editable: code finds its migrations next to its sources.
COPY shared/src shared/src
COPY services/gateway/src services/gateway/src
COPY services/plans/src services/plans/src
COPY services/plans/migrations services/plans/migrations
COPY services/procurement/src services/procurement/src
COPY services/procurement/migrations services/procurement/migrations
COPY services/standards/src services/standards/src
COPY services/standards/migrations services/standards/migrations
COPY services/notifications/src services/notifications/src
COPY services/notifications/migrations services/notifications/migrations
RUN uv sync --frozen --no-dev --all-packages --no-install-package icep-client


FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH

# The user the pods run as (runAsUser/runAsGroup 10001 in deploy/k8s).
RUN groupadd --system --gid 10001 icep \
    && useradd --system --uid 10001 --gid icep --home-dir /app --no-create-home icep

WORKDIR /app
# Only what runs: the environment (its editable entries point at the sources
# below) and the members' sources and migrations, read-only to the user.
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/shared/src /app/shared/src
COPY --from=build /app/services/gateway/src /app/services/gateway/src
COPY --from=build /app/services/plans/src /app/services/plans/src
COPY --from=build /app/services/plans/migrations /app/services/plans/migrations
COPY --from=build /app/services/procurement/src /app/services/procurement/src
COPY --from=build /app/services/procurement/migrations /app/services/procurement/migrations
COPY --from=build /app/services/standards/src /app/services/standards/src
COPY --from=build /app/services/standards/migrations /app/services/standards/migrations
COPY --from=build /app/services/notifications/src /app/services/notifications/src
COPY --from=build /app/services/notifications/migrations /app/services/notifications/migrations
# The developer portal's guides and API documents (the gateway's guides_dir and
# api_docs_dir, relative to /app): only what the portal serves.
COPY docs/*.md /app/docs/
COPY docs/operations/*.md /app/docs/operations/
COPY docs/api /app/docs/api
# ./var holds the SQLite databases when no DATABASE_URL is given (an emptyDir in
# deploy/k8s, where the root filesystem is read-only).
RUN mkdir -p /app/var && chown icep:icep /app/var

USER 10001:10001
# API ports (gateway, plans, procurement, standards, notifications), then their
# management ports (/metrics, health, a service's own API documents).
EXPOSE 8000 8001 8002 8003 8004 9000 9001 9002 9003 9004
ENTRYPOINT ["/app/.venv/bin/icep"]
CMD ["--help"]
