//! Metadata as AWS shows it: every leaf becomes `{"timestamp": n}`. These are borrowed
//! `Serialize` views written straight into the response bytes, so no metadata tree is built
//! per response.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::document::JsonMap;

/// `{"timestamp": n}`.
struct Timestamp(u64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("timestamp", &self.0)?;
        map.end()
    }
}

/// Stored compact metadata (numbers in the state's shape) expanded to AWS's form.
pub(crate) struct Stored<'a>(pub &'a Value);

impl Serialize for Stored<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => StoredMap(map).serialize(s),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Stored(item))?;
                }
                seq.end()
            }
            other => Timestamp(other.as_u64().unwrap_or(0)).serialize(s),
        }
    }
}

/// A stored metadata section expanded to AWS's form.
pub(crate) struct StoredMap<'a>(pub &'a JsonMap);

impl Serialize for StoredMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            out.serialize_entry(key, &Stored(value))?;
        }
        out.end()
    }
}

/// The metadata of an update request's `state`, as `/update/accepted` reports it: every
/// value the request wrote, `null`s included, stamped `now`.
pub(crate) struct Written<'a> {
    pub value: &'a Value,
    pub now: u64,
}

impl Serialize for Written<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(
                        key,
                        &Written {
                            value,
                            now: self.now,
                        },
                    )?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for value in items {
                    seq.serialize_element(&Written {
                        value,
                        now: self.now,
                    })?;
                }
                seq.end()
            }
            _ => Timestamp(self.now).serialize(s),
        }
    }
}

/// The metadata of a delta: for each delta path, the `desired` metadata found there ("its
/// values are equal to the metadata in the desired field").
pub(crate) struct OfDelta<'a> {
    pub delta: &'a JsonMap,
    pub desired_meta: &'a JsonMap,
}

impl Serialize for OfDelta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(None)?;
        for (key, value) in self.delta {
            match (value, self.desired_meta.get(key)) {
                (Value::Object(delta), Some(Value::Object(desired_meta))) => {
                    out.serialize_entry(
                        key,
                        &OfDelta {
                            delta,
                            desired_meta,
                        },
                    )?;
                }
                (_, Some(meta)) => out.serialize_entry(key, &Stored(meta))?,
                // Unreachable while metadata mirrors state; skipping keeps the output valid.
                (_, None) => {}
            }
        }
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    #[test]
    fn stored_expands_numbers_into_timestamps_and_mirrors_arrays() {
        let meta = json!({"a": 5, "b": {"c": 6}, "l": [7, {"x": 8}]});
        assert_eq!(
            text(&Stored(&meta)),
            r#"{"a":{"timestamp":5},"b":{"c":{"timestamp":6}},"l":[{"timestamp":7},{"x":{"timestamp":8}}]}"#
        );
    }

    #[test]
    fn written_stamps_every_request_value_including_nulls() {
        let state = json!({"desired": {"engine": null, "colors": ["RED"]}, "reported": null});
        assert_eq!(
            text(&Written {
                value: &state,
                now: 3
            }),
            r#"{"desired":{"engine":{"timestamp":3},"colors":[{"timestamp":3}]},"reported":{"timestamp":3}}"#
        );
    }

    #[test]
    fn delta_metadata_follows_delta_paths_into_desired_metadata() {
        let delta = json!({"lights": {"color": {"g": 255}}, "list": [1]});
        let meta = json!({"lights": {"color": {"r": 1, "g": 2, "b": 3}}, "list": [4], "other": 5});
        let (Value::Object(delta), Value::Object(desired_meta)) = (&delta, &meta) else {
            panic!("objects")
        };
        assert_eq!(
            text(&OfDelta {
                delta,
                desired_meta
            }),
            r#"{"lights":{"color":{"g":{"timestamp":2}}},"list":[{"timestamp":4}]}"#
        );
    }
}
