# vitforge on NVIDIA GPUs: CUDA runtime + Python, torch (CUDA build), vitforge[train,serve].
# Multi-stage: wheels are built in the first stage; the final stage has no compilers and runs as
# a non-root user. Build: docker build -t ghcr.io/example/vitforge:0.1.0-gpu .
ARG CUDA=12.8.1
FROM nvidia/cuda:${CUDA}-cudnn-devel-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip wheel setuptools && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
# DeepSpeed builds against the installed torch; its CUDA ops are JIT-built at run time.
RUN pip install --no-build-isolation deepspeed==0.19.8
COPY pyproject.toml README.md /src/
COPY platform /src/platform
RUN pip install "/src[train,serve]"

FROM nvidia/cuda:${CUDA}-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/ray
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 ray && useradd --uid 1000 --gid 1000 --create-home ray
COPY --from=build /opt/venv /opt/venv
COPY platform/vitforge/jobs /opt/vitforge/jobs
COPY serve /opt/vitforge/serve
USER 1000:1000
WORKDIR /home/ray
CMD ["vitforge", "--help"]
