# ssm-metarl in a container: the same two commands as on a fresh machine.
#   docker build -t ssm-metarl .                                 (CPU torch)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t ssm-metarl:cuda .
#   docker run --rm ssm-metarl                                   (the demo: make demo's job)
#   docker run --rm -p 127.0.0.1:7860:7860 ssm-metarl ssm-metarl app --host 0.0.0.0
# Without an image registry or download.pytorch.org (scripts/container_check.sh, `make container-check`):
#   BASE: a local image with python3 and python3-venv (Debian bookworm made with debootstrap, python 3.11)
#   TORCH_WHEEL: a torch wheel mounted into the build, e.g.
#   podman build -v /opt/wheels:/wheels:ro --build-arg BASE=localhost/debian-bookworm-python \
#     --build-arg TORCH_WHEEL=/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl -t ssm-metarl .
ARG BASE=python:3.11-slim
FROM ${BASE}

# where pip takes torch from: the CPU wheels by default; a CUDA index (see above) for the GPU image;
# TORCH_WHEEL, when set, is a wheel file to install instead (its dependencies come from PyPI)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_WHEEL=

# the package lives in a virtual environment (/opt/venv, first on PATH): the same on python:3.11-slim and on
# Debian's python3, whose system pip refuses to install (PEP 668)
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    GRADIO_ANALYTICS_ENABLED=False \
    PATH=/opt/venv/bin:$PATH

# the renderers' system libraries, and the C compiler that builds the native scan kernel on first use
# (ssm_metarl/models/native.py); Debian's versions of the base image, which moves with its security updates
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# the working directory belongs to the user the image runs as (the demo writes runs/ there)
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /home/app/ssm-metarl \
    && chown 1000:1000 /home/app/ssm-metarl \
    && python3 -m venv /opt/venv
WORKDIR /home/app/ssm-metarl

# torch's version: TORCH_VERSION from the index, or the one in the wheel's file name
# hadolint ignore=DL3013
RUN if [ -n "${TORCH_WHEEL}" ]; then pip install "${TORCH_WHEEL}"; \
    else pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"; fi
COPY --chown=1000:1000 pyproject.toml README.md LICENSE ./
COPY --chown=1000:1000 ssm_metarl ./ssm_metarl
# the package itself, its versions bounded by pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[app,rsi]"

USER 1000
EXPOSE 7860
# the command runs as PID 1, which ignores SIGTERM: `docker stop` sends SIGINT, which Python turns into
# KeyboardInterrupt, so the app and the demo stop at once instead of after the stop timeout's SIGKILL
STOPSIGNAL SIGINT
CMD ["ssm-metarl", "demo"]
