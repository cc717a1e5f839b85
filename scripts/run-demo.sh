#!/usr/bin/env bash
# `make run`: the main job on the embedded default. Starts the simulators with the
# demo scenario, writes a local secrets and settings file for them, runs one sync
# with the SQLite store, then shows the status and the audit trail.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=.run
SOPHOS_ADDR=${SOPHOS_ADDR:-127.0.0.1:9000}
CW_ADDR=${CW_ADDR:-127.0.0.1:9001}
mkdir -p "$RUN_DIR"

cargo build --quiet --workspace --bins
./target/debug/sophos-cw-sim --scenario sim/fixtures/demo.json \
  --sophos-addr "$SOPHOS_ADDR" --cw-addr "$CW_ADDR" > "$RUN_DIR/sim.log" 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$CW_ADDR/_sim/counters" && break
  kill -0 $SIM_PID 2>/dev/null || { cat "$RUN_DIR/sim.log"; exit 1; }
  sleep 0.1
done

# The demo scenario's credentials (simulator only; never real ones).
cat > "$RUN_DIR/secrets.json" <<JSON
{"sophos":{"clientId":"sim-sophos-client","clientSecret":"sim-sophos-secret"},
 "connectwise":{"site":"http://$CW_ADDR","companyId":"simmsp","publicKey":"sim-public-key",
  "privateKey":"sim-private-key","clientId":"3f1c2a4e-8d9b-4c7a-b6e5-0a1b2c3d4e5f"},
 "webhookToken":"demo-webhook-token"}
JSON
cat > "$RUN_DIR/settings.json" <<JSON
{"products":["Sophos_Intercept_X_Advanced","Sophos_Intercept_X_Advanced_XDR"],
 "agreementType":"Sophos MSP",
 "catalog":{"type":"Software","category":"Security","subcategory":"Endpoint","unitOfMeasure":"Each","productClass":"Agreement"},
 "quantityField":"billableQuantity","zeroUsage":"zero","month":"2026-11"}
JSON
rm -f "$RUN_DIR"/sophos-cw-sync.db*

export SYNC_STORE="sqlite:$RUN_DIR/sophos-cw-sync.db"
export SYNC_SECRETS="file:$RUN_DIR/secrets.json"
export SYNC_SETTINGS="$RUN_DIR/settings.json"
export SOPHOS_ID_URL="http://$SOPHOS_ADDR" SOPHOS_API_URL="http://$SOPHOS_ADDR"
BIN=./target/debug/sophos-cw-sync

echo "== Sync =="
status=0; $BIN sync || status=$?
echo
echo "== Status per customer =="
$BIN status
echo
echo "== Second run: nothing left to do =="
$BIN sync | tail -n 1
echo
echo "State kept in $RUN_DIR/sophos-cw-sync.db; try: SYNC_STORE=$SYNC_STORE $BIN audit"
exit $status
