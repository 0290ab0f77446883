# close-account-bot container image. Deployment guide: deploy/README.md.
#
#   docker build -t close-account-bot .
#   docker run -d --name close-account-bot --env-file /etc/close-account-bot/env \
#     -v close-account-data:/data \
#     -v /etc/close-account-bot/close-account.toml:/config/close-account.toml:ro \
#     close-account-bot
#
# Secrets come only from the environment at `docker run` time (never ENV or ARG here):
# SLACK_BOT_TOKEN, then SLACK_APP_TOKEN for Socket Mode (the default way to run this image: the
# bot dials out to Slack, no port needs publishing) or SLACK_SIGNING_SECRET for HTTP mode (Slack
# posts to /slack/events on port 3000, behind a TLS reverse proxy), plus each tenant's
# client_secret_env variable.
# An exact tag, never a floating one: 3.11.17 is the newest 3.11 patch we could confirm is
# published for slim-bookworm. The tag can still be re-pushed with Debian security updates; to
# freeze the exact bytes too, resolve its digest where a registry is reachable (this project's
# build machines have none) and pin it as python:3.11.17-slim-bookworm@sha256:...:
#   docker buildx imagetools inspect python:3.11.17-slim-bookworm
FROM python:3.11.17-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A dedicated unprivileged user with a fixed uid/gid, so volume ownership is predictable.
RUN groupadd --system --gid 10001 closeaccount \
    && useradd --system --uid 10001 --gid closeaccount --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin closeaccount

WORKDIR /src
# Only what `pip install .` needs (pyproject names README.md as the long description and LICENSE
# as its license file) and the lock every version comes from.
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY bot ./bot
COPY statemachine ./statemachine
COPY storage ./storage
COPY simulator ./simulator
# The app and its runtime dependencies only, each at the version in requirements.lock (the one
# `make test` ran against): no test extras, no source tree left behind. The first pip brings pip
# and the base image's setuptools to the locked versions; the locked pip knows --build-constraint,
# which pins the setuptools that builds the project.
RUN pip install --constraint requirements.lock pip setuptools \
    && pip install --constraint requirements.lock --build-constraint requirements.lock . \
    && cd / && rm -rf /src \
    && mkdir -p /data /config \
    && chown closeaccount:closeaccount /data \
    && chmod 0700 /data

WORKDIR /data
# The SQLite database, its -wal/-shm files and the instance lock. The config's [storage] path
# must point here: path = "/data/close-account.db". Run one container per volume.
VOLUME /data

# HTTP mode only (no SLACK_APP_TOKEN): Slack's Request URL is https://<host>/slack/events.
# GET /healthz is served on this port in both modes, for the HEALTHCHECK below.
EXPOSE 3000

USER 10001:10001

# /healthz answers 200 once the bot is ready and can reach Slack and each tenant's authority
# (503 with the reason while it starts or while one is unreachable: readiness, so alert on
# `unhealthy` rather than restart on it; /livez is the liveness probe).
# The slim image has no curl, so Python asks. Change the port here if you change --port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# SIGINT and SIGTERM both stop the bot cleanly (stop the runner, close the database, release the
# lock, exit 0); SIGINT stays the image's stop signal for older versions of the bot.
STOPSIGNAL SIGINT

ENTRYPOINT ["close-account-bot"]
CMD ["run", "--config", "/config/close-account.toml"]
