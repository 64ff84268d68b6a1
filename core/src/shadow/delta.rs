//! The delta: what `desired` asks for that `reported` does not (yet) say.

use serde_json::{Number, Value};

use super::document::JsonMap;

/// Every `desired` key whose value is missing from `reported` or differs from it. Objects
/// present on both sides are compared key by key and keep their path from the root; arrays
/// and scalars compare whole ("Arrays are treated like values"). Keys only in `reported`
/// never appear. `None` when nothing differs.
///
/// Numbers compare by value, so `1` and `1.0` are equal: a device reporting `1.0` for a
/// desired `1` has done what was asked.
pub fn delta(desired: &JsonMap, reported: &JsonMap) -> Option<JsonMap> {
    let out = delta_map(desired, reported);
    (!out.is_empty()).then_some(out)
}

fn delta_map(desired: &JsonMap, reported: &JsonMap) -> JsonMap {
    let mut out = JsonMap::new();
    for (key, want) in desired {
        match (want, reported.get(key)) {
            (Value::Object(want), Some(Value::Object(have))) => {
                let sub = delta_map(want, have);
                if !sub.is_empty() {
                    out.insert(key.clone(), Value::Object(sub));
                }
            }
            (want, Some(have)) if json_eq(want, have) => {}
            (want, _) => {
                out.insert(key.clone(), want.clone());
            }
        }
    }
    out
}

/// JSON equality with numbers compared by value and objects compared without regard to key
/// order.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, xv)| y.get(k).is_some_and(|yv| json_eq(xv, yv)))
        }
        _ => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::test_map as map;
    use serde_json::json;

    fn d(desired: Value, reported: Value) -> Option<Value> {
        delta(&map(desired), &map(reported)).map(Value::Object)
    }

    #[test]
    fn aws_delta_state_example() {
        assert_eq!(
            d(
                json!({"color": "RED", "state": "STOP"}),
                json!({"color": "GREEN", "engine": "ON"})
            ),
            Some(json!({"color": "RED", "state": "STOP"}))
        );
    }

    #[test]
    fn aws_nested_delta_keeps_the_path_to_the_root() {
        assert_eq!(
            d(
                json!({"lights": {"color": {"r": 255, "g": 255, "b": 255}}}),
                json!({"lights": {"color": {"r": 255, "g": 0, "b": 255}}})
            ),
            Some(json!({"lights": {"color": {"g": 255}}}))
        );
    }

    #[test]
    fn arrays_compare_whole() {
        assert_eq!(
            d(json!({"c": ["RED", "GREEN"]}), json!({"c": ["RED"]})),
            Some(json!({"c": ["RED", "GREEN"]}))
        );
        assert_eq!(
            d(json!({"c": [1, {"a": 2}]}), json!({"c": [1, {"a": 2}]})),
            None
        );
    }

    #[test]
    fn equal_documents_and_reported_only_keys_give_no_delta() {
        assert_eq!(
            d(
                json!({"a": 1, "b": {"c": true}}),
                json!({"a": 1, "b": {"c": true}, "z": 0})
            ),
            None
        );
        assert_eq!(d(json!({}), json!({"a": 1})), None);
    }

    #[test]
    fn type_mismatch_copies_the_desired_value() {
        assert_eq!(
            d(json!({"a": {"b": 1}}), json!({"a": 5})),
            Some(json!({"a": {"b": 1}}))
        );
        assert_eq!(
            d(json!({"a": 5}), json!({"a": {"b": 1}})),
            Some(json!({"a": 5}))
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(d(json!({"t": 1}), json!({"t": 1.0})), None);
        assert_eq!(d(json!({"t": [1, 2]}), json!({"t": [1.0, 2]})), None);
        assert_eq!(
            d(json!({"t": -1}), json!({"t": 18446744073709551615u64})),
            Some(json!({"t": -1}))
        );
        assert_eq!(
            d(json!({"t": 1.5}), json!({"t": 1})),
            Some(json!({"t": 1.5}))
        );
    }
}
