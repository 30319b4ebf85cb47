# syntax=docker/dockerfile:1

# ---- build: turn the repository into a wheel --------------------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# .dockerignore keeps tests, deployment files and local state out of the context.
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime ------------------------------------------------------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 spendgate \
 && useradd --system --uid 10001 --gid spendgate \
      --home-dir /var/lib/spendgate --no-create-home --shell /usr/sbin/nologin spendgate

COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels

# Token counting needs no network: the encodings ship inside the package; check it.
RUN python -c "from accounting.tokens import get_encoding; get_encoding('o200k_base'); get_encoding('cl100k_base')"

# /etc/spendgate holds config.yaml (mount it); /var/lib/spendgate the SQLite store.
RUN mkdir -p /etc/spendgate /var/lib/spendgate \
 && chown spendgate:spendgate /var/lib/spendgate

USER 10001:10001
WORKDIR /var/lib/spendgate

EXPOSE 4000

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SPENDGATE_HEALTHCHECK_URL', 'http://127.0.0.1:4000/healthz'), timeout=4)"]

ENTRYPOINT ["spendgate"]
CMD ["serve", "--host", "0.0.0.0", "--config", "/etc/spendgate/config.yaml"]
