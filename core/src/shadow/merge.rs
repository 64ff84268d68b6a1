//! Applying an update's `state` to a shadow: `null` deletes, objects merge recursively,
//! arrays and scalars replace, and every leaf the update writes gets the update's time.

use serde_json::Value;

use super::document::{JsonMap, Metadata, Shadow};

/// Applies a validated request `state` (an object holding only `desired`/`reported`, or
/// `null`) to `shadow` in place, stamping `now` on every written leaf.
///
/// `"state": null` clears both sections and `"desired": null` clears one: the shadow itself
/// lives on ("Setting the device's shadow state to null does not delete the shadow").
pub(crate) fn apply_state(shadow: &mut Shadow, state: &Value, now: u64) {
    let Value::Object(state) = state else {
        shadow.desired = None;
        shadow.reported = None;
        shadow.metadata = Metadata::default();
        return;
    };
    if let Some(patch) = state.get("desired") {
        apply_section(
            &mut shadow.desired,
            &mut shadow.metadata.desired,
            patch,
            now,
        );
    }
    if let Some(patch) = state.get("reported") {
        apply_section(
            &mut shadow.reported,
            &mut shadow.metadata.reported,
            patch,
            now,
        );
    }
}

fn apply_section(
    section: &mut Option<JsonMap>,
    meta: &mut Option<JsonMap>,
    patch: &Value,
    now: u64,
) {
    let Value::Object(patch) = patch else {
        // `null` (the only other value validation lets through) removes the section.
        *section = None;
        *meta = None;
        return;
    };
    let mut state_map = section.take().unwrap_or_default();
    let mut meta_map = meta.take().unwrap_or_default();
    merge_object(&mut state_map, &mut meta_map, patch, now);
    // An emptied section disappears from the document, as AWS's do.
    if !state_map.is_empty() {
        *section = Some(state_map);
        *meta = Some(meta_map);
    }
}

/// Merges `patch` into `target`, keeping `meta` its mirror. Objects that end up empty are
/// removed, so the stored state is exactly its leaves (which is what lets the property tests
/// compare it with a flat path → leaf model).
pub(crate) fn merge_object(target: &mut JsonMap, meta: &mut JsonMap, patch: &JsonMap, now: u64) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                // `shift_remove` keeps the other keys in the order clients wrote them.
                target.shift_remove(key);
                meta.shift_remove(key);
            }
            Value::Object(sub_patch) => {
                if let (Some(Value::Object(sub)), Some(Value::Object(sub_meta))) =
                    (target.get_mut(key), meta.get_mut(key))
                {
                    merge_object(sub, sub_meta, sub_patch, now);
                    if sub.is_empty() {
                        target.shift_remove(key);
                        meta.shift_remove(key);
                    }
                    continue;
                }
                // A new key, or an object replacing a scalar or an array: build it from the
                // patch alone (dropping its nulls and empty objects).
                let mut sub = JsonMap::new();
                let mut sub_meta = JsonMap::new();
                merge_object(&mut sub, &mut sub_meta, sub_patch, now);
                if sub.is_empty() {
                    target.shift_remove(key);
                    meta.shift_remove(key);
                } else {
                    target.insert(key.clone(), Value::Object(sub));
                    meta.insert(key.clone(), Value::Object(sub_meta));
                }
            }
            leaf => {
                target.insert(key.clone(), leaf.clone());
                meta.insert(key.clone(), stamp(leaf, now));
            }
        }
    }
}

/// The compact metadata of a freshly written value: a scalar becomes `now`; arrays and the
/// objects inside them are mirrored element by element.
pub(crate) fn stamp(value: &Value, now: u64) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| stamp(v, now)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), stamp(v, now)))
                .collect(),
        ),
        _ => Value::from(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::test_map as map;
    use serde_json::json;

    fn merged(target: Value, meta: Value, patch: Value, now: u64) -> (Value, Value) {
        let (mut t, mut m) = (map(target), map(meta));
        merge_object(&mut t, &mut m, &map(patch), now);
        (Value::Object(t), Value::Object(m))
    }

    #[test]
    fn null_deletes_objects_merge_scalars_and_arrays_replace() {
        let (state, meta) = merged(
            json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2, 3], "f": "x"}),
            json!({"a": 1, "b": {"c": 1, "d": 1}, "e": [1, 1, 1], "f": 1}),
            json!({"a": null, "b": {"c": 5}, "e": ["RED"], "g": true}),
            9,
        );
        assert_eq!(
            state,
            json!({"b": {"c": 5, "d": 3}, "e": ["RED"], "f": "x", "g": true})
        );
        assert_eq!(
            meta,
            json!({"b": {"c": 9, "d": 1}, "e": [9], "f": 1, "g": 9})
        );
    }

    #[test]
    fn emptied_objects_are_pruned_and_all_null_objects_never_stored() {
        let (state, meta) = merged(
            json!({"a": {"b": {"c": 1}}, "k": 1}),
            json!({"a": {"b": {"c": 1}}, "k": 1}),
            json!({"a": {"b": {"c": null}}, "n": {"x": null}, "o": {}}),
            2,
        );
        assert_eq!(state, json!({"k": 1}));
        assert_eq!(meta, json!({"k": 1}));
    }

    #[test]
    fn type_changes_replace_and_restamp() {
        let (state, meta) = merged(
            json!({"a": 5, "b": {"c": 1}, "e": [1]}),
            json!({"a": 1, "b": {"c": 1}, "e": [1]}),
            json!({"a": {"x": 1, "y": null}, "b": 7, "e": {"z": [1, {"q": 2}]}}),
            3,
        );
        assert_eq!(
            state,
            json!({"a": {"x": 1}, "b": 7, "e": {"z": [1, {"q": 2}]}})
        );
        assert_eq!(
            meta,
            json!({"a": {"x": 3}, "b": 3, "e": {"z": [3, {"q": 3}]}})
        );
    }

    #[test]
    fn merge_keeps_key_order_on_delete() {
        let (state, _) = merged(
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"a": 1, "b": 1, "c": 1}),
            json!({"a": null}),
            1,
        );
        let keys: Vec<&String> = state
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn apply_state_null_clears_sections_but_keeps_the_shadow_fields() {
        let mut shadow = Shadow {
            desired: Some(map(json!({"a": 1}))),
            reported: Some(map(json!({"b": 1}))),
            metadata: Metadata {
                desired: Some(map(json!({"a": 1}))),
                reported: Some(map(json!({"b": 1}))),
            },
            version: 2,
        };
        apply_state(&mut shadow, &json!({"desired": null}), 5);
        assert_eq!(shadow.desired, None);
        assert_eq!(shadow.metadata.desired, None);
        assert!(shadow.reported.is_some());
        apply_state(&mut shadow, &Value::Null, 5);
        assert_eq!(shadow.reported, None);
        assert_eq!(shadow.metadata, Metadata::default());
        assert_eq!(shadow.version, 2);
    }
}
