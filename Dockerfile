# syntax=docker/dockerfile:1
#
# One Dockerfile for all four functions; each gets its own image:
#
#   docker build --build-arg FUNCTION=complete-task -t dev.local/nextup-complete-task:0.1.0 .
#
# The build context must look like the repository root: pyproject.toml, README.md,
# functions/ and infra/image/constraints.txt. `faas-cli build` assembles exactly that in
# build/<function>/ from stack.yml's `configuration.copy`, so both ways build the same image.
#
# Stage 1 installs the `nextup` package and its dependencies into a virtualenv, wheels only
# (no compiler needed or present). Stage 2 is a fresh slim base with that virtualenv, the
# function's entry point and an unprivileged user; nothing to build anything is carried over.
# The process is functions-framework (ASGI: gunicorn with a uvicorn worker) on port 8080,
# which serves the health routes both platforms probe: /health/liveness and
# /health/readiness (Knative), /_/health and /_/ready (OpenFaaS watchdog paths).

# Keep equal to PYTHON_IMAGE in infra/versions.env (a test checks it).
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/nextup
COPY infra/image/constraints.txt ./constraints.txt
COPY pyproject.toml README.md ./
COPY functions/nextup ./functions/nextup
RUN /opt/nextup/bin/pip install --only-binary=:all: --constraint constraints.txt . \
    && /opt/nextup/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS runtime
ARG FUNCTION
RUN test -n "${FUNCTION}" \
        || { echo "build with --build-arg FUNCTION=<complete-task|schedule-next|send-reminder|health>" >&2; exit 1; } \
    && groupadd --system --gid 10001 nextup \
    && useradd --system --uid 10001 --gid nextup --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nextup
COPY --from=build /opt/nextup /opt/nextup
COPY functions/${FUNCTION}/main.py /opt/function/main.py
ENV PATH=/opt/nextup/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title="nextup-${FUNCTION}" \
      org.opencontainers.image.description="nextup ${FUNCTION}: a CloudEvents function (functions-framework, port 8080)" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /opt/function
USER 10001:10001
EXPOSE 8080
CMD ["functions-framework", "--source", "/opt/function/main.py", "--target", "handle", "--port", "8080"]
