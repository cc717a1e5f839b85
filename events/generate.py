#!/usr/bin/env python3
"""Writes every sample event under events/ (the committed JSON is this script's output).

    python3 events/generate.py          # rewrite them all
    python3 events/generate.py --check  # fail if a committed file differs

The events are for `cargo lambda invoke --data-file events/<file>` (or
`make invoke-local EVENT=<file>`) and for handler tests. API events follow the API
Gateway HTTP API payload format 2.0; every one carries the demo token
`demo-webhook-token` (the one `make run` writes into .run/secrets.json) unless its
name says otherwise. See events/README.md for the expected status codes.
"""

import base64
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "demo-webhook-token"
ACCOUNT = "123456789012"  # AWS's documentation account id, not a real one
REGION = "us-east-1"
API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SOURCE_IP = "203.0.113.10"  # TEST-NET-3
USER_AGENT = "curl/8.5.0"
TIME_EPOCH = 1795932000000  # 2026-11-29T06:00:00Z, in ms
TENANT = "a0000000-0000-4000-8000-000000000010"
UNKNOWN_TENANT = "a0000000-0000-4000-8000-0000000000ff"

SETTINGS = {
    "products": ["Sophos_Intercept_X_Advanced", "Sophos_Intercept_X_Advanced_XDR"],
    "productCodes": {"CIXA-MSP": "Sophos_Intercept_X_Advanced"},
    "agreementType": "Sophos MSP",
    "catalog": {
        "type": "Software",
        "category": "Security",
        "subcategory": "Endpoint",
        "unitOfMeasure": "Each",
        "productClass": "Agreement",
    },
    "quantityField": "billableQuantity",
    "zeroUsage": "zero",
    "month": "current",
}

_seq = 0


def api(method, path, *, route=None, query="", body=None, token=TOKEN,
        path_params=None, b64=False, raw_body=None):
    """One HTTP API payload 2.0 request. `route` defaults to "METHOD path"."""
    global _seq
    _seq += 1
    route = route or f"{method} {path}"
    headers = {
        "accept": "application/json",
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": f"Root=1-6b0bbf60-0a1b2c3d4e5f60718293a{_seq:03d}",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    text = raw_body if raw_body is not None else (
        None if body is None else json.dumps(body, separators=(",", ":")))
    if text is not None:
        headers["content-type"] = "application/json"
        headers["content-length"] = str(len(text.encode()))
    event = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": dict(sorted(headers.items())),
    }
    if query:
        params = {}
        for pair in query.split("&"):
            k, _, v = pair.partition("=")
            params[k] = v
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "domainName": DOMAIN,
        "domainPrefix": API_ID,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": SOURCE_IP,
            "userAgent": USER_AGENT,
        },
        "requestId": f"Vx3kQj{_seq:04d}AMEbQ=",
        "routeKey": route,
        "stage": "$default",
        "time": "29/Nov/2026:06:00:00 +0000",
        "timeEpoch": TIME_EPOCH + _seq,
    }
    if path_params:
        event["pathParameters"] = path_params
    if text is not None:
        event["body"] = text
    event["isBase64Encoded"] = b64
    return event


def events():
    ev = {}
    # Non-HTTP triggers.
    ev["schedule.json"] = {
        "version": "0",
        "id": "5d1c9a1e-3f0b-4c55-8a7e-0f2b6c4d9e10",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2026-11-29T06:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/sophos-cw-sync-daily"],
        "detail": {},
    }
    # Exactly what infra/template.yaml's ScheduleV2 Input becomes at delivery time.
    ev["scheduler.json"] = {
        "source": "aws.scheduler",
        "detail-type": "Scheduled Event",
        "id": "0c6e6c1f-7b0e-4f3a-9d1e-2a3b4c5d6e7f",
        # The next day's occurrence, so it is not a duplicate of schedule.json's.
        "time": "2026-11-30T06:00:00Z",
        "detail": {},
    }
    ev["async-run.json"] = {
        "sophosCwSync": "run",
        "runId": "r20261129T060000000Z-0a1b2c3d",
        "month": "2026-11",
        "dryRun": False,
    }

    # HTTP API, valid requests.
    ev["api-sync.json"] = api("POST", "/sync", body={"month": "2026-11"})
    ev["api-sync-dry-run.json"] = api("POST", "/sync", body={"month": "2026-11", "dryRun": True})
    ev["api-sync-no-token.json"] = api("POST", "/sync", body={"month": "2026-11"}, token=None)
    ev["api-sync-bad-token.json"] = api("POST", "/sync", body={"month": "2026-11"},
                                        token="not-the-webhook-token")
    ev["api-runs.json"] = api("GET", "/runs", query="limit=20")
    run_id = "r20261101T060000000Z-deadbeef"  # made up: 404
    ev["api-run.json"] = api("GET", f"/runs/{run_id}", route="GET /runs/{id}",
                             path_params={"id": run_id})
    ev["api-status.json"] = api("GET", "/status")
    ev["api-audit.json"] = api("GET", "/audit")
    ev["api-mappings.json"] = api("GET", "/mappings")
    ev["api-mapping-put.json"] = api("PUT", f"/mappings/{TENANT}", route="PUT /mappings/{tenantId}",
                                     path_params={"tenantId": TENANT}, body={"companyId": 110})
    ev["api-mapping-delete.json"] = api("DELETE", f"/mappings/{TENANT}",
                                        route="DELETE /mappings/{tenantId}",
                                        path_params={"tenantId": TENANT})
    ev["api-settings-get.json"] = api("GET", "/settings")
    ev["api-settings-put.json"] = api("PUT", "/settings", body=SETTINGS)

    # Malformed: valid token, each must be answered 4xx.
    m = "malformed/"
    ev[m + "sync-bad-json.json"] = api("POST", "/sync", raw_body='{"month": "2026-11"')
    ev[m + "sync-unknown-field.json"] = api("POST", "/sync", body={"mnth": "2026-11"})
    ev[m + "sync-bad-month.json"] = api("POST", "/sync", body={"month": "2026-13"})
    big = dict(SETTINGS)
    # Valid JSON, valid fields, just too large: 70 000 bytes of productCodes.
    big["productCodes"] = {f"PAD{i:05d}-MSP": "Sophos_Intercept_X_Advanced" for i in range(2200)}
    ev[m + "settings-too-large.json"] = api("PUT", "/settings", body=big)
    ev[m + "settings-unknown-product.json"] = api(
        "PUT", "/settings", body={**SETTINGS, "products": ["Sophos_Intercept_X_Advanced", "Sophos_Toaster_Pro"]})
    ev[m + "settings-wrong-type.json"] = api("PUT", "/settings", body={"products": "x"})
    ev[m + "settings-patch-method.json"] = api("PATCH", "/settings", route="$default",
                                               body={"month": "previous"})
    ev[m + "settings-bad-base64.json"] = api("PUT", "/settings", raw_body="%%%this is not base64%%%",
                                             b64=True)
    ev[m + "mapping-bad-json.json"] = api("PUT", f"/mappings/{TENANT}", route="PUT /mappings/{tenantId}",
                                          path_params={"tenantId": TENANT}, raw_body="{companyId: 110")
    ev[m + "mapping-company-not-number.json"] = api(
        "PUT", f"/mappings/{TENANT}", route="PUT /mappings/{tenantId}",
        path_params={"tenantId": TENANT}, body={"companyId": "abc"})
    ev[m + "mapping-agreement-without-company.json"] = api(
        "PUT", f"/mappings/{TENANT}", route="PUT /mappings/{tenantId}",
        path_params={"tenantId": TENANT}, body={"agreementId": 5010})
    ev[m + "mapping-delete-unknown-tenant.json"] = api(
        "DELETE", f"/mappings/{UNKNOWN_TENANT}", route="DELETE /mappings/{tenantId}",
        path_params={"tenantId": UNKNOWN_TENANT})
    ev[m + "runs-limit-not-number.json"] = api("GET", "/runs", query="limit=abc")
    ev[m + "runs-limit-too-large.json"] = api("GET", "/runs", query="limit=100000")
    ev[m + "unknown-route.json"] = api("GET", "/nope", route="$default")
    # The operator console (HTML; signed in with the secret's consoleToken).
    ev["console-login.json"] = api("GET", "/console/login", route="GET /console/{proxy+}",
                                   path_params={"proxy": "login"}, token=None)
    # Review (added last, so the earlier events keep their request ids).
    ev["api-review.json"] = api("GET", "/review", query="limit=100")
    held_id = "2026-11-000000000000"  # made up: 404
    ev["api-review-approve.json"] = api("POST", f"/review/{held_id}/approve",
                                        route="POST /review/{id}/approve",
                                        path_params={"id": held_id}, body={"sync": True})
    ev[m + "review-sync-not-boolean.json"] = api(
        "POST", f"/review/{held_id}/approve", route="POST /review/{id}/approve",
        path_params={"id": held_id}, body={"sync": "now"})
    return ev


def render(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, obj in events().items():
        path = HERE / name
        text = render(obj)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    big = events()["malformed/settings-too-large.json"]["body"]
    assert len(big.encode()) > 64 * 1024, len(big)
    if stale:
        sys.exit("stale or missing (run python3 events/generate.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
