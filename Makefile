# Two commands for a newcomer: `make run` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV        := .venv
PY          := $(VENV)/bin/python
MOTO_PIN    := moto[server]==5.2.5
# A real OpenID Connect provider (on Authlib) for the console's sign-in tests.
OIDC_MOCK_PIN := oidc-provider-mock==0.3.4
OIDC_PORT   ?= 9455
CFN_LINT_PIN:= cfn-lint==1.58.0
RUN_DIR     := .run
MOTO_PORT   ?= 5055
# The browser tests' Chromium and chromedriver (tests/support/browser.rs reads these).
CHROMIUM     ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
export CHROMIUM CHROMEDRIVER

.PHONY: run test sim console build lint venv moto-start moto-stop clean bench deploy check-schedule invoke-local lint-infra browser-deps

$(VENV)/.installed: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet '$(MOTO_PIN)' '$(OIDC_MOCK_PIN)' '$(CFN_LINT_PIN)' 'cargo-lambda==1.9.2' 'ziglang==0.17.1'
	touch $@

venv: $(VENV)/.installed

## browser-deps: Chromium and chromedriver for the browser tests (Debian's chromium, chromium-driver), installed when missing
browser-deps:
	@if [ -x '$(CHROMIUM)' ] && [ -x '$(CHROMEDRIVER)' ]; then exit 0; fi
	echo "Installing Chromium and chromedriver for the browser tests (apt-get install chromium chromium-driver)..."
	apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
	if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then apt=(sudo "$${apt[@]}"); fi
	if ! { "$${apt[@]}" update && "$${apt[@]}" install -y --no-install-recommends chromium chromium-driver; }; then
	  echo "error: the browser tests need Chromium and chromedriver, and installing them failed." >&2
	  echo "Install Debian's packages 'chromium' and 'chromium-driver' as root:" >&2
	  echo "  apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver" >&2
	  echo "(or set CHROMIUM and CHROMEDRIVER to a matching pair), then run 'make browser-deps' again." >&2
	  exit 1
	fi
	for f in '$(CHROMIUM)' '$(CHROMEDRIVER)'; do
	  [ -x "$$f" ] || { echo "error: $$f is still missing after the install: set CHROMIUM / CHROMEDRIVER to where they are" >&2; exit 1; }
	done

## run: the main job against the simulators, on the embedded (SQLite) store
run:
	scripts/run-demo.sh

## console: the demo scenario synced once on SQLite, then the operator console on http://127.0.0.1:8080/console/ (Ctrl-C stops everything)
console:
	scripts/console.sh

## sim: start both simulators on their default ports with the demo scenario (Ctrl-C stops)
sim:
	cargo run --quiet -p sophos-cw-sim -- --scenario sim/fixtures/demo.json

## test: every test, against moto (started here) and the in-process simulators, and cfn-lint on the template
test: venv lint-infra browser-deps
	mkdir -p $(RUN_DIR)
	$(VENV)/bin/moto_server -H 127.0.0.1 -p $(MOTO_PORT) > $(RUN_DIR)/moto.log 2>&1 &
	echo $$! > $(RUN_DIR)/moto.pid
	$(VENV)/bin/oidc-provider-mock --port $(OIDC_PORT) --require-nonce true > $(RUN_DIR)/oidc.log 2>&1 &
	echo $$! > $(RUN_DIR)/oidc.pid
	trap 'kill $$(cat $(RUN_DIR)/moto.pid) $$(cat $(RUN_DIR)/oidc.pid) 2>/dev/null || true' EXIT
	for i in $$(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$(MOTO_PORT)/moto-api/ && break; sleep 0.1; done
	for i in $$(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:$(OIDC_PORT)/.well-known/openid-configuration && break; sleep 0.1; done
	export AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT) AWS_REGION=us-east-1 \
	       AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	       OIDC_PROVIDER_URL=http://127.0.0.1:$(OIDC_PORT)
	cargo test --workspace --all-targets --features sophos-cw-sync/test-hooks 2>&1

# The Lambda package: cargo-lambda and zig (its cross linker) come from .venv.
LAMBDA_BIN    := sophos-cw-sync
LAMBDA_TARGET := aarch64-unknown-linux-gnu
LAMBDA_OUT    := target/lambda/$(LAMBDA_BIN)/bootstrap
VENV_PATH     := $(CURDIR)/$(VENV)/bin:$$PATH
STACK         ?= sophos-cw-sync
REGION        ?=
ALARM_EMAIL   ?=
NOTIFY_EMAIL  ?=
SCHEDULE      ?=
SCHEDULE_EXPRESSION ?=
EVENT         ?= schedule.json
INVOKE_PORT   ?= 9100
LOCAL_MOTO_PORT ?= 5056
SIM_SOPHOS_ADDR ?= 127.0.0.1:9000
SIM_CW_ADDR     ?= 127.0.0.1:9001

## build: the Lambda package, target/lambda/sophos-cw-sync/bootstrap (linux arm64, for infra/template.yaml)
build: venv
	if ! rustup target list --installed 2>/dev/null | grep -qx '$(LAMBDA_TARGET)'; then
	  echo "Adding the Rust standard library for $(LAMBDA_TARGET) (rustup target add)..."
	  rustup target add $(LAMBDA_TARGET) || {
	    echo "error: cannot cross-compile to arm64: the Rust standard library for $(LAMBDA_TARGET)" >&2
	    echo "is not installed and rustup could not download it. Run 'rustup target add $(LAMBDA_TARGET)'" >&2
	    echo "on a machine that reaches static.rust-lang.org, then 'make build' again." >&2
	    exit 1; }
	fi
	# --disable-optimizations: use Cargo.toml's release profile. cargo-lambda's own
	# defaults add panic="abort", which would turn the API's caught panics (answered
	# 500) into a crashed runtime.
	PATH="$(VENV_PATH)" cargo lambda build --release --arm64 --disable-optimizations --bin $(LAMBDA_BIN)
	file $(LAMBDA_OUT) 2>/dev/null || ls -l $(LAMBDA_OUT)

# deploy needs the AWS SAM CLI: say so before building anything.
ifneq ($(filter deploy,$(MAKECMDGOALS)),)
ifeq ($(shell command -v sam 2>/dev/null),)
$(error the AWS SAM CLI ('sam') is not installed: install it with 'pip install aws-sam-cli' (or AWS's installer), set AWS credentials, then run 'make deploy' again (docs/deploy.md))
endif
endif

## deploy: build, then create or update the CloudFormation stack (STACK, REGION, ALARM_EMAIL, NOTIFY_EMAIL; SCHEDULE=on|off, the schedule, off on a first deploy and unchanged when not given; SCHEDULE_EXPRESSION, its cron/rate; docs/deploy.md)
deploy: check-schedule build
	params=()
	if [ -n "$(ALARM_EMAIL)" ]; then params+=("AlarmEmail=$(ALARM_EMAIL)"); fi
	if [ "$(SCHEDULE)" = on ]; then params+=("ScheduleEnabled=true"); fi
	if [ "$(SCHEDULE)" = off ]; then params+=("ScheduleEnabled=false"); fi
	if [ -n "$(SCHEDULE_EXPRESSION)" ]; then params+=("ScheduleExpression=$(SCHEDULE_EXPRESSION)"); fi
	if [ -n "$(NOTIFY_EMAIL)" ]; then params+=("NotifyEmail=$(NOTIFY_EMAIL)"); fi
	extra=()
	if [ $${#params[@]} -gt 0 ]; then extra+=(--parameter-overrides "$${params[@]}"); fi
	if [ -n "$(REGION)" ]; then extra+=(--region "$(REGION)"); fi
	sam deploy --template-file infra/template.yaml --stack-name '$(STACK)' \
	  --capabilities CAPABILITY_IAM --resolve-s3 --no-fail-on-empty-changeset "$${extra[@]}"
	aws_region=()
	if [ -n "$(REGION)" ]; then aws_region=(--region "$(REGION)"); fi
	sam list stack-outputs --stack-name '$(STACK)' "$${aws_region[@]}" --output table || true

# SCHEDULE used to be the expression: say so before building rather than deploy a
# stack whose schedule the operator did not mean to change.
check-schedule:
	@case '$(SCHEDULE)' in
	  ''|on|off) ;;
	  *) echo "error: SCHEDULE is 'on' or 'off' (turns the schedule on or off), not '$(SCHEDULE)'; give a cron or rate expression as SCHEDULE_EXPRESSION, e.g. make deploy SCHEDULE=on SCHEDULE_EXPRESSION='cron(0 6 * * ? *)'" >&2; exit 1 ;;
	esac

## invoke-local: the function under `cargo lambda watch` against the simulators and moto; EVENT=file under events/ (several: "a.json b.json")
invoke-local: venv
	@mkdir -p $(RUN_DIR)
	pids=()
	trap 'for p in "$${pids[@]}"; do kill -- -$$p 2>/dev/null || kill $$p 2>/dev/null || true; done' EXIT
	wait_for() { for _ in $$(seq 1 $$2); do curl -s -o /dev/null "$$1" && return 0; sleep 0.2; done; echo "error: nothing answers at $$1" >&2; return 1; }
	# 1. The simulators (Sophos :9000, ConnectWise :9001), unless `make sim` already runs them.
	if ! curl -s -o /dev/null http://$(SIM_CW_ADDR)/_sim/counters; then
	  cargo build --quiet -p sophos-cw-sim
	  setsid target/debug/sophos-cw-sim --scenario sim/fixtures/demo.json \
	    --sophos-addr $(SIM_SOPHOS_ADDR) --cw-addr $(SIM_CW_ADDR) > $(RUN_DIR)/invoke-sim.log 2>&1 &
	  pids+=($$!)
	  wait_for http://$(SIM_CW_ADDR)/_sim/counters 100
	fi
	# 2. moto (DynamoDB, Secrets Manager) on its own port, with the table and the secret.
	setsid $(VENV)/bin/moto_server -H 127.0.0.1 -p $(LOCAL_MOTO_PORT) > $(RUN_DIR)/invoke-moto.log 2>&1 &
	pids+=($$!)
	wait_for http://127.0.0.1:$(LOCAL_MOTO_PORT)/moto-api/ 100
	export AWS_ENDPOINT_URL=http://127.0.0.1:$(LOCAL_MOTO_PORT) AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
	       AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
	# (make strips the indentation of ONESHELL recipe lines: no Python blocks here)
	$(PY) - <<'EOF'
	import json, boto3
	ddb, sm = boto3.client("dynamodb"), boto3.client("secretsmanager")
	table_exists = "sophos-cw-sync" in ddb.list_tables()["TableNames"]
	table_exists or ddb.create_table(TableName="sophos-cw-sync", BillingMode="PAY_PER_REQUEST",
	  AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
	  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
	table_exists or ddb.update_time_to_live(TableName="sophos-cw-sync",
	  TimeToLiveSpecification={"AttributeName": "ttl", "Enabled": True})
	# The demo scenario's credentials (simulator only) and the demo webhook token of events/.
	secret = json.dumps({
	  "sophos": {"clientId": "sim-sophos-client", "clientSecret": "sim-sophos-secret"},
	  "connectwise": {"site": "http://$(SIM_CW_ADDR)", "companyId": "simmsp", "publicKey": "sim-public-key",
	                  "privateKey": "sim-private-key", "clientId": "3f1c2a4e-8d9b-4c7a-b6e5-0a1b2c3d4e5f"},
	  "webhookToken": "demo-webhook-token", "consoleToken": "demo-console-password"})
	secret_exists = any(s["Name"] == "sophos-cw-sync" for s in sm.list_secrets()["SecretList"])
	(sm.put_secret_value(SecretId="sophos-cw-sync", SecretString=secret) if secret_exists
	  else sm.create_secret(Name="sophos-cw-sync", SecretString=secret))
	EOF
	# 3. The function, as Lambda would run it (watch sets AWS_LAMBDA_RUNTIME_API).
	#    Self-invocations go to watch's Invoke API, which answers every invoke only when
	#    the function has (it ignores InvocationType=Event) and runs one instance per
	#    function name: so they name watch's default function `_` (a second instance of
	#    the same binary), not `sophos-cw-sync`, which is busy answering the request.
	setsid env PATH="$(VENV_PATH)" cargo lambda watch --bin $(LAMBDA_BIN) \
	  --invoke-address 127.0.0.1 --invoke-port $(INVOKE_PORT) --ignore-changes --timeout 900 \
	  --env-var SYNC_STORE=dynamodb:sophos-cw-sync \
	  --env-var SYNC_SECRETS=secretsmanager:sophos-cw-sync \
	  --env-var SOPHOS_ID_URL=http://$(SIM_SOPHOS_ADDR) --env-var SOPHOS_API_URL=http://$(SIM_SOPHOS_ADDR) \
	  --env-var SYNC_FUNCTION_NAME=_ \
	  --env-var AWS_ENDPOINT_URL=$$AWS_ENDPOINT_URL \
	  --env-var AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$(INVOKE_PORT) \
	  --env-var AWS_REGION=us-east-1 --env-var AWS_ACCESS_KEY_ID=testing --env-var AWS_SECRET_ACCESS_KEY=testing \
	  --env-var AWS_LAMBDA_LOG_LEVEL=INFO --env-var AWS_LAMBDA_LOG_FORMAT=JSON \
	  > $(RUN_DIR)/invoke-watch.log 2>&1 &
	pids+=($$!)
	# (a port check: any HTTP path there would invoke the function)
	for _ in $$(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$(INVOKE_PORT)) 2>/dev/null && break; sleep 0.2; done
	# 4. The events, in order; a function error (not an HTTP error status) fails the target.
	failed=0
	for ev in $(EVENT); do
	  echo "== events/$$ev"
	  PATH="$(VENV_PATH)" cargo lambda invoke $(LAMBDA_BIN) --invoke-address 127.0.0.1 --invoke-port $(INVOKE_PORT) \
	    --data-file events/$$ev || failed=$$((failed + 1))
	  echo
	done
	echo "(function log: $(RUN_DIR)/invoke-watch.log)"
	[ $$failed -eq 0 ] || { echo "error: $$failed invocation(s) ended in a function error" >&2; exit 1; }

## lint-infra: cfn-lint on the SAM template, its promises (schedule off by default, IAM as infra/README.md says, alarms on emitted metrics), and the sample events match events/generate.py
lint-infra: venv
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(PY) infra/check_template.py
	python3 events/generate.py --check

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## bench: two cycles over a generated partner (5000 tenants, 20 ms latency) against the simulators, on SQLite and on DynamoDB (moto with a key index, scripts/moto_indexed.py, started here); prints figures
bench: venv
	mkdir -p $(RUN_DIR)
	# The sync's peak memory is measured with GNU time (Debian's `time` package).
	[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
	cargo build --release --bin sophos-cw-sync
	# moto with a sorted key index per partition (plain moto walks the whole table
	# on every query, which no 50,000-customer run survives), checked against plain
	# moto first; the tests use plain moto.
	$(VENV)/bin/python scripts/check_moto_indexed.py
	$(VENV)/bin/python scripts/moto_indexed.py -H 127.0.0.1 -p $(MOTO_PORT) > $(RUN_DIR)/bench-moto.log 2>&1 &
	echo $$! > $(RUN_DIR)/bench-moto.pid
	trap 'kill $$(cat $(RUN_DIR)/bench-moto.pid) 2>/dev/null || true' EXIT
	for i in $$(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$(MOTO_PORT)/moto-api/ && break; sleep 0.1; done
	export AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT) AWS_REGION=us-east-1 \
	       AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
	cargo run --quiet --release --example bench_cycle -- $${TENANTS:-5000} $${PRODUCTS:-3} $${LATENCY_MS:-20}

clean:
	rm -rf $(RUN_DIR) $(VENV)
