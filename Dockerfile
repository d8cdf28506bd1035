# syntax=docker/dockerfile:1
# The jobnode node image: `docker build -t jobnode .`, then `docker run jobnode` runs `jobnode serve`
# configured from the environment (see docs/configuration.md; the compose files show a cluster).
#
# Two stages: the first builds jobnode and its dependencies into a virtual environment (pip, build
# caches and any compiler stay behind in it); the second copies only that environment onto a clean
# slim Python and runs it as an unprivileged user.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/jobnode
WORKDIR /src
# Only what the package needs; tests, configs and monitoring are not part of the image.
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY jobnode ./jobnode
# The pinned versions of constraints.txt, for the build backend too (the isolated build
# environment inherits PIP_CONSTRAINT, not a --constraint option): a rebuild installs the same.
RUN PIP_CONSTRAINT=/src/constraints.txt /opt/jobnode/bin/pip install . \
    && /opt/jobnode/bin/python -c "import jobnode.cli.main, jobnode.election"

FROM python:${PYTHON_VERSION}-slim AS runtime
# A fixed numeric uid/gid: volumes can be prepared for it, and orchestrators that insist on a
# non-root user (runAsNonRoot) can check it without resolving names.
ARG JOBNODE_UID=10001
RUN groupadd --system --gid "${JOBNODE_UID}" jobnode \
    && useradd --system --uid "${JOBNODE_UID}" --gid jobnode --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin jobnode \
    && mkdir -p /data \
    && chown jobnode:jobnode /data
COPY --from=build /opt/jobnode /opt/jobnode
# DATA_DIR holds raft's persisted term and vote: mount a volume there so a restart keeps them.
# A new named volume takes /data's owner from the image, so the node can write to it.
ENV PATH=/opt/jobnode/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    SERVER_HOST=0.0.0.0 \
    LOG_FORMAT=json
WORKDIR /data
VOLUME ["/data"]
USER ${JOBNODE_UID}:${JOBNODE_UID}
# 8080: API and peer traffic (SERVER_PORT); 9464: Prometheus metrics (METRICS_PORT).
EXPOSE 8080 9464
# Healthy only when the node can serve (Redis and MongoDB reachable). `jobnode health` reads the
# node's own settings: it follows SERVER_PORT and uses https (verified against TLS_CA_FILE) with TLS on.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["jobnode", "health", "--timeout", "2"]
# SIGTERM starts a graceful stop (in-flight jobs finish or go back, raft hands over leadership)
# that lasts up to SHUTDOWN_GRACE; give `docker stop` a longer --time than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["jobnode"]
CMD ["serve"]
