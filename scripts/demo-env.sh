# Sourced by run-demo.sh and console.sh: starts the simulators with the demo
# scenario (stopped when the calling script exits), writes a local secrets and
# settings file for them and exports the environment of the SQLite store.
RUN_DIR=.run
SOPHOS_ADDR=${SOPHOS_ADDR:-127.0.0.1:9000}
CW_ADDR=${CW_ADDR:-127.0.0.1:9001}
mkdir -p "$RUN_DIR"
# The demo console password (simulator only; a real one is a long random string).
CONSOLE_PASSWORD=${CONSOLE_PASSWORD:-demo-console-password}

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
 "webhookToken":"demo-webhook-token","consoleToken":"$CONSOLE_PASSWORD"}
JSON
cat > "$RUN_DIR/settings.json" <<JSON
{"products":["Sophos_Intercept_X_Advanced","Sophos_Intercept_X_Advanced_XDR"],
 "agreementType":"Sophos MSP",
 "catalog":{"type":"Software","category":"Security","subcategory":"Endpoint","unitOfMeasure":"Each","productClass":"Agreement"},
 "quantityField":"billableQuantity","zeroUsage":"zero","month":"2026-11",
 "prices":{"Sophos_Intercept_X_Advanced":{"price":4.5,"cost":2.9},"Sophos_Intercept_X_Advanced_XDR":{"price":6.5,"cost":4.1}},
 "review":{"zeroOrCancel":true,"decreaseOverPercent":50}}
JSON
rm -f "$RUN_DIR"/sophos-cw-sync.db*

export SYNC_STORE="sqlite:$RUN_DIR/sophos-cw-sync.db"
export SYNC_SECRETS="file:$RUN_DIR/secrets.json"
export SYNC_SETTINGS="$RUN_DIR/settings.json"
export SOPHOS_ID_URL="http://$SOPHOS_ADDR" SOPHOS_API_URL="http://$SOPHOS_ADDR"
BIN=./target/debug/sophos-cw-sync
