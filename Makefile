# Two commands for a newcomer: `make run` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV        := .venv
PY          := $(VENV)/bin/python
MOTO_PIN    := moto[server]==5.2.5
CFN_LINT_PIN:= cfn-lint==1.58.0
RUN_DIR     := .run
MOTO_PORT   ?= 5055

.PHONY: run test sim build lint venv moto-start moto-stop clean bench

$(VENV)/.installed: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet '$(MOTO_PIN)' '$(CFN_LINT_PIN)'
	touch $@

venv: $(VENV)/.installed

## run: the main job against the simulators, on the embedded (SQLite) store
run:
	scripts/run-demo.sh

## sim: start both simulators on their default ports with the demo scenario (Ctrl-C stops)
sim:
	cargo run --quiet -p sophos-cw-sim -- --scenario sim/fixtures/demo.json

## test: every test, against moto (started here) and the in-process simulators
test: venv
	mkdir -p $(RUN_DIR)
	$(VENV)/bin/moto_server -H 127.0.0.1 -p $(MOTO_PORT) > $(RUN_DIR)/moto.log 2>&1 &
	echo $$! > $(RUN_DIR)/moto.pid
	trap 'kill $$(cat $(RUN_DIR)/moto.pid) 2>/dev/null || true' EXIT
	for i in $$(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$(MOTO_PORT)/moto-api/ && break; sleep 0.1; done
	export AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT) AWS_REGION=us-east-1 \
	       AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
	cargo test --workspace --all-targets 2>&1

## build: release binaries
build:
	cargo build --release --workspace

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(RUN_DIR) $(VENV)
