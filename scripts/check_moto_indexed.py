"""Checks scripts/moto_indexed.py against plain moto: the same random puts, deletes
and queries (every key condition the store uses, both directions, limits, paging,
filters) must give the same answers. `make bench` runs it before trusting the
indexed server with its DynamoDB figures.

    python scripts/check_moto_indexed.py
"""

import random
import sys

import boto3
from moto import mock_aws


def run(ops):
    """Runs `ops` on a fresh in-process moto table and returns every answer."""
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        answers = []
        for op in ops:
            kind = op[0]
            if kind == "put":
                _, pk, sk, n = op
                db.put_item(TableName="t", Item={"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": str(n)}})
            elif kind == "delete":
                _, pk, sk = op
                db.delete_item(TableName="t", Key={"pk": {"S": pk}, "sk": {"S": sk}})
            else:
                answers.append(pages(db, op[1]))
        return answers


def pages(db, q):
    """Every page of one query, following LastEvaluatedKey."""
    out, start = [], None
    while True:
        args = dict(q)
        if start:
            args["ExclusiveStartKey"] = start
        page = db.query(TableName="t", **args)
        out.append(([(i["sk"]["S"], i["n"]["N"]) for i in page["Items"]],
                    page.get("LastEvaluatedKey", {}).get("sk", {}).get("S")))
        start = page.get("LastEvaluatedKey")
        if not start or len(out) > 500:
            return out


def random_ops(rng):
    pks = ["ADDITION", "AUDIT", "RUN", "EMPTY"]
    tenants = [f"t-{i}" for i in range(12)] + ["t-1#x", "t-10"]
    ops = []
    for step in range(600):
        r = rng.random()
        pk = rng.choice(pks[:3])
        sk = f"{rng.choice(tenants)}#{rng.choice(['a', 'b', 'c', 'zz'])}"
        if r < 0.55:
            ops.append(("put", pk, sk, step))
        elif r < 0.7:
            ops.append(("delete", pk, sk))
        else:
            ops.append(("query", random_query(rng, rng.choice(pks), rng.choice(tenants))))
    return ops


def random_query(rng, pk, tenant):
    names, values = {"#pk": "pk"}, {":pk": {"S": pk}}
    cond = "#pk = :pk"
    kind = rng.choice(["all", "begins", "lt", "le", "gt", "ge", "eq", "between"])
    if kind != "all":
        names["#sk"] = "sk"
        values[":v"] = {"S": f"{tenant}#"}
        cond += {
            "begins": " AND begins_with(#sk, :v)", "lt": " AND #sk < :v",
            "le": " AND #sk <= :v", "gt": " AND #sk > :v", "ge": " AND #sk >= :v",
            "eq": " AND #sk = :v", "between": " AND #sk BETWEEN :v AND :w",
        }[kind]
        if kind == "eq":
            values[":v"] = {"S": f"{tenant}#a"}
        if kind == "between":
            values[":w"] = {"S": f"{tenant}#zz"}
    q = {"KeyConditionExpression": cond, "ExpressionAttributeNames": names,
         "ExpressionAttributeValues": values, "ScanIndexForward": rng.random() < 0.5,
         "ConsistentRead": True}
    if rng.random() < 0.6:
        q["Limit"] = rng.randint(1, 7)
    if rng.random() < 0.3:
        q["FilterExpression"] = "#n > :n"
        q["ExpressionAttributeNames"]["#n"] = "n"
        q["ExpressionAttributeValues"][":n"] = {"N": str(rng.randint(0, 600))}
    return q


def main():
    rng = random.Random(16)
    rounds = [random_ops(rng) for _ in range(4)]
    plain = [run(ops) for ops in rounds]
    import moto_indexed  # noqa: F401  (patches moto's Table from here on)
    indexed = [run(ops) for ops in rounds]
    queries = sum(len(a) for a in plain)
    for r, (p, i) in enumerate(zip(plain, indexed)):
        for n, (a, b) in enumerate(zip(p, i)):
            if a != b:
                print(f"moto_indexed differs from moto in round {r}, query {n}:\n  moto:    {a}\n  indexed: {b}")
                sys.exit(1)
    print(f"moto_indexed agrees with moto on {queries} queries ({sum(len(o) for o in rounds)} operations)")


if __name__ == "__main__":
    main()
