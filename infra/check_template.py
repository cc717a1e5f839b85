#!/usr/bin/env python3
"""Checks of infra/template.yaml that cfn-lint cannot make: what this project
promises about it (run by `make lint-infra`, with the .venv's PyYAML).

- A first deploy writes nothing on its own: the schedule is disabled by default.
- The IAM actions on the table are the ones infra/README.md lists.
- Every alarm on the function's own metrics reads a metric src/metrics.rs emits
  (renaming one there would otherwise silently disable its alarm).
- Console sign-in through an identity provider is off by default: each
  ConsoleOidc* parameter defaults to empty and reaches the function's
  environment only when set; no parameter carries the client secret (it is the
  secret's consoleOidcClientSecret); the ConsoleOidcRedirectUri output is the
  console's address + /auth/callback, as the function builds it; Rules refuse an
  issuer without a client id (or the other way round) or without ConsoleUrl.
"""

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !If, ...) as {"Fn": value}."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _tagged)


def load_template():
    return yaml.load((ROOT / "infra/template.yaml").read_text(), Loader=CfnLoader)


def schedule_problems(t):
    problems = []
    param = t["Parameters"].get("ScheduleEnabled")
    if param is None:
        return ["parameter ScheduleEnabled is missing"]
    if param.get("Default") != "false":
        problems.append(f'ScheduleEnabled defaults to {param.get("Default")!r}, not "false"')
    if sorted(param.get("AllowedValues", [])) != ["false", "true"]:
        problems.append("ScheduleEnabled must allow exactly \"true\" and \"false\"")
    condition = t["Conditions"].get("ScheduleOn")
    if condition != {"Equals": [{"Ref": "ScheduleEnabled"}, "true"]}:
        problems.append(f'condition ScheduleOn must be ScheduleEnabled == "true", is {condition!r}')
    events = t["Resources"]["SyncFunction"]["Properties"]["Events"]
    schedules = [e for e in events.values() if e["Type"] == "ScheduleV2"]
    if len(schedules) != 1:
        problems.append(f"expected one ScheduleV2 event, found {len(schedules)}")
    for s in schedules:
        state = s["Properties"].get("State")
        if state != {"If": ["ScheduleOn", "ENABLED", "DISABLED"]}:
            problems.append(f"the schedule's State must be !If [ScheduleOn, ENABLED, DISABLED], is {state!r}")
    return problems


def iam_problems(t):
    policies = t["Resources"]["SyncFunction"]["Properties"]["Policies"]
    statements = [s for p in policies for s in p.get("Statement", [])]
    store = next((s for s in statements if s.get("Sid") == "Store"), None)
    if store is None:
        return ["the function's policy has no Store statement"]
    in_template = {a.removeprefix("dynamodb:") for a in store["Action"]}
    readme = (ROOT / "infra/README.md").read_text()
    line = re.search(r"\*\*IAM\*\*:(.*?)on the table", readme, re.S)
    if line is None:
        return ["infra/README.md has no '**IAM**: ... on the table' sentence"]
    in_readme = set(re.findall(r"`(\w+)`", line.group(1)))
    if in_template != in_readme:
        return [
            f"infra/README.md lists the table actions {sorted(in_readme)}, "
            f"the template grants {sorted(in_template)}: make them agree"
        ]
    return []


def alarm_problems(t):
    metrics_rs = (ROOT / "src/metrics.rs").read_text()
    problems = []
    for name, r in t["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] != "AWS::CloudWatch::Alarm" or props.get("Namespace") != "SophosCwSync":
            continue
        metric = props["MetricName"]
        if f'"{metric}"' not in metrics_rs:
            problems.append(f"alarm {name} reads {metric}, which src/metrics.rs does not emit")
        if metric == "CustomersUnmapped":
            problems.append(f"alarm {name} on CustomersUnmapped would stay on for good (see the template's comment)")
    return problems


# Parameter -> the environment variable it becomes (src/config/env.rs).
OIDC_PARAMETERS = {
    "ConsoleOidcIssuer": "CONSOLE_OIDC_ISSUER",
    "ConsoleOidcClientId": "CONSOLE_OIDC_CLIENT_ID",
    "ConsoleOidcGroupsClaim": "CONSOLE_OIDC_GROUPS_CLAIM",
}


def oidc_problems(t):
    problems = []
    params = t["Parameters"]
    conditions = t["Conditions"]
    env = t["Resources"]["SyncFunction"]["Properties"]["Environment"]["Variables"]
    for name, var in OIDC_PARAMETERS.items():
        param = params.get(name)
        if param is None:
            problems.append(f"parameter {name} is missing")
            continue
        if param.get("Default") != "":
            problems.append(f"{name} defaults to {param.get('Default')!r}, not empty (sign-in through an identity provider must be off by default)")
        value = env.get(var)
        cond = value.get("If", [None])[0] if isinstance(value, dict) else None
        if value != {"If": [cond, {"Ref": name}, {"Ref": "AWS::NoValue"}]}:
            problems.append(f"{var} must be !If [<condition>, !Ref {name}, !Ref AWS::NoValue] (empty means unset), is {value!r}")
        elif conditions.get(cond) != {"Not": [{"Equals": [{"Ref": name}, ""]}]}:
            problems.append(f"condition {cond} must be {name} != \"\", is {conditions.get(cond)!r}")
    secretish = [n for n in params if "secret" in n.lower()]
    if secretish:
        problems.append(f"parameters {secretish} look like secrets: the client secret belongs in the secret (consoleOidcClientSecret), never in a parameter")
    outputs = t["Outputs"]
    redirect = outputs.get("ConsoleOidcRedirectUri", {}).get("Value")
    console = outputs.get("ConsoleUrl", {}).get("Value", {}).get("Sub", "")
    expected = {"If": ["HasConsoleUrl", {"Sub": "${ConsoleUrl}/auth/callback"}, {"Sub": console + "auth/callback"}]}
    if not console.endswith("/console/") or redirect != expected:
        problems.append(f"output ConsoleOidcRedirectUri must be the ConsoleUrl parameter (or, while it is empty, the ConsoleUrl output) + /auth/callback: {expected!r}, is {redirect!r}")
    if conditions.get("HasConsoleUrl") != {"Not": [{"Equals": [{"Ref": "ConsoleUrl"}, ""]}]}:
        problems.append("condition HasConsoleUrl must be ConsoleUrl != \"\"")
    rules = t.get("Rules", {})
    for rule in ("ConsoleOidcIssuerAndClientId", "ConsoleOidcNeedsConsoleUrl"):
        if not rules.get(rule, {}).get("Assertions"):
            problems.append(f"rule {rule} is missing: a half-configured sign-in would be deployed instead of refused")
    needs_url = rules.get("ConsoleOidcNeedsConsoleUrl", {})
    if needs_url and needs_url.get("RuleCondition") != {"Not": [{"Equals": [{"Ref": "ConsoleOidcIssuer"}, ""]}]}:
        problems.append("rule ConsoleOidcNeedsConsoleUrl must apply when ConsoleOidcIssuer is set")
    return problems


def main():
    t = load_template()
    problems = schedule_problems(t) + iam_problems(t) + alarm_problems(t) + oidc_problems(t)
    for p in problems:
        print(f"infra/template.yaml: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(
        "infra/template.yaml: schedule off by default, IAM as infra/README.md says, "
        "alarms on emitted metrics, console OIDC off by default and its redirect URI as the function builds it"
    )


if __name__ == "__main__":
    main()
