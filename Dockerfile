# syntax=docker/dockerfile:1
# empire's image: the agent (`empire run`, the default) and the operator (`empire operator run`).
#
# Two stages. `build` installs the locked dependencies (deploy/image/requirements.lock, generated
# from pyproject.toml by `make lock`; every artifact checked against its hash) and then empire
# itself into a virtualenv; the runtime stage copies only that virtualenv: no wheels, no pip
# cache, no build tools left in a layer.
#
# BASE is the base image. Pin it by digest for a reproducible build (and review every bump):
#   docker build --build-arg BASE=python:3.11-slim@sha256:<digest> -t empire .
# (`docker buildx imagetools inspect python:3.11-slim` prints the digest.) The default is the tag
# alone because the digest could not be looked up where this file was written (no registry
# access); set it in the build that publishes the image.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/empire
COPY deploy/image/requirements.lock /tmp/requirements.lock
RUN /opt/empire/bin/pip install --require-hashes -r /tmp/requirements.lock
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/empire/bin/pip install --no-deps /src

FROM ${BASE}
# uid and gid 10001: what deploy/deployment.yaml runs as (runAsUser, runAsGroup, fsGroup).
RUN groupadd --system --gid 10001 empire \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/empire --create-home empire
COPY --from=build /opt/empire /opt/empire
USER 10001:10001
ENV PATH=/opt/empire/bin:$PATH \
    EMPIRE_DATA_DIR=/var/lib/empire \
    EMPIRE_HTTP__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 9464
# For `docker run` (Kubernetes uses the Deployment's probes instead): the agent's /healthz, 503 when
# the loop stopped ticking. For the operator, set EMPIRE_HEALTHCHECK_URL to its --liveness URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('EMPIRE_HEALTHCHECK_URL', 'http://127.0.0.1:9464/healthz'), timeout=4)"]
ENTRYPOINT ["empire"]
CMD ["run"]
