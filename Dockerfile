# tunewire images: `server` (the optimiser, CPU PyTorch) and `trainer` (a training worker).
#
#   bash deploy/docker/build_wheels.sh                 # .wheels/cp311: dependency wheels, once
#   docker build --network host --target server -t tunewire-server .
#   docker build --network host --target trainer -t tunewire-trainer \
#       --build-arg WHEELS=.wheels/cuda .      # wheels for the trainer base's Python
#
# Python packages come only from the wheel folder in the build context (no index), so a build
# needs no network and installs exactly the versions the tests ran with. Each image is a base
# with Python, a venv of the dependencies (one big layer that source changes leave alone),
# and tunewire built from source on top. Works with the legacy builder and with BuildKit.

# Bases: any image with Python >= 3.10 (or with apt to install it). `tunewire-base:bookworm`
# (deploy/docker/make_base_image.sh) needs no registry.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG TRAINER_BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
# The wheel folder (deploy/docker/build_wheels.sh) for the Python of the image's base, and
# pip's index options: `--no-index` keeps the build offline; e.g. "--extra-index-url URL"
# lets pip fetch what the folder lacks.
ARG WHEELS=.wheels/cp311
ARG PIP_INDEX_OPTIONS=--no-index

# ---------------------------------------------------------------- server
FROM ${BASE_IMAGE} AS server-base
# CUDA and other bare images have no Python: prepare_base.sh installs the distribution's.
COPY deploy/docker/prepare_base.sh /tmp/
RUN sh /tmp/prepare_base.sh && rm /tmp/prepare_base.sh
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/tunewire/bin:/opt/venv/bin:$PATH

FROM server-base AS server-deps
ARG WHEELS
ARG PIP_INDEX_OPTIONS
COPY ${WHEELS}/ /wheels/
COPY deploy/docker/install_deps.sh /tmp/
RUN sh /tmp/install_deps.sh "$PIP_INDEX_OPTIONS"

# tunewire itself, from source: only this stage and one small layer change with the code.
FROM server-deps AS server-build
COPY pyproject.toml README.md /src/
COPY protos/ /src/protos/
COPY server/ /src/server/
COPY client/ /src/client/
COPY integrations/ /src/integrations/
COPY trainer/ /src/trainer/
COPY dashboard/ /src/dashboard/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --no-deps --no-build-isolation --target /opt/tunewire /src \
 && /opt/venv/bin/python -c "import tunewire.server.app, tunewire.trainer.cli" \
 && test -s /opt/tunewire/tunewire/dashboard/static/plotly.min.js

# The runtime venv: no pip, setuptools, wheels, test suites or C++ headers.
FROM server-deps AS server-runtime
COPY deploy/docker/slim_venv.sh /tmp/
RUN sh /tmp/slim_venv.sh /opt/venv

FROM server-base AS server
COPY --from=server-runtime /opt/venv /opt/venv
COPY --from=server-build /opt/tunewire /opt/tunewire
# Everything the code imports, loaded from the slimmed venv: a broken image fails here.
RUN python3 -c "import tunewire.server.app as a, tunewire.trainer.cli, tunewire.dashboard.app; a.preload_algorithms()"
COPY deploy/docker/healthcheck.py /opt/tunewire/bin/tunewire-healthcheck
# A container listens on every interface of its own network: publishing a port is the
# choice. Without TUNEWIRE_TOKEN the server refuses to start, unless
# TUNEWIRE_ALLOW_UNAUTHENTICATED=true says the network is trusted.
ENV TUNEWIRE_STORAGE=sqlite:////data/tunewire.db \
    TUNEWIRE_HOST=0.0.0.0 \
    TUNEWIRE_PORT=50051 \
    TUNEWIRE_METRICS_HOST=0.0.0.0 \
    TUNEWIRE_METRICS_PORT=9090 \
    PROMETHEUS_DISABLE_CREATED_SERIES=True
USER tunewire
WORKDIR /data
VOLUME ["/data"]
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/tunewire/bin/tunewire-healthcheck"]
ENTRYPOINT ["tunewire", "serve"]

# ---------------------------------------------------------------- trainer
# The same steps on the trainer's base (a CUDA runtime for GPU machines). Its wheel folder
# must match that base's Python and carry the torch build wanted there (CUDA for GPUs).
# With the same base and WHEELS as the server, every layer below is the server's, cached.
FROM ${TRAINER_BASE_IMAGE} AS trainer-base
COPY deploy/docker/prepare_base.sh /tmp/
RUN sh /tmp/prepare_base.sh && rm /tmp/prepare_base.sh
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/tunewire/bin:/opt/venv/bin:$PATH

FROM trainer-base AS trainer-deps
ARG WHEELS
ARG PIP_INDEX_OPTIONS
COPY ${WHEELS}/ /wheels/
COPY deploy/docker/install_deps.sh /tmp/
RUN sh /tmp/install_deps.sh "$PIP_INDEX_OPTIONS"

FROM trainer-deps AS trainer-build
COPY pyproject.toml README.md /src/
COPY protos/ /src/protos/
COPY server/ /src/server/
COPY client/ /src/client/
COPY integrations/ /src/integrations/
COPY trainer/ /src/trainer/
COPY dashboard/ /src/dashboard/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --no-deps --no-build-isolation --target /opt/tunewire /src \
 && /opt/venv/bin/python -c "import tunewire.server.app, tunewire.trainer.cli"

FROM trainer-deps AS trainer-runtime
COPY deploy/docker/slim_venv.sh /tmp/
RUN sh /tmp/slim_venv.sh /opt/venv

FROM trainer-base AS trainer
COPY --from=trainer-runtime /opt/venv /opt/venv
COPY --from=trainer-build /opt/tunewire /opt/tunewire
# Everything the code imports, loaded from the slimmed venv: a broken image fails here.
RUN python3 -c "import tunewire.server.app as a, tunewire.trainer.cli; a.preload_algorithms()"
USER tunewire
WORKDIR /home/tunewire
ENTRYPOINT ["tunewire", "train"]
