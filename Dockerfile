# One image for every role; the role is the command (smtp-discovery ROLE).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY ingest ingest
COPY streams streams
COPY sinks sinks
COPY jobs jobs
COPY admin admin
COPY smtp_discovery smtp_discovery
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/smtp-discovery --create-home discovery
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    DISCOVERY_DATA_DIR=/var/lib/smtp-discovery
USER 10001
ENTRYPOINT ["smtp-discovery"]
CMD ["--help"]
