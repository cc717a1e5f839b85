//! JSON Patch (RFC 6902 subset) as ConnectWise accepts it on PATCH:
//! `[{"op": "replace", "path": "quantity", "value": 12}]`. ConnectWise
//! accepts bare paths (`quantity`) as well as pointers (`/quantity`), and
//! treats `replace` of an absent field as setting it.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// One operation of a PATCH body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PatchOp {
    pub op: String,
    pub path: String,
    /// `Some(Value::Null)` for an explicit `"value": null` (clears a field),
    /// `None` when the key is absent.
    #[serde(default, deserialize_with = "present_value")]
    pub value: Option<Value>,
}

/// Without this, serde maps `"value": null` to `None`, which would make
/// "set this field to null" indistinguishable from "no value given".
fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Applies `ops` to a copy of `target`; on any error nothing is applied.
pub fn apply_patch(target: &Value, ops: &Value) -> Result<Value, String> {
    let list = ops
        .as_array()
        .ok_or("The patch body must be a JSON array of operations.")?;
    let mut doc = target.clone();
    for (i, raw) in list.iter().enumerate() {
        let op = PatchOp::deserialize(raw)
            .map_err(|e| format!("Patch operation {i} is invalid: {e}."))?;
        apply_one(&mut doc, &op)
            .map_err(|e| format!("Patch operation {i} ({} '{}'): {e}.", op.op, op.path))?;
    }
    Ok(doc)
}

fn apply_one(doc: &mut Value, op: &PatchOp) -> Result<(), String> {
    let kind = op.op.to_ascii_lowercase();
    if !matches!(kind.as_str(), "add" | "replace" | "remove" | "test") {
        return Err("unknown op; expected add, replace, remove or test".to_string());
    }
    let segments = parse_path(&op.path)?;
    let value = || {
        op.value
            .as_ref()
            .ok_or(format!("'{kind}' requires a value"))
    };
    match kind.as_str() {
        "add" | "replace" => set(doc, &segments, value()?.clone()),
        "remove" => remove(doc, &segments),
        _ => test(doc, &segments, value()?),
    }
}

/// Splits `product/id` or `/product/id` into segments, unescaping JSON
/// Pointer `~1` and `~0`, and refuses server-maintained fields.
fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let trimmed = path.trim();
    let bare = trimmed.strip_prefix('/').unwrap_or(trimmed);
    let segments: Vec<String> = bare
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if segments.iter().any(String::is_empty) {
        return Err("the path is empty or has an empty segment".to_string());
    }
    // Only the entity's own id is read-only; `product/id` re-points a reference.
    let own_id = segments.len() == 1 && segments[0].eq_ignore_ascii_case("id");
    if own_id || segments.iter().any(|s| s.eq_ignore_ascii_case("_info")) {
        return Err("the field is read-only".to_string());
    }
    Ok(segments)
}

/// The existing key matching `segment` case-insensitively (ConnectWise field
/// names are case-insensitive), or `segment` itself.
fn actual_key(map: &Map<String, Value>, segment: &str) -> String {
    if map.contains_key(segment) {
        return segment.to_string();
    }
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(segment))
        .map_or_else(|| segment.to_string(), Clone::clone)
}

/// Sets the value, creating missing (or null) parent objects.
fn set(doc: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("the path is empty")?;
    let mut cur = doc;
    for seg in parents {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        let map = cur.as_object_mut().ok_or(format!(
            "cannot descend into '{seg}': its parent is not an object"
        ))?;
        let key = actual_key(map, seg);
        cur = map.entry(key).or_insert(Value::Null);
    }
    if cur.is_null() {
        *cur = Value::Object(Map::new());
    }
    let map = cur
        .as_object_mut()
        .ok_or(format!("cannot set '{last}': its parent is not an object"))?;
    let key = actual_key(map, last);
    map.insert(key, value);
    Ok(())
}

fn remove(doc: &mut Value, segments: &[String]) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("the path is empty")?;
    let not_found = || "the path does not exist".to_string();
    let mut cur = doc;
    for seg in parents {
        let map = cur.as_object_mut().ok_or_else(not_found)?;
        let key = actual_key(map, seg);
        cur = map.get_mut(&key).ok_or_else(not_found)?;
    }
    let map = cur.as_object_mut().ok_or_else(not_found)?;
    let key = actual_key(map, last);
    map.remove(&key).map(drop).ok_or_else(not_found)
}

fn test(doc: &Value, segments: &[String], expected: &Value) -> Result<(), String> {
    let actual = segments.iter().try_fold(doc, |cur, seg| {
        let map = cur.as_object()?;
        map.get(&actual_key(map, seg))
    });
    match actual {
        Some(v) if v == expected => Ok(()),
        Some(v) => Err(format!("test failed: the value is {v}, not {expected}")),
        None => Err(format!(
            "test failed: the path does not exist, expected {expected}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addition() -> Value {
        json!({
            "id": 11,
            "product": {"id": 4, "identifier": "SOPHOS-XDR"},
            "quantity": 10,
            "billCustomer": "Billable",
            "cancelledDate": "2025-06-01T00:00:00Z",
            "_info": {"lastUpdated": "2025-01-01T00:00:00Z"}
        })
    }

    fn patched(ops: Value) -> Value {
        apply_patch(&addition(), &ops).unwrap_or_else(|e| panic!("patch failed: {e}"))
    }

    fn patch_error(ops: Value) -> String {
        apply_patch(&addition(), &ops).expect_err("patch should fail")
    }

    #[test]
    fn replace_quantity_bare_and_with_slash() {
        let out = patched(json!([{"op": "replace", "path": "quantity", "value": 25}]));
        assert_eq!(out["quantity"], 25);
        assert_eq!(out["billCustomer"], "Billable");
        let out = patched(json!([{"op": "replace", "path": "/quantity", "value": 3}]));
        assert_eq!(out["quantity"], 3);
        let out = patched(json!([{"op": "Replace", "path": "Quantity", "value": 7}]));
        assert_eq!(out["quantity"], 7);
        assert!(out.get("Quantity").is_none());
    }

    #[test]
    fn nested_paths() {
        let out = patched(json!([{"op": "replace", "path": "product/id", "value": 9}]));
        assert_eq!(out["product"], json!({"id": 9, "identifier": "SOPHOS-XDR"}));
        let out = patched(json!([{"op": "add", "path": "/invoiceGrouping/id", "value": 2}]));
        assert_eq!(out["invoiceGrouping"], json!({"id": 2}));
    }

    #[test]
    fn replace_missing_path_sets_it_and_null_clears() {
        let out = patched(json!([
            {"op": "replace", "path": "unitPrice", "value": 4.5},
            {"op": "replace", "path": "cancelledDate", "value": null}
        ]));
        assert_eq!(out["unitPrice"], 4.5);
        assert_eq!(out["cancelledDate"], Value::Null);
    }

    #[test]
    fn add_remove_and_test() {
        let out = patched(json!([
            {"op": "test", "path": "quantity", "value": 10},
            {"op": "add", "path": "serialNumber", "value": "ABC"},
            {"op": "remove", "path": "/cancelledDate"}
        ]));
        assert_eq!(out["serialNumber"], "ABC");
        assert!(out.get("cancelledDate").is_none());
        assert!(
            patch_error(json!([{"op": "test", "path": "quantity", "value": 11}]))
                .contains("test failed")
        );
        assert!(patch_error(json!([{"op": "remove", "path": "nope"}])).contains("does not exist"));
    }

    #[test]
    fn invalid_operations() {
        assert_eq!(
            patch_error(json!({"op": "replace"})),
            "The patch body must be a JSON array of operations."
        );
        assert!(
            patch_error(json!([{"op": "move", "path": "quantity", "from": "x"}]))
                .contains("unknown op")
        );
        assert!(
            patch_error(json!([{"op": "replace", "path": "quantity"}]))
                .contains("requires a value")
        );
        assert!(
            patch_error(json!([{"op": "add", "path": "quantity"}])).contains("requires a value")
        );
        assert!(
            patch_error(json!([{"op": "replace", "path": "id", "value": 1}])).contains("read-only")
        );
        assert!(
            patch_error(json!([{"op": "replace", "path": "/_info/lastUpdated", "value": "x"}]))
                .contains("read-only")
        );
        assert!(
            patch_error(json!([{"op": "replace", "value": 1}])).contains("missing field `path`")
        );
        assert!(patch_error(json!(["replace"])).contains("Patch operation 0 is invalid"));
        assert!(patch_error(json!([{"op": "replace", "path": "", "value": 1}])).contains("empty"));
        assert!(
            patch_error(json!([{"op": "replace", "path": "quantity/x", "value": 1}]))
                .contains("not an object")
        );
    }

    #[test]
    fn error_leaves_target_untouched() {
        let target = addition();
        let ops = json!([
            {"op": "replace", "path": "quantity", "value": 99},
            {"op": "bogus", "path": "quantity", "value": 1}
        ]);
        let error = apply_patch(&target, &ops).unwrap_err();
        assert!(
            error.starts_with("Patch operation 1 (bogus 'quantity')"),
            "{error}"
        );
        assert_eq!(target, addition());
    }

    #[test]
    fn deserializes_explicit_null_value() {
        let op: PatchOp =
            serde_json::from_value(json!({"op": "replace", "path": "x", "value": null})).unwrap();
        assert_eq!(op.value, Some(Value::Null));
        let op: PatchOp = serde_json::from_value(json!({"op": "remove", "path": "x"})).unwrap();
        assert_eq!(op.value, None);
    }
}
