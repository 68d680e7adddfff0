# syntax=docker/dockerfile:1
# titand images. Reviewed line by line, never built here (no Docker engine on the development machines).
#
#   docker build -t titand:cpu .                                   # CPU: Debian 12, the README's scripts
#   docker build --build-arg VARIANT=gpu -t titand:gpu .           # GPU: CUDA base + the CUDA torch wheel
#   docker run -p 50051:50051 -p 9464:9464 titand:cpu              # bundled SmolLM2 (+ TPTT adapter)
#   docker run --gpus all -p 50051:50051 titand:gpu                # needs the NVIDIA container toolkit
#   docker run -v /srv/models:/models:ro titand:cpu --model=/models/my.gguf   # a mounted model folder
#
# LibTorch comes from the torch wheel in the build's .venv (scripts/setup.sh), in both variants: the CPU
# image installs the CPU-only wheel (TITAND_TORCH_INDEX_URL, PyTorch's CPU index; PyPI's default Linux wheel
# is the larger CUDA build, which also runs on CPUs), the GPU image PyPI's CUDA wheel. The runtime stages
# copy the wheel's libraries (torch/lib, and the nvidia-* wheels for CUDA) into /opt/titand/lib/site-packages,
# where the binaries' RPATH ($ORIGIN/../lib/site-packages/torch/lib) finds them: no LD_LIBRARY_PATH.
#
# Stages: build-cpu / build-gpu compile; runtime-cpu / runtime-gpu hold only the binaries, the bundled
# model and adapter and the shared libraries the binaries link; `final` (selected by VARIANT) adds the
# non-root user, ports, health check and entrypoint. BuildKit builds only the stages `final` needs.
ARG VARIANT=cpu
ARG DEBIAN_IMAGE=debian:bookworm
ARG DEBIAN_RUNTIME_IMAGE=debian:bookworm-slim
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
# The CUDA base's toolkit must match the CUDA version of the torch wheel (torch's CMake package checks
# nvcc against it); Ubuntu 24.04 has the same gRPC 1.51 / Abseil 20220623 / Protobuf 3.21 as Debian 12.
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13.0.0-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------------
# CPU build: exactly the README's set-up. scripts/setup.sh installs the Debian packages, the venv (with the
# CPU torch wheel) and the bundled model; scripts/build.sh configures and builds everything into build/ (it
# re-runs setup.sh, which is idempotent). CI on the development machines runs these same two scripts.
FROM ${DEBIAN_IMAGE} AS build-cpu
ARG TORCH_CPU_INDEX_URL
ENV DEBIAN_FRONTEND=noninteractive TITAND_TORCH_INDEX_URL=${TORCH_CPU_INDEX_URL}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN bash scripts/setup.sh
RUN bash scripts/build.sh
RUN bash deploy/docker/collect.sh /out

# ---------------------------------------------------------------------------------------------------
# GPU build: the same scripts on a CUDA devel base (nvcc + headers, which torch's CMake package needs for a
# CUDA wheel); setup.sh installs PyPI's torch wheel (the CUDA build) and the Ubuntu packages of the same
# names. TORCH_CUDA_ARCH_LIST names the GPUs to build for instead of probing one (none at build time).
FROM ${CUDA_DEVEL_IMAGE} AS build-gpu
ENV DEBIAN_FRONTEND=noninteractive TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN bash scripts/setup.sh
RUN bash scripts/build.sh
RUN bash deploy/docker/collect.sh /out

# ---------------------------------------------------------------------------------------------------
FROM ${DEBIAN_RUNTIME_IMAGE} AS runtime-cpu
COPY --from=build-cpu /out /opt/titand
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(cat /opt/titand/runtime-packages.txt) && rm -rf /var/lib/apt/lists/*

# The CUDA runtime base; the driver comes from the host (NVIDIA container toolkit), cuBLAS/cuDNN/NCCL from
# the nvidia-* wheels copied with torch.
FROM ${CUDA_RUNTIME_IMAGE} AS runtime-gpu
COPY --from=build-gpu /out /opt/titand
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(cat /opt/titand/runtime-packages.txt) && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------------
FROM runtime-${VARIANT} AS final
COPY deploy/docker/entrypoint.sh /opt/titand/bin/entrypoint.sh
RUN groupadd --system --gid 10001 titand \
 && useradd --system --uid 10001 --gid titand --home-dir /var/lib/titand --shell /usr/sbin/nologin titand \
 && mkdir -p /var/lib/titand/sessions \
 && chown -R titand:titand /var/lib/titand \
 && chmod 0755 /opt/titand/bin/entrypoint.sh
ENV PATH=/opt/titand/bin:$PATH \
    TITAND_MODELS_DIR=/opt/titand/models \
    TITAND_ADAPTER_DIR=/opt/titand/adapters/smollm2-135m-tptt
USER 10001:10001
WORKDIR /var/lib/titand
VOLUME ["/var/lib/titand/sessions"]
# 50051: gRPC (titand.v1.Inference, grpc.health.v1.Health, reflection); 9464: Prometheus /metrics.
EXPOSE 50051 9464
# gRPC health protocol (service ""): NOT_SERVING until the model is loaded and warmed up, and while draining.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 CMD ["titanctl", "--addr=127.0.0.1:50051", "health"]
# SIGTERM drains: health NOT_SERVING, queued and running requests finish, sessions are snapshotted.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/titand/bin/entrypoint.sh"]
