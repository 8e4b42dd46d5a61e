# Everything a user or CI runs goes through here. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BROKER := kafka/broker.sh
DETECTORS ?= 1
LEGIT_TOPIC ?= streaming.transactions.legit
FRAUD_TOPIC ?= streaming.transactions.fraud
DEAD_LETTER_TOPIC ?= streaming.transactions.invalid
PYTEST_ARGS ?=
# The detectors' rules file for `make run` (docs/rules.md); unset: FRAUD_AMOUNT_THRESHOLD, VELOCITY_*.
RULES_FILE ?=
# SECURE=1: the local broker with TLS, SCRAM users and ACLs (kafka/broker.sh up --secure), and
# the services logging in with their own credentials (docs/security.md).
SECURE ?=
SECURE_FLAG := $(if $(filter 1 yes true,$(SECURE)),--secure)
# BROKERS=3: a KRaft cluster of three nodes (broker.sh up --nodes; docs/cluster.md) on
# 9092/9094/9096, every topic at replication factor 3; the services get all three addresses.
BROKERS ?= 1
ifneq ($(BROKERS)$(origin KAFKA_BROKER_URL),1undefined)
ifeq ($(origin KAFKA_BROKER_URL),undefined)
export KAFKA_BROKER_URL := $(shell $(BROKER) bootstrap --nodes $(BROKERS))
endif
endif

.PHONY: help install jars kafka-up kafka-down kafka-clean consume consume-legit consume-fraud backtest \
	consume-invalid run watch web bench test test-unit test-docker test-cluster clean-docker lint typecheck clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed ## create .venv with the pinned packages

jars: ## fetch the Kafka jars of kafka/jars.lock from Maven Central, verified (once)
	@$(BROKER) jars

kafka-up: install jars ## start the local broker on localhost:9092 (no-op if it runs; SECURE=1: TLS+SCRAM+ACLs; BROKERS=3: a cluster)
	@$(BROKER) up $(SECURE_FLAG) $(if $(filter-out 1,$(BROKERS)),--nodes $(BROKERS))

kafka-down: ## stop the local broker (or every node of the cluster), keep its data
	@$(BROKER) down

kafka-clean: ## stop the local broker and wipe its data
	@$(BROKER) clean

.PHONY: docker-secrets
docker-secrets: ## CA, broker certificate and passwords for docker-compose.*.secure.yml
	@$(BROKER) secrets --docker

consume: install jars ## print TOPIC from the beginning (MAX=n to stop after n records)
	@if [[ -z "$(TOPIC)" ]]; then echo "usage: make consume TOPIC=<name> [MAX=<n>]" >&2; exit 2; fi
	@$(BROKER) consume "$(TOPIC)" $(MAX)

consume-legit: install jars ## print the legit topic
	@$(BROKER) consume "$(LEGIT_TOPIC)" $(MAX)

consume-fraud: install jars ## print the fraud topic
	@$(BROKER) consume "$(FRAUD_TOPIC)" $(MAX)

consume-invalid: install jars ## print the dead-letter topic
	@$(BROKER) consume "$(DEAD_LETTER_TOPIC)" $(MAX)

run: install kafka-up ## broker + generator + detector(s) + the dashboard page (printed); RULES_FILE=path: the rules; Ctrl-C stops all
	@DETECTORS=$(DETECTORS) SECURE=$(if $(SECURE_FLAG),1,) PYTHON=$(PY) RULES_FILE=$(RULES_FILE) \
		scripts/run-local.sh

backtest: install ## replay the input topic through a rules file, report precision and recall (RULES=path, SINCE=10m, JSON=1)
	@if [[ -z "$(RULES)" ]]; then echo "usage: make backtest RULES=<rules file> [SINCE=<when>] [JSON=1]" >&2; exit 2; fi
	@$(PY) -m detector.backtest --rules "$(RULES)" $(if $(SINCE),--since "$(SINCE)",) $(if $(filter-out 0,$(JSON)),--json,)

watch: install ## live dashboard of the topics and the detector's lag; q quits
	@$(PY) -m dashboard

web: install ## the live dashboard page on http://127.0.0.1:8088 (DASHBOARD_HOST, DASHBOARD_PORT)
	@$(PY) -m dashboard --web

# The bench's reference rows (Quix Streams, confluent-kafka; bench/reference.py) run in a venv of
# their own inside .venv: quixstreams caps pydantic below requirements.txt's pins. The quick run
# skips them, so QUICK=1 does not install it.
BENCH_VENV := $(VENV)/bench-reference
$(BENCH_VENV)/.installed: bench/requirements.txt | $(VENV)/.installed
	$(PY) -m venv --clear $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

# A full run also writes its report into docs/performance.md's generated section (--docs).
bench: install jars $(if $(filter-out 0,$(QUICK)),,$(BENCH_VENV)/.installed) ## throughput, latency, memory on each client, on a broker of its own (QUICK=1: a few min)
	$(PY) -m bench $(if $(filter-out 0,$(QUICK)),--quick,--docs)

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy --strict on the services, the bench and the tests
	$(VENV)/bin/mypy

test-unit: install ## the fast tier: no broker
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test: install jars lint typecheck ## everything: lint, types, unit, integration, compose
	$(PY) -m pytest $(PYTEST_ARGS)

# The Docker tier: scripts/docker-tier.sh prepares (once, cached) the engine, the pinned Compose
# CLI and, where no registry is reachable, a stand-in of the base image; it prints a file of
# exports (DOCKER_HOST, DOCKER_CONFIG, ...) for the tests. docs/docker.md "The Docker tier".
test-docker: install jars ## the Docker tier for real: images built, containers run (~8 min cold)
	@env_file=$$(scripts/docker-tier.sh setup) && source "$$env_file" && \
		$(PY) -m pytest -m docker $(PYTEST_ARGS)

# The cluster tier: a three-node KRaft cluster from the jars, brokers killed under the running
# stack (tests/cluster; docs/cluster.md). Skipped by `make test`: three JVMs and minutes of
# failovers. The tests' own kafka-python clients leave sockets to killed brokers unclosed; those
# surface when garbage-collected, after the test that made them, so they are ignored here.
test-cluster: install jars ## the cluster tier: three brokers, killed and restarted (~6 min)
	FRAUD_CLUSTER_TIER=1 $(PY) -m pytest -m cluster tests/cluster \
		-W ignore::ResourceWarning -W ignore::pytest.PytestUnraisableExceptionWarning $(PYTEST_ARGS)

clean-docker: ## stop the Docker tier's podman service, remove its cache and images
	@scripts/docker-tier.sh clean

clean: ## remove the venv and caches (not the broker's data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
