# ssm-metarl in a container: the same two commands as on a fresh machine.
#   docker build -t ssm-metarl .                                 (CPU torch)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t ssm-metarl:cuda .
#   docker run --rm ssm-metarl                                   (the demo: make demo's job)
#   docker run --rm -p 127.0.0.1:7860:7860 ssm-metarl ssm-metarl app --host 0.0.0.0
FROM python:3.11-slim

# where pip takes torch from: the CPU wheels by default; a CUDA index (see above) for the GPU image
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    GRADIO_ANALYTICS_ENABLED=False

# the renderers' system libraries, and the C compiler that builds the native scan kernel on first use
# (ssm_metarl/models/native.py); Debian's versions of the base image, which moves with its security updates
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/ssm-metarl

RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY --chown=1000:1000 pyproject.toml README.md LICENSE ./
COPY --chown=1000:1000 ssm_metarl ./ssm_metarl
# the package itself, its versions bounded by pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[app,rsi]"

USER 1000
EXPOSE 7860
CMD ["ssm-metarl", "demo"]
