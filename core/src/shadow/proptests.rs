//! Property tests against a flat reference model: a section is a map from key path to leaf
//! (scalars and whole arrays are leaves). In that model an update is an overlay with
//! deletions and the delta is "desired leaves that reported lacks or holds differently".

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::delta::delta;
use super::document::{JsonMap, ShadowSlot};
use super::limits::ShadowLimits;
use super::merge::{merge_object, stamp};
use super::names::{ShadowKey, ThingName};
use super::operation::{get, update};

type Path = Vec<String>;
type Flat = BTreeMap<Path, Value>;

fn flatten(map: &JsonMap) -> Flat {
    fn walk(map: &JsonMap, prefix: &mut Path, out: &mut Flat) {
        for (key, value) in map {
            prefix.push(key.clone());
            match value {
                Value::Object(sub) => walk(sub, prefix, out),
                leaf => {
                    out.insert(prefix.clone(), leaf.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = Flat::new();
    walk(map, &mut Vec::new(), &mut out);
    out
}

/// What a patch says, flattened: leaves it writes, paths it nulls, and paths where it puts an
/// object (which replace any leaf stored exactly there).
#[derive(Default)]
struct FlatPatch {
    leaves: Flat,
    nulls: Vec<Path>,
    objects: Vec<Path>,
}

fn flatten_patch(map: &JsonMap) -> FlatPatch {
    fn walk(map: &JsonMap, prefix: &mut Path, out: &mut FlatPatch) {
        for (key, value) in map {
            prefix.push(key.clone());
            match value {
                Value::Null => out.nulls.push(prefix.clone()),
                Value::Object(sub) => {
                    out.objects.push(prefix.clone());
                    walk(sub, prefix, out);
                }
                leaf => {
                    out.leaves.insert(prefix.clone(), leaf.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = FlatPatch::default();
    walk(map, &mut Vec::new(), &mut out);
    out
}

/// The reference merge: keep an old leaf unless the patch nulls it or an ancestor, writes a
/// leaf at it, above it or below it, or puts an object where it is; then add the patch's
/// leaves.
fn model_merge(old: &Flat, patch: &FlatPatch) -> Flat {
    let mut out: Flat = old
        .iter()
        .filter(|(path, _)| {
            !patch.nulls.iter().any(|n| path.starts_with(n))
                && !patch.objects.iter().any(|o| o == *path)
                && !patch
                    .leaves
                    .keys()
                    .any(|q| path.starts_with(q) || q.starts_with(path))
        })
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    out.extend(patch.leaves.iter().map(|(p, v)| (p.clone(), v.clone())));
    out
}

fn model_delta(desired: &Flat, reported: &Flat) -> Flat {
    desired
        .iter()
        .filter(|(path, value)| reported.get(*path) != Some(*value))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

/// State and metadata have the same shape: same keys, same array lengths, and a number in
/// the metadata wherever the state has a scalar.
fn mirrors(state: &Value, meta: &Value) -> bool {
    match (state, meta) {
        (Value::Object(s), Value::Object(m)) => {
            s.len() == m.len()
                && s.iter()
                    .all(|(k, v)| m.get(k).is_some_and(|mv| mirrors(v, mv)))
        }
        (Value::Array(s), Value::Array(m)) => {
            s.len() == m.len() && s.iter().zip(m).all(|(s, m)| mirrors(s, m))
        }
        (Value::Object(_) | Value::Array(_), _) => false,
        (_, m) => m.is_u64(),
    }
}

fn no_empty_objects(map: &JsonMap) -> bool {
    map.values().all(|v| match v {
        Value::Object(sub) => !sub.is_empty() && no_empty_objects(sub),
        _ => true,
    })
}

fn key() -> impl Strategy<Value = String> {
    "[abcd]"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..3).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[xy]{0,2}".prop_map(Value::from),
        prop::collection::vec((-2i64..2).prop_map(Value::from), 0..3).prop_map(Value::Array),
        prop::collection::vec(
            prop::collection::btree_map(key(), (0i64..2).prop_map(Value::from), 0..2)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1..3
        )
        .prop_map(Value::Array),
    ]
}

/// An object up to three levels deep; with `nulls`, some values are `null` and some objects
/// empty (patch material), without, a canonical stored section.
fn object(nulls: bool) -> impl Strategy<Value = JsonMap> {
    let value = if nulls {
        prop_oneof![4 => leaf(), 1 => Just(Value::Null)].boxed()
    } else {
        leaf().boxed()
    };
    let min = usize::from(!nulls);
    let tree = value.prop_recursive(3, 32, 4, move |inner| {
        prop::collection::btree_map(key(), inner, min..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    });
    prop::collection::btree_map(key(), tree, 0..5).prop_map(|m| m.into_iter().collect())
}

fn merged(base: &JsonMap, base_meta: &JsonMap, patch: &JsonMap, now: u64) -> (JsonMap, JsonMap) {
    let (mut state, mut meta) = (base.clone(), base_meta.clone());
    merge_object(&mut state, &mut meta, patch, now);
    (state, meta)
}

proptest! {
    #[test]
    fn merge_matches_the_flat_model(seed in object(true), patch in object(true)) {
        let (old, old_meta) = merged(&JsonMap::new(), &JsonMap::new(), &seed, 1);
        let (new, new_meta) = merged(&old, &old_meta, &patch, 2);
        let flat_patch = flatten_patch(&patch);
        prop_assert_eq!(flatten(&new), model_merge(&flatten(&old), &flat_patch));
        prop_assert!(no_empty_objects(&new));

        // Metadata mirrors the state, written leaves carry the new time, the rest keep theirs.
        prop_assert!(mirrors(&Value::Object(new.clone()), &Value::Object(new_meta.clone())));
        let (flat_meta, old_flat_meta) = (flatten(&new_meta), flatten(&old_meta));
        for (path, value) in flatten(&new) {
            let expected = if flat_patch.leaves.contains_key(&path) {
                stamp(&value, 2)
            } else {
                old_flat_meta.get(&path).cloned().unwrap()
            };
            prop_assert_eq!(flat_meta.get(&path), Some(&expected));
        }
    }

    #[test]
    fn delta_matches_the_flat_model(desired in object(false), reported in object(false)) {
        let got = delta(&desired, &reported).map(|d| flatten(&d)).unwrap_or_default();
        prop_assert_eq!(got, model_delta(&flatten(&desired), &flatten(&reported)));
    }

    #[test]
    fn update_sequences_keep_every_invariant(
        steps in prop::collection::vec((any::<bool>(), object(true)), 1..6)
    ) {
        let limits = ShadowLimits::default();
        let thing = ShadowKey::classic(ThingName::new("t").unwrap());
        let mut slot = ShadowSlot::default();
        let (mut model_desired, mut model_reported) = (Flat::new(), Flat::new());
        for (now, (is_desired, patch)) in (1u64..).zip(steps) {
            let section = if is_desired { "desired" } else { "reported" };
            let request = serde_json::json!({"state": {section: patch.clone()}}).to_string();
            let out = update(&slot, request.as_bytes(), now, &limits).unwrap();
            prop_assert_eq!(out.slot.version, now);
            let model = if is_desired { &mut model_desired } else { &mut model_reported };
            *model = model_merge(model, &flatten_patch(&patch));

            let shadow = out.slot.shadow.as_ref().unwrap();
            let flat_of = |s: &Option<JsonMap>| s.as_ref().map(flatten).unwrap_or_default();
            prop_assert_eq!(flat_of(&shadow.desired), model_desired.clone());
            prop_assert_eq!(flat_of(&shadow.reported), model_reported.clone());
            for (state, meta) in [
                (&shadow.desired, &shadow.metadata.desired),
                (&shadow.reported, &shadow.metadata.reported),
            ] {
                prop_assert_eq!(state.is_some(), meta.is_some());
                prop_assert!(state.as_ref().is_none_or(|s| !s.is_empty() && no_empty_objects(s)));
                if let (Some(s), Some(m)) = (state, meta) {
                    prop_assert!(mirrors(&Value::Object(s.clone()), &Value::Object(m.clone())));
                }
            }

            let expected_delta = model_delta(&model_desired, &model_reported);
            let delta_doc = out.delta.as_ref().map(|d| serde_json::from_slice::<Value>(d).unwrap());
            prop_assert_eq!(delta_doc.is_some(), !expected_delta.is_empty());
            if let Some(doc) = delta_doc {
                let state = doc["state"].as_object().cloned().unwrap_or_default();
                prop_assert_eq!(flatten(&state), expected_delta.clone());
            }
            let got: Value = serde_json::from_slice(&get(&thing, &out.slot, b"", now, &limits).unwrap()).unwrap();
            let got_delta = got["state"]["delta"].as_object().map(flatten).unwrap_or_default();
            prop_assert_eq!(got_delta, expected_delta);
            slot = out.slot;
        }
    }
}
