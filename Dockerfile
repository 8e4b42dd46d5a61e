# The image of both services, one stage each on a shared base, and the dashboard page's stage.
# Build context: the repository root. docker-compose.yml builds each from it (build.target):
#   docker build --target generator -t fraud-detection-generator .
#   docker build --target detector -t fraud-detection-detector .
#   docker build --target dashboard -t fraud-detection-dashboard .
#
# Base image pinned to an exact Python patch release and Debian release. It is not pinned by
# digest because no registry for it is reachable from the machine this was written on; to pin,
# run `docker buildx imagetools inspect python:3.11.15-slim-bookworm` and append `@sha256:...`.
# (`make test-docker` on a machine without a registry builds on a stand-in of this image made
# from Debian's packages, scripts/docker-tier.sh; docs/docker.md "The Docker tier".)
FROM python:3.11.15-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed, non-root UID/GID: file permissions and runAsUser-style policies stay predictable.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes, and both
# services' images share it (and every layer above), because both stages start from `base`.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code both services run (owned by root, so the app user cannot modify it); it holds the
# healthcheck probe, `python -m fraudcore.healthcheck`.
COPY fraudcore/ ./fraudcore/


FROM base AS generator
COPY generator/ ./generator/
USER 10001:10001
CMD ["python", "-m", "generator"]


FROM base AS detector
COPY detector/ ./detector/
USER 10001:10001
CMD ["python", "-m", "detector"]


# The dashboard page (`python -m dashboard --web`, compose profile `web`); its healthcheck is
# `python -m dashboard.healthcheck`.
FROM base AS dashboard
COPY dashboard/ ./dashboard/
USER 10001:10001
EXPOSE 8088
CMD ["python", "-m", "dashboard", "--web"]
