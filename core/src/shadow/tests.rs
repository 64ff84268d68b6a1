//! Operation-level tests: the request/response pairs of the AWS developer guide (timestamps
//! aside), every rejection, version continuity across delete, client-token echo.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::*;

const NOW: u64 = 1_591_057_529;

fn key() -> ShadowKey {
    ShadowKey::classic(ThingName::new("myThing").unwrap())
}

fn limits() -> ShadowLimits {
    ShadowLimits::default()
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn up(slot: &ShadowSlot, request: Value, now: u64) -> UpdateOutcome {
    update(slot, request.to_string().as_bytes(), now, &limits()).unwrap()
}

fn up_err(slot: &ShadowSlot, payload: &[u8]) -> Rejection {
    update(slot, payload, NOW, &limits()).unwrap_err()
}

fn get_doc(slot: &ShadowSlot, now: u64) -> Value {
    parse(&get(&key(), slot, b"", now, &limits()).unwrap())
}

/// A slot whose shadow is at `version`, holding `state`.
fn slot_at(version: u64, state: Value) -> ShadowSlot {
    let mut slot = ShadowSlot::default();
    for _ in 1..version {
        slot = up(&slot, json!({"state": {"reported": {"warmup": 1}}}), 1).slot;
    }
    let mut request = json!({"state": state});
    if version > 1 {
        request["state"]["reported"]["warmup"] = Value::Null;
    }
    up(&slot, request, 1).slot
}

#[test]
fn first_desired_update_is_accepted_with_delta_and_null_previous() {
    // device-shadow-data-flow.md, "When a client requests a state change".
    let out = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"color": {"r": 10}, "engine": "ON"}}}),
        100,
    );
    assert_eq!(
        parse(&out.accepted),
        json!({
            "state": {"desired": {"color": {"r": 10}, "engine": "ON"}},
            "metadata": {"desired": {"color": {"r": {"timestamp": 100}}, "engine": {"timestamp": 100}}},
            "version": 1,
            "timestamp": 100
        })
    );
    assert_eq!(
        parse(&out.delta.unwrap()),
        json!({
            "state": {"color": {"r": 10}, "engine": "ON"},
            "metadata": {"color": {"r": {"timestamp": 100}}, "engine": {"timestamp": 100}},
            "version": 1,
            "timestamp": 100
        })
    );
    assert_eq!(
        parse(&out.documents),
        json!({
            "previous": null,
            "current": {
                "state": {"desired": {"color": {"r": 10}, "engine": "ON"}},
                "metadata": {"desired": {"color": {"r": {"timestamp": 100}}, "engine": {"timestamp": 100}}},
                "version": 1
            },
            "timestamp": 100
        })
    );
    assert_eq!(out.slot.version, 1);
}

#[test]
fn device_report_that_matches_desired_clears_the_delta() {
    // device-shadow-data-flow.md, "When a device reports its current state".
    let first = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"color": {"r": 10}, "engine": "ON"}}}),
        100,
    );
    let out = up(
        &first.slot,
        json!({"state": {"reported": {"color": {"r": 10}, "engine": "ON"}}}),
        200,
    );
    assert_eq!(out.delta, None);
    assert_eq!(
        parse(&out.accepted),
        json!({
            "state": {"reported": {"color": {"r": 10}, "engine": "ON"}},
            "metadata": {"reported": {"color": {"r": {"timestamp": 200}}, "engine": {"timestamp": 200}}},
            "version": 2,
            "timestamp": 200
        })
    );
    let documents = parse(&out.documents);
    assert_eq!(documents["previous"], parse(&first.documents)["current"]);
    assert_eq!(
        documents["current"],
        json!({
            "state": {
                "desired": {"color": {"r": 10}, "engine": "ON"},
                "reported": {"color": {"r": 10}, "engine": "ON"}
            },
            "metadata": {
                "desired": {"color": {"r": {"timestamp": 100}}, "engine": {"timestamp": 100}},
                "reported": {"color": {"r": {"timestamp": 200}}, "engine": {"timestamp": 200}}
            },
            "version": 2
        })
    );
}

#[test]
fn optimistic_locking_example() {
    // device-shadow-data-flow.md, "Optimistic locking".
    let slot = slot_at(10, json!({"desired": {"colors": ["RED", "GREEN", "BLUE"]}}));
    assert_eq!(slot.version, 10);
    let stale = json!({
        "state": {"desired": {"colors": ["BLUE"]}},
        "version": 9,
        "clientToken": "426bfd96-e720-46d3-95cd-014e3ef12bb6"
    });
    let rejection = up_err(&slot, stale.to_string().as_bytes());
    let body = parse(&rejection.to_json(NOW));
    assert_eq!(
        body,
        json!({
            "code": 409,
            "message": "Version conflict",
            "timestamp": NOW,
            "clientToken": "426bfd96-e720-46d3-95cd-014e3ef12bb6"
        })
    );
    let out = up(
        &slot,
        json!({"state": {"desired": {"colors": ["BLUE"]}}, "version": 10}),
        NOW,
    );
    let doc = get_doc(&out.slot, NOW);
    assert_eq!(doc["state"]["desired"], json!({"colors": ["BLUE"]}));
    assert_eq!(doc["version"], 11);
}

#[test]
fn get_returns_the_aws_delta_state_example() {
    // device-shadow-document.md, "Delta state".
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {
            "desired": {"color": "RED", "state": "STOP"},
            "reported": {"color": "GREEN", "engine": "ON"}
        }}),
        12345,
    )
    .slot;
    let ts = json!({"timestamp": 12345});
    assert_eq!(
        get_doc(&slot, 123456789),
        json!({
            "state": {
                "desired": {"color": "RED", "state": "STOP"},
                "reported": {"color": "GREEN", "engine": "ON"},
                "delta": {"color": "RED", "state": "STOP"}
            },
            "metadata": {
                "desired": {"color": ts, "state": ts},
                "reported": {"color": ts, "engine": ts},
                "delta": {"color": ts, "state": ts}
            },
            "version": 1,
            "timestamp": 123456789
        })
    );
}

#[test]
fn nested_delta_keeps_its_path_and_metadata() {
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {
            "desired": {"lights": {"color": {"r": 255, "g": 255, "b": 255}}},
            "reported": {"lights": {"color": {"r": 255, "g": 0, "b": 255}}}
        }}),
        5,
    )
    .slot;
    let doc = get_doc(&slot, 6);
    assert_eq!(
        doc["state"]["delta"],
        json!({"lights": {"color": {"g": 255}}})
    );
    assert_eq!(
        doc["metadata"]["delta"],
        json!({"lights": {"color": {"g": {"timestamp": 5}}}})
    );
}

#[test]
fn message_order_example_publishes_cumulative_deltas() {
    // iot-device-shadows.md, "Message order".
    let slot = slot_at(9, json!({"reported": {"color": "blue"}}));
    let first = up(&slot, json!({"state": {"desired": {"color": "RED"}}}), 2);
    let delta = parse(first.delta.as_deref().unwrap());
    assert_eq!(
        (&delta["state"], &delta["version"]),
        (&json!({"color": "RED"}), &json!(10))
    );
    let second = up(
        &first.slot,
        json!({"state": {"desired": {"color": "GREEN"}}}),
        3,
    );
    let delta = parse(second.delta.as_deref().unwrap());
    assert_eq!(
        (&delta["state"], &delta["version"]),
        (&json!({"color": "GREEN"}), &json!(11))
    );
    let third = up(
        &second.slot,
        json!({"state": {"reported": {"color": "GREEN"}}}),
        4,
    );
    assert_eq!(third.delta, None);
    assert_eq!(third.slot.version, 12);
}

#[test]
fn deleting_a_reported_key_brings_it_back_into_the_delta() {
    // device-shadow-mqtt.md: "If an attribute is deleted from the reported section but
    // still exists in the desired section, it is included."
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"a": 1, "b": 2}, "reported": {"a": 1, "b": 2}}}),
        1,
    )
    .slot;
    let out = up(&slot, json!({"state": {"reported": {"b": null}}}), 2);
    let delta = parse(&out.delta.unwrap());
    assert_eq!(delta["state"], json!({"b": 2}));
    assert_eq!(delta["metadata"], json!({"b": {"timestamp": 1}}));
}

#[test]
fn null_deletes_a_key_and_the_accepted_echo_shows_it() {
    // device-shadow-data-flow.md, "Deleting a property from a shadow document".
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"engine": "ON", "x": 1}}}),
        1,
    )
    .slot;
    let out = up(&slot, json!({"state": {"desired": {"engine": null}}}), 2);
    assert_eq!(
        parse(&out.accepted),
        json!({
            "state": {"desired": {"engine": null}},
            "metadata": {"desired": {"engine": {"timestamp": 2}}},
            "version": 2,
            "timestamp": 2
        })
    );
    assert_eq!(
        get_doc(&out.slot, 3)["state"],
        json!({"desired": {"x": 1}, "delta": {"x": 1}})
    );
}

#[test]
fn desired_null_removes_the_section() {
    // device-shadow-document.md, "Empty shadow document properties".
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"color": "RED"}}}),
        1,
    )
    .slot;
    let out = up(
        &slot,
        json!({"state": {"reported": {"color": "red"}, "desired": null}}),
        2,
    );
    assert_eq!(out.delta, None);
    let doc = get_doc(&out.slot, 3);
    assert_eq!(doc["state"], json!({"reported": {"color": "red"}}));
    assert_eq!(
        doc["metadata"],
        json!({"reported": {"color": {"timestamp": 2}}})
    );
}

#[test]
fn emptied_shadow_still_exists_and_counts_versions() {
    // "Setting the device's shadow state to null does not delete the shadow."
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"a": 1}}}),
        1,
    )
    .slot;
    let out = up(&slot, json!({"state": null}), 2);
    assert_eq!(parse(&out.accepted)["state"], Value::Null);
    assert_eq!(
        get_doc(&out.slot, 3),
        json!({"state": {}, "metadata": {}, "version": 2, "timestamp": 3})
    );
    let out = up(&out.slot, json!({"state": {}}), 4);
    assert_eq!(out.slot.version, 3);
}

#[test]
fn arrays_replace_whole() {
    // device-shadow-document.md, "Array values in shadow documents".
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"colors": ["RED", "GREEN", "BLUE"]}}}),
        1,
    )
    .slot;
    let out = up(&slot, json!({"state": {"desired": {"colors": ["RED"]}}}), 2);
    let doc = get_doc(&out.slot, 3);
    assert_eq!(doc["state"]["desired"], json!({"colors": ["RED"]}));
    assert_eq!(
        doc["metadata"]["desired"],
        json!({"colors": [{"timestamp": 2}]})
    );
}

#[test]
fn array_with_null_is_rejected() {
    let r = up_err(
        &ShadowSlot::default(),
        br#"{"state":{"desired":{"colors":[null,"RED","GREEN"]}}}"#,
    );
    assert_eq!(
        (r.code, r.message.as_str()),
        (400, "State contains an invalid node")
    );
    let r = up_err(
        &ShadowSlot::default(),
        br#"{"state":{"desired":{"l":[[1,{"a":null}]]}}}"#,
    );
    assert_eq!(r.code, 400);
}

#[test]
fn delete_example_and_version_continuity() {
    // device-shadow-data-flow.md, "Deleting a shadow": accepted is {"version": 4, ...}, and
    // "Deleting a shadow does not reset its version number to 0".
    let slot = slot_at(4, json!({"desired": {"a": 1}}));
    let (deleted, accepted) = delete(&key(), &slot, b"", NOW, &limits()).unwrap();
    assert_eq!(parse(&accepted), json!({"version": 4, "timestamp": NOW}));
    assert_eq!(
        deleted,
        ShadowSlot {
            shadow: None,
            version: 4
        }
    );

    let missing = get(&key(), &deleted, b"", NOW, &limits()).unwrap_err();
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, "No shadow exists with name: 'myThing'")
    );
    let again = delete(&key(), &deleted, b"", NOW, &limits()).unwrap_err();
    assert_eq!(again.code, 404);

    // The current version of a deleted shadow is the deleted one's.
    let conflict = up_err(&deleted, br#"{"state":{"desired":{"b":2}},"version":0}"#);
    assert_eq!(conflict.code, 409);
    let out = up(
        &deleted,
        json!({"state": {"desired": {"b": 2}}, "version": 4}),
        NOW,
    );
    assert_eq!(out.slot.version, 5);
    let documents = parse(&out.documents);
    assert_eq!(documents["previous"], Value::Null);
    assert_eq!(documents["current"]["version"], 5);
    assert_eq!(get_doc(&out.slot, NOW)["state"]["desired"], json!({"b": 2}));
}

#[test]
fn named_shadow_404_quotes_the_shadow_name() {
    let named = ShadowKey::named(
        ThingName::new("mySimulatedThing").unwrap(),
        ShadowName::new("simShadow1").unwrap(),
    );
    let r = get(&named, &ShadowSlot::default(), b"", NOW, &limits()).unwrap_err();
    assert_eq!(
        parse(&r.to_json(NOW)),
        json!({"code": 404, "message": "No shadow exists with name: 'simShadow1'", "timestamp": NOW})
    );
}

#[test]
fn client_token_is_echoed_everywhere() {
    let token = "tok-1";
    let out = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"a": 1}}, "clientToken": token}),
        1,
    );
    for doc in [&out.accepted, out.delta.as_ref().unwrap(), &out.documents] {
        assert_eq!(parse(doc)["clientToken"], token);
    }
    let payload = json!({"clientToken": token}).to_string();
    let got = get(&key(), &out.slot, payload.as_bytes(), 2, &limits()).unwrap();
    assert_eq!(parse(&got)["clientToken"], token);
    let (deleted, accepted) = delete(&key(), &out.slot, payload.as_bytes(), 3, &limits()).unwrap();
    assert_eq!(
        parse(&accepted),
        json!({"version": 1, "timestamp": 3, "clientToken": token})
    );
    let r = get(&key(), &deleted, payload.as_bytes(), 4, &limits()).unwrap_err();
    assert_eq!(r.client_token.as_deref(), Some(token));
    let r = up_err(&out.slot, br#"{"clientToken":"tok-1","state":5}"#);
    assert_eq!(r.client_token.as_deref(), Some(token));
    // Without a token, no clientToken key.
    assert!(get_doc(&out.slot, 2).get("clientToken").is_none());
}

#[test]
fn get_and_delete_ignore_unusable_payloads() {
    let slot = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"a": 1}}}),
        1,
    )
    .slot;
    for payload in [
        &b"not json"[..],
        br#"{"clientToken":5}"#,
        br#"[1]"#,
        br#"{"version":"x"}"#,
    ] {
        let doc = parse(&get(&key(), &slot, payload, 2, &limits()).unwrap());
        assert!(doc.get("clientToken").is_none());
        assert!(delete(&key(), &slot, payload, 2, &limits()).is_ok());
    }
    let long = json!({"clientToken": "x".repeat(65)}).to_string();
    assert!(
        parse(&get(&key(), &slot, long.as_bytes(), 2, &limits()).unwrap())
            .get("clientToken")
            .is_none()
    );
}

#[test]
fn every_update_rejection() {
    let slot = ShadowSlot::default();
    let long_token = format!(r#"{{"state":{{}},"clientToken":"{}"}}"#, "x".repeat(65));
    let cases: &[(&[u8], u16, &str)] = &[
        (b"", 400, "Invalid JSON"),
        (b"{", 400, "Invalid JSON"),
        (b"[1,2]", 400, "Invalid JSON"),
        (b"\"state\"", 400, "Invalid JSON"),
        (
            b"{\"state\":{\"desired\":{\"a\":\"\xff\"}}}",
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        ),
        (
            br#"{"desired":{"a":1}}"#,
            400,
            "Missing required node: state",
        ),
        (br#"{"state":5}"#, 400, "State node must be an object"),
        (
            br#"{"state":[{"desired":{}}]}"#,
            400,
            "State node must be an object",
        ),
        (
            br#"{"state":{"desired":[1]}}"#,
            400,
            "Desired node must be an object",
        ),
        (
            br#"{"state":{"desired":"on"}}"#,
            400,
            "Desired node must be an object",
        ),
        (
            br#"{"state":{"reported":true}}"#,
            400,
            "Reported node must be an object",
        ),
        (
            br#"{"state":{"delta":{"a":1}}}"#,
            400,
            "State contains an invalid node",
        ),
        (
            br#"{"state":{"desired":{}},"version":"1"}"#,
            400,
            "Invalid version",
        ),
        (
            br#"{"state":{"desired":{}},"version":-1}"#,
            400,
            "Invalid version",
        ),
        (
            br#"{"state":{"desired":{}},"version":1.5}"#,
            400,
            "Invalid version",
        ),
        (long_token.as_bytes(), 400, "Invalid clientToken"),
        (
            br#"{"state":{},"clientToken":7}"#,
            400,
            "Invalid clientToken",
        ),
        (
            br#"{"state":{"reported":{"1":{"2":{"3":{"4":{"5":{"6":{"7":1}}}}}}}}}"#,
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        (
            br#"{"state":{"desired":{"1":{"2":{"3":{"4":{"5":[[1]]}}}}}}}"#,
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        (
            br#"{"state":{"desired":{"a":1}},"version":3}"#,
            409,
            "Version conflict",
        ),
    ];
    for (payload, code, message) in cases {
        let r = up_err(&slot, payload);
        assert_eq!(
            (r.code, r.message.as_str()),
            (*code, *message),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn depth_six_is_allowed_and_counts_from_the_section() {
    // reported, 1, 2, 3, 4, 5: six levels.
    let ok = br#"{"state":{"reported":{"1":{"2":{"3":{"4":{"5":{"6":1}}}}}}}}"#;
    assert!(update(&ShadowSlot::default(), ok, NOW, &limits()).is_ok());
    let ok_array = br#"{"state":{"desired":{"1":{"2":{"3":{"4":{"5":[1]}}}}}}}"#;
    assert!(update(&ShadowSlot::default(), ok_array, NOW, &limits()).is_ok());
    let strict = ShadowLimits {
        max_depth: 2,
        ..ShadowLimits::default()
    };
    let r = update(
        &ShadowSlot::default(),
        br#"{"state":{"desired":{"a":{"b":{}}}}}"#,
        NOW,
        &strict,
    )
    .unwrap_err();
    assert_eq!(
        r.message,
        "JSON contains too many levels of nesting; maximum is 2"
    );
}

#[test]
fn size_limit_counts_the_resulting_desired_plus_reported() {
    let small = ShadowLimits {
        max_state_bytes: 30,
        ..ShadowLimits::default()
    };
    // {"a":"0123456789"} is 18 bytes; twice is 36 > 30.
    let slot = update(
        &ShadowSlot::default(),
        br#"{"state":{"desired":{"a":"0123456789"}}}"#,
        1,
        &small,
    )
    .unwrap()
    .slot;
    let r = update(
        &slot,
        br#"{"clientToken":"t","state":{"reported":{"a":"0123456789"}}}"#,
        2,
        &small,
    )
    .unwrap_err();
    assert_eq!(
        (r.code, r.message.as_str()),
        (413, "The payload exceeds the maximum size allowed")
    );
    assert_eq!(r.client_token.as_deref(), Some("t"));
    // A request bigger than the limit is fine when the result is not.
    let shrink = br#"{"state":{"desired":{"a":null},"reported":{"b":1}},"clientToken":"a-rather-long-token"}"#;
    assert!(shrink.len() > 30);
    assert!(update(&slot, shrink, 3, &small).is_ok());
    // Metadata does not count: the 8 KB default holds a state just under it.
    let value = "x".repeat(8192 - r#"{"k":""}"#.len());
    let full = json!({"state": {"desired": {"k": value}}}).to_string();
    let out = update(&ShadowSlot::default(), full.as_bytes(), 1, &limits()).unwrap();
    assert_eq!(out.slot.shadow.as_ref().unwrap().state_bytes(), 8192);
    let over = json!({"state": {"reported": {"z": 1}}}).to_string();
    assert_eq!(
        update(&out.slot, over.as_bytes(), 2, &limits())
            .unwrap_err()
            .code,
        413
    );
}

#[test]
fn unknown_top_level_keys_are_ignored() {
    let out = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"a": 1}}, "metadata": {"x": 1}, "timestamp": 5}),
        1,
    );
    assert_eq!(get_doc(&out.slot, 2)["state"]["desired"], json!({"a": 1}));
}

#[test]
fn slot_survives_persistence_between_updates() {
    let out = up(
        &ShadowSlot::default(),
        json!({"state": {"desired": {"a": [1, {"b": 2}]}}}),
        1,
    );
    let stored = serde_json::to_vec(&out.slot).unwrap();
    let slot: ShadowSlot = serde_json::from_slice(&stored).unwrap();
    assert_eq!(slot, out.slot);
    let next = up(
        &slot,
        json!({"state": {"reported": {"a": [1, {"b": 2}]}}}),
        2,
    );
    assert_eq!(next.delta, None);
    assert_eq!(next.slot.version, 2);
}
