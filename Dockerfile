# One image for every role; the role is the command: smtp-discovery ingest|worker|sink|admin|jobs,
# and the one-shots migrate and `topics ensure`. Every long-running role serves /metrics, /healthz
# and /readyz on DISCOVERY_OPS_LISTEN (0.0.0.0:9125 here).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compilers only here, in case a dependency has no wheel for this platform ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first (pinned exactly in pyproject.toml), so a code change reuses this layer.
COPY pyproject.toml README.md ./
RUN /opt/venv/bin/python -c "import subprocess, tomllib; \
    deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
    subprocess.run(['/opt/venv/bin/pip', 'install', *deps], check=True)"
COPY schemas schemas
COPY ingest ingest
COPY streams streams
COPY sinks sinks
COPY jobs jobs
COPY admin admin
COPY smtp_discovery smtp_discovery
# A regular (non-editable) install: the console's templates and static files are package data.
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/python -c "from importlib.resources import files; \
    assert files('smtp_discovery.admin').joinpath('templates').is_dir(), 'admin/templates missing'; \
    assert files('smtp_discovery.admin').joinpath('static').is_dir(), 'admin/static missing'"

# --- runtime: the interpreter, the venv and nothing else -------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="smtp-discovery" \
      org.opencontainers.image.description="Multi-tenant SMTP Discovery: one image, role = command" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 discovery \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/smtp-discovery \
       --create-home --shell /usr/sbin/nologin discovery
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DISCOVERY_DATA_DIR=/var/lib/smtp-discovery \
    DISCOVERY_INGEST_LISTEN=0.0.0.0:2525 \
    DISCOVERY_ADMIN_LISTEN=0.0.0.0:8025 \
    DISCOVERY_OPS_LISTEN=0.0.0.0:9125
WORKDIR /var/lib/smtp-discovery
# SMTP (published as 25 by the load balancer), admin API, ops (metrics and probes).
EXPOSE 2525 8025 9125
USER 10001:10001
ENTRYPOINT ["smtp-discovery"]
CMD ["--help"]
