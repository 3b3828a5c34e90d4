# Entry points: `make test` (everything CI runs) and `make demo`. See README.md.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Builds are cached outside the clone so a fresh clone reuses them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/standby-events/target
export KAFKA_LIBS ?= $(HOME)/.cache/standby-events/kafka-libs
export MOTO_SERVER ?= $(CURDIR)/.venv/bin/moto_server
# Named explicitly: the cached target directory may hold a devstack built from another clone.
export DEVSTACK_DIR ?= $(CURDIR)/.stack
export DEVSTACK_MOTO_LAUNCHER ?= $(CURDIR)/tests/devstack/moto_server.py
DEVSTACK := $(CARGO_TARGET_DIR)/debug/devstack

.PHONY: help setup setup-stack build lint fmt test unit-test devstack stack-up stack-down stack-status demo chaos bench invoke ctl lambda-build

help:
	@echo "make setup       install tools: Debian packages, .venv (moto, cfn-lint, sam, cargo-lambda), Kafka jars"
	@echo "make setup-stack only what the local stack and the demo need (no cfn-lint, sam, cargo-lambda)"
	@echo "make test        setup, fmt check, clippy, unit tests, integration tests on the local stack"
	@echo "make unit-test   tests that need no local stack"
	@echo "make stack-up    start Kafka (3 KRaft nodes) and moto on 127.0.0.1; stack-down stops them"
	@echo "make demo        the outage-and-recovery story end to end, then the scale-out story"
	@echo "make chaos       the chaos test with 100,000 events"
	@echo "make bench       benchmarks (republisher drain vs a sequential baseline; planner vs kafka --generate; SDK validation vs a produce round trip, consumer vs a plain consume loop)"
	@echo "make invoke FN=<function> EVENT=events/<fn>/<file>.json   one invocation in the Lambda emulator"
	@echo "make ctl ARGS=\"standby count\"   the operator CLI (standbyctl) against the local stack"
	@echo "make lambda-build  the four functions for Lambda (arm64, release) with cargo-lambda"

setup:
	@tests/setup.sh

setup-stack:
	@tests/setup.sh stack

build:
	cargo build --workspace --all-targets

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	.venv/bin/cfn-lint template.yaml templates/producer-policy.yaml
	@# SAM's own checks run offline: the lint pass, then the transform (it wants a region, no account)
	SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --template template.yaml
	SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline \
	  .venv/bin/sam validate --region us-east-1 --template template.yaml

fmt:
	cargo fmt --all

devstack:
	@cargo build -q -p devstack

stack-up: setup-stack devstack
	$(DEVSTACK) up

stack-down:
	@if [ -x $(DEVSTACK) ]; then $(DEVSTACK) down; fi

stack-status: devstack
	$(DEVSTACK) status

unit-test:
	cargo test --workspace --lib --bins
	cargo test -p wire --test record_roundtrip --test partition_key_vectors

# The stack is started once for the whole run and stopped even when a test fails. The arm64
# Lambda build comes last: it is the slowest step and needs no services.
test: setup lint build
	$(MAKE) --no-print-directory stack-up
	status=0; cargo test --workspace || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; exit $$status
	$(MAKE) --no-print-directory lambda-build

# The operator CLI against the local stack (left running): make ctl ARGS="standby count"
ctl: setup-stack
	@$(MAKE) --no-print-directory stack-up >/dev/null
	@$(DEVSTACK) provision >/dev/null
	@set -a; . "$(DEVSTACK_DIR)/stack.env"; . tests/local-functions.env; set +a; \
	  cargo run -q -p standbyctl -- $(ARGS)

# The four functions as Lambda runs them: arm64, release, built by cargo-lambda (with zig).
# cargo-lambda runs from a fixed path outside the clone: its zig wrappers record the path of the
# binary that wrote them, and the C builds cached in the target directory (librdkafka's CMake
# cache) call those wrappers, so a path inside a clone breaks every later clone once it is gone.
LAMBDA_TOOLS := $(HOME)/.cache/standby-events/bin
LAMBDA_TARGET_DIR := $(CARGO_TARGET_DIR)/arm64
lambda-build: setup
	@mkdir -p "$(LAMBDA_TOOLS)"
	@cmp -s .venv/bin/cargo-lambda "$(LAMBDA_TOOLS)/cargo-lambda" || \
	  install -m 755 .venv/bin/cargo-lambda "$(LAMBDA_TOOLS)/cargo-lambda"
	PATH="$(LAMBDA_TOOLS):$(CURDIR)/.venv/bin:$$PATH" CARGO_TARGET_DIR="$(LAMBDA_TARGET_DIR)" \
	  cargo lambda build --release --arm64 --package republisher --package autoscaler --package rebalancer --package gateway
	@for f in republisher autoscaler rebalancer gateway; do \
	  ls -l "$(LAMBDA_TARGET_DIR)/lambda/$$f/bootstrap" | awk -v f=$$f '{printf "%-12s %5.1f MB\n", f, $$5/1048576}'; done

# The whole story on one machine; stops the stack afterwards unless it was already running.
# The demo builds with the dev profile, sharing `make test`'s artifacts: it waits on Kafka and
# moto, not on CPU, and the release profile (thin LTO, one codegen unit) cost a first run 14
# minutes of compiling. The Lambda binaries keep the release profile (`make lambda-build`).
demo: setup-stack devstack
	@if $(DEVSTACK) env >/dev/null 2>&1; then started=0; else started=1; fi; \
	  $(MAKE) --no-print-directory stack-up >/dev/null; \
	  status=0; cargo run -q -p demo || status=$$?; \
	  if [ $$started = 1 ]; then $(MAKE) --no-print-directory stack-down; fi; exit $$status

# The chaos test at full size (100,000 events); `make test` runs it with 3,000.
chaos: setup-stack
	$(MAKE) --no-print-directory stack-up
	status=0; CHAOS_EVENTS=100000 cargo test -p demo --test chaos -- --nocapture || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; exit $$status

# Benchmarks print ratios against a baseline measured in the same run; not part of `make test`.
bench: setup-stack
	$(MAKE) --no-print-directory stack-up
	status=0; cargo bench -p republisher --bench drain && cargo bench -p rebalancer --bench planner && cargo bench -p sdk --bench sdk && cargo bench -p gateway --bench gateway || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; exit $$status

# One invocation through cargo-lambda's runtime emulator, against the local stack (left running).
invoke: setup stack-up
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=republisher EVENT=events/republisher/stream-insert.json"; exit 2; }
	tests/invoke.sh "$(FN)" "$(EVENT)"
