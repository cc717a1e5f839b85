#!/usr/bin/env bash
# `make console`: the simulators with the demo scenario, one sync on the SQLite
# store, then the operator console on http://127.0.0.1:8080/console/ until Ctrl-C
# (which stops the simulators too).
set -euo pipefail
cd "$(dirname "$0")/.."
CONSOLE_ADDR=${CONSOLE_ADDR:-127.0.0.1:8080}
source scripts/demo-env.sh

echo "== One sync of the demo scenario =="
$BIN sync | tail -n 3 || true
echo
echo "== The console =="
echo "Open http://$CONSOLE_ADDR/console/ and sign in with the password: $CONSOLE_PASSWORD"
echo "(the demo's consoleToken in $RUN_DIR/secrets.json; Ctrl-C stops the console and the simulators)"
# Plain http on this machine only: the session cookie drops its Secure flag.
$BIN serve --addr "$CONSOLE_ADDR" --insecure-local-cookies
