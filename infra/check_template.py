#!/usr/bin/env python3
"""Checks of infra/template.yaml that cfn-lint cannot make: what this project
promises about it (run by `make lint-infra`, with the .venv's PyYAML).

- A first deploy writes nothing on its own: the schedule is disabled by default.
- The IAM actions on the table are the ones infra/README.md lists.
- Every alarm on the function's own metrics reads a metric src/metrics.rs emits
  (renaming one there would otherwise silently disable its alarm).
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


def main():
    t = load_template()
    problems = schedule_problems(t) + iam_problems(t) + alarm_problems(t)
    for p in problems:
        print(f"infra/template.yaml: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("infra/template.yaml: schedule off by default, IAM as infra/README.md says, alarms on emitted metrics")


if __name__ == "__main__":
    main()
