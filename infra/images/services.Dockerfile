# The Photocraft services: ONE image, the service chosen by its command:
#   photocraft-gateway, photocraft-scheduler, photocraft-gpu-inference, photocraft-notifier,
#   photocraft-storage-janitor; tools: photocraft-bootstrap (migrations, topics, bucket), photocraft-tenants,
#   photocraft-usage-export (usage to Stripe).
#
# Build with the repository root as context (`make images` does this on a Debian base made here):
#   podman build -f infra/images/services.Dockerfile -t localhost/photocraft:0.14.0 .
#   podman build --build-arg BASE=localhost/photocraft-base:bookworm ...   # no registry needed
# BASE must be Debian/Ubuntu-like with python3 (3.11+) and its venv module.
#
# Runs as uid 10001; writes nothing to the root filesystem (HOME and caches under /tmp, which
# the chart mounts as an emptyDir). Servers bind 127.0.0.1 unless PHOTOCRAFT_HOST (gpu-inference:
# PHOTOCRAFT_METRICS_HOST) says otherwise, e.g. 0.0.0.0 in a pod.
ARG BASE=python:3.11-slim-bookworm

# ---- deps: every service's third-party dependencies, pinned by constraints.txt. Only the
# pyproject.toml files come in, so a code change leaves this stage (and its layer) cached.
FROM ${BASE} AS deps
ENV PATH=/opt/photocraft/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/photocraft/venv
WORKDIR /src
COPY constraints.txt ./
COPY common/pyproject.toml common/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/scheduler/pyproject.toml services/scheduler/
COPY services/gpu-inference/pyproject.toml services/gpu-inference/
COPY services/notifier/pyproject.toml services/notifier/
COPY services/storage-janitor/pyproject.toml services/storage-janitor/
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c 'import sys, tomllib; print("\n".join(sorted({d for f in sys.argv[1:] for d in tomllib.load(open(f, "rb"))["project"]["dependencies"] if not d.startswith("photocraft-")})))' \
        common/pyproject.toml services/*/pyproject.toml > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt -c constraints.txt

# ---- wheels: the protobuf code (git-ignored, made here as `make proto` does) and our wheels.
FROM deps AS wheels
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install grpcio-tools hatchling==1.33.0 -c constraints.txt
COPY proto proto
COPY common common
COPY services services
RUN python -m grpc_tools.protoc -I proto --python_out=common --pyi_out=common proto/photocraft/v1/*.proto \
    && pip wheel --no-deps --no-build-isolation --wheel-dir /wheels ./common ./services/*

# ---- the image: the dependency layer, then our packages (non-editable) and the model registry.
FROM ${BASE}
ENV PATH=/opt/photocraft/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp XDG_CACHE_HOME=/tmp/.cache PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PHOTOCRAFT_MODEL_REGISTRY=/opt/photocraft/models/registry.toml
RUN echo 'photocraft:x:10001:10001:Photocraft:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'photocraft:x:10001:' >> /etc/group
COPY --from=deps /opt/photocraft/venv /opt/photocraft/venv
# (COPY, not RUN --mount=from=: buildah's cache for such a RUN ignores what the mount holds)
COPY --from=wheels /wheels /tmp/wheels
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 pip install --no-deps --no-index --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
COPY models/registry.toml /opt/photocraft/models/registry.toml
USER 10001:10001
WORKDIR /tmp
CMD ["photocraft-gateway"]
