#!/usr/bin/env bash
# `make run`: the main job on the embedded default. Starts the simulators with the
# demo scenario, writes a local secrets and settings file for them, runs one sync
# with the SQLite store, then shows the status and the audit trail.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/demo-env.sh


echo "== Sync =="
status=0; $BIN sync || status=$?
echo
echo "== Status per customer =="
$BIN status
echo
echo "== Held for review (the demo settings hold drops to zero and decreases over 50%) =="
$BIN review
held=$($BIN review --json | python3 -c 'import json, sys; print(" ".join(c["id"] for c in json.load(sys.stdin)))')
echo
echo "== Approve them and sync at once =="
# shellcheck disable=SC2086 # one argument per id
$BIN review approve $held --sync | grep -E 'approved|ConnectWise writes' 
echo
echo "== Second run: nothing left to do =="
$BIN sync | tail -n 1
echo
echo "State kept in $RUN_DIR/sophos-cw-sync.db; try: SYNC_STORE=$SYNC_STORE $BIN audit"
echo
echo "To see all of this in the operator console: make console"
echo "  (it runs this demo again, then serves http://127.0.0.1:8080/console/; password: $CONSOLE_PASSWORD)"
exit $status
