"""Device Shadow service over MQTT: the reserved topics
`$aws/things/{thing}/shadow[/name/{shadow}]/{get|update|delete}` and their
`/accepted`, `/rejected`, `/update/delta` and `/update/documents` answers, for classic and
named shadows; every error the MQTT side can reach; optimistic locking; concurrent
writers; version continuity across a delete.

Where the AWS guide is silent, the tests assert what core/src/shadow documents (noted in
each test)."""
import json
import threading

import pytest

import mqtt_raw as r
from shadow_helpers import ShadowMqtt, assert_error, now_ok, prefix, stamps, thing_name

pytestmark = pytest.mark.iotcore

KINDS = [None, "cfg"]
KIND_IDS = ["classic", "named"]


def no_shadow_message(thing, shadow):
    # AWS quotes the thing name for a classic shadow, the shadow name for a named one.
    return f"No shadow exists with name: '{shadow if shadow is not None else thing}'"


@pytest.mark.parametrize("shadow", KINDS, ids=KIND_IDS)
def test_update_get_delete_round_trip(broker, client_factory, uid, shadow):
    thing = thing_name(uid)
    s = ShadowMqtt(client_factory(), thing, shadow)

    # get / delete of a shadow that does not exist: 404 with AWS's text, token echoed
    kind, body = s.request("get", {"clientToken": "g0"})
    assert kind == "rejected"
    assert_error(body, 404, no_shadow_message(thing, shadow), "g0")
    kind, body = s.request("delete", b"")
    assert kind == "rejected"
    assert_error(body, 404, no_shadow_message(thing, shadow))

    # first update creates version 1
    acc = s.update({"state": {"desired": {"color": "RED", "power": 3}}, "clientToken": "u1"})
    assert now_ok(acc["timestamp"])
    assert acc["state"] == {"desired": {"color": "RED", "power": 3}}
    assert stamps(acc["metadata"], acc["timestamp"]) == {"desired": {"color": "T", "power": "T"}}
    assert (acc["version"], acc["clientToken"]) == (1, "u1")
    assert set(acc) == {"state", "metadata", "version", "timestamp", "clientToken"}

    delta = s.wait("update/delta")
    assert delta["state"] == {"color": "RED", "power": 3}
    assert stamps(delta["metadata"]) == {"color": "T", "power": "T"}
    assert (delta["version"], delta["clientToken"]) == (1, "u1")
    assert now_ok(delta["timestamp"])

    docs = s.wait("update/documents")
    # core: `previous` is null when the update created the shadow (the guide is silent)
    assert docs["previous"] is None
    assert docs["current"]["state"] == {"desired": {"color": "RED", "power": 3}}
    assert stamps(docs["current"]["metadata"]) == {"desired": {"color": "T", "power": "T"}}
    assert docs["current"]["version"] == 1
    assert docs["clientToken"] == "u1" and now_ok(docs["timestamp"])

    # the device reports what was asked: no delta any more
    acc = s.update({"state": {"reported": {"color": "RED", "power": 3}}, "clientToken": "u2"})
    assert acc["state"] == {"reported": {"color": "RED", "power": 3}}
    assert acc["version"] == 2
    docs = s.wait("update/documents")
    assert docs["previous"]["version"] == 1
    assert docs["previous"]["state"] == {"desired": {"color": "RED", "power": 3}}
    assert docs["current"]["version"] == 2
    assert docs["current"]["state"] == {"desired": {"color": "RED", "power": 3},
                                        "reported": {"color": "RED", "power": 3}}
    assert stamps(docs["current"]["metadata"]) == {"desired": {"color": "T", "power": "T"},
                                                   "reported": {"color": "T", "power": "T"}}
    s.expect_none("update/delta", 0.3)

    got = s.get({"clientToken": "g1"})
    assert got["state"] == {"desired": {"color": "RED", "power": 3},
                            "reported": {"color": "RED", "power": 3}}
    assert "delta" not in got["state"] and "delta" not in got["metadata"]
    assert stamps(got["metadata"]) == {"desired": {"color": "T", "power": "T"},
                                       "reported": {"color": "T", "power": "T"}}
    assert (got["version"], got["clientToken"]) == (2, "g1")
    assert now_ok(got["timestamp"])

    # delete: the deleted shadow's version, token echoed; then it is gone
    deleted = s.delete({"clientToken": "d1"})
    assert (deleted["version"], deleted["clientToken"]) == (2, "d1")
    assert now_ok(deleted["timestamp"])
    assert set(deleted) == {"version", "timestamp", "clientToken"}
    kind, body = s.request("get", b"")
    assert kind == "rejected"
    assert_error(body, 404, no_shadow_message(thing, shadow))
    kind, body = s.request("delete", {"clientToken": "d2"})
    assert kind == "rejected"
    assert_error(body, 404, no_shadow_message(thing, shadow), "d2")


def test_mqtt_311_client_uses_shadows(broker, client_factory, uid):
    thing = thing_name(uid)
    s = ShadowMqtt(client_factory(version=4), thing, "v311")
    acc = s.update({"state": {"reported": {"proto": 4}}, "clientToken": "v4"})
    assert (acc["version"], acc["clientToken"]) == (1, "v4")
    assert s.wait("update/documents")["current"]["state"] == {"reported": {"proto": 4}}
    assert s.get()["state"] == {"reported": {"proto": 4}}
    kind, body = s.request("update", b"nope")
    assert kind == "rejected"
    assert_error(body, 400, "Invalid JSON")


def test_wildcard_subscribers_see_every_things_answers(broker, client_factory, uid):
    """An application watching all things: `$aws/things/+/shadow/name/+/update/documents`
    and `$aws/things/+/shadow/+/accepted` (a `+` below `$aws` matches as usual)."""
    things = [thing_name(uid, f"-{i}") for i in range(2)]
    app = client_factory()
    assert app.subscribe([("$aws/things/+/shadow/name/+/update/documents", 1),
                          ("$aws/things/+/shadow/+/accepted", 1)]) == [1, 1]
    device = client_factory()
    for t in things:
        ShadowMqtt(device, t, "w", responses=("update/accepted",)).update({"state": {"reported": {"t": t}}})
    # thing 0 gets a classic shadow, then both classic shadows are read: thing 0's
    # update/accepted and get/accepted match `shadow/+/accepted`, thing 1's get/rejected
    # does not (nor do the named shadows' 8-level update/accepted topics)
    classic = [ShadowMqtt(device, t, responses=("update/accepted", "get/accepted", "get/rejected"))
               for t in things]
    classic[0].update({"state": {"desired": {"c": 0}}})
    assert classic[0].get()["version"] == 1
    assert classic[1].request("get")[0] == "rejected"
    got = app.get_n(4)
    docs = sorted((m for m in got if m.topic.endswith("/update/documents")), key=lambda m: m.topic)
    assert [m.topic for m in docs] == sorted(f"{prefix(t, 'w')}/update/documents" for t in things)
    for m in docs:
        t = m.topic.split("/")[2]
        assert json.loads(m.payload)["current"]["state"] == {"reported": {"t": t}}
    gets = [m for m in got if not m.topic.endswith("/update/documents")]
    assert [m.topic for m in gets] == [f"{prefix(things[0])}/update/accepted",
                                       f"{prefix(things[0])}/get/accepted"]
    assert json.loads(gets[1].payload)["state"] == {"desired": {"c": 0}, "delta": {"c": 0}}
    app.expect_none(0.3)


def test_classic_and_named_shadows_are_separate(broker, client_factory, uid):
    thing = thing_name(uid)
    c = client_factory()
    classic = ShadowMqtt(c, thing)
    named_a = ShadowMqtt(c, thing, "a")
    named_b = ShadowMqtt(c, thing, "b")

    assert named_a.update({"state": {"reported": {"x": 1}}})["version"] == 1
    assert named_a.update({"state": {"reported": {"x": 2}}})["version"] == 2
    assert named_b.update({"state": {"desired": {"y": 1}}})["version"] == 1
    for s, name in ((classic, thing), ):
        kind, body = s.request("get")
        assert kind == "rejected"
        assert_error(body, 404, f"No shadow exists with name: '{name}'")
    assert classic.update({"state": {"reported": {"z": 0}}})["version"] == 1

    assert named_a.get()["state"] == {"reported": {"x": 2}}
    assert named_b.get()["state"] == {"desired": {"y": 1}, "delta": {"y": 1}}
    assert classic.get()["state"] == {"reported": {"z": 0}}

    named_a.delete()
    assert named_b.get()["version"] == 1
    assert classic.get()["version"] == 1
    # the responses of one shadow never arrive on another's topics
    for s in (classic, named_a, named_b):
        s.expect_none("update/delta" if s is classic else "get/rejected", 0.1)


def test_delta_and_documents_on_nested_documents(broker, client_factory, uid):
    s = ShadowMqtt(client_factory(), thing_name(uid))
    # AWS's nested delta example: the delta keeps the path to the root
    s.update({"state": {
        "desired": {"lights": {"color": {"r": 255, "g": 255, "b": 255}}, "colors": ["RED", "GREEN"]},
        "reported": {"lights": {"color": {"r": 255, "g": 0, "b": 255}}, "colors": ["RED"],
                     "engine": "ON"},
    }, "clientToken": "n1"})
    delta = s.wait("update/delta")
    # arrays compare whole: the entire desired array is copied into the delta
    assert delta["state"] == {"lights": {"color": {"g": 255}}, "colors": ["RED", "GREEN"]}
    assert stamps(delta["metadata"]) == {"lights": {"color": {"g": "T"}}, "colors": ["T", "T"]}
    assert (delta["version"], delta["clientToken"]) == (1, "n1")
    s.wait("update/documents")

    # reporting the same array in another order is still a difference
    acc = s.update({"state": {"reported": {"colors": ["GREEN", "RED"]}}, "clientToken": "n2"})
    assert acc["state"] == {"reported": {"colors": ["GREEN", "RED"]}}
    assert stamps(acc["metadata"], acc["timestamp"]) == {"reported": {"colors": ["T", "T"]}}
    # core: the delta is published whenever desired and reported still differ after an
    # accepted update, and holds the whole current delta ("regardless of whether these
    # attributes were contained in the current update message")
    delta = s.wait("update/delta")
    assert delta["state"] == {"lights": {"color": {"g": 255}}, "colors": ["RED", "GREEN"]}
    assert delta["clientToken"] == "n2" and delta["version"] == 2
    s.wait("update/documents")

    # reporting the array and g: nothing differs any more, no delta is published
    s.update({"state": {"reported": {"colors": ["RED", "GREEN"], "lights": {"color": {"g": 255}}}}})
    docs = s.wait("update/documents")
    assert docs["current"]["state"]["reported"] == {
        "lights": {"color": {"r": 255, "g": 255, "b": 255}}, "colors": ["RED", "GREEN"], "engine": "ON"}
    assert docs["previous"]["state"]["reported"]["lights"] == {"color": {"r": 255, "g": 0, "b": 255}}
    assert (docs["previous"]["version"], docs["current"]["version"]) == (2, 3)
    s.expect_none("update/delta", 0.3)

    # null deletes one nested key; an object emptied by it disappears; the accepted
    # document echoes the nulls with metadata for them
    acc = s.update({"state": {"desired": {"lights": {"color": {"b": None}}, "fan": {"speed": 2}},
                              "reported": {"engine": None}},
                    "clientToken": "n4"})
    assert acc["state"] == {"desired": {"lights": {"color": {"b": None}}, "fan": {"speed": 2}},
                            "reported": {"engine": None}}
    assert stamps(acc["metadata"], acc["timestamp"]) == {
        "desired": {"lights": {"color": {"b": "T"}}, "fan": {"speed": "T"}},
        "reported": {"engine": "T"}}
    delta = s.wait("update/delta")
    assert delta["state"] == {"fan": {"speed": 2}}
    assert stamps(delta["metadata"]) == {"fan": {"speed": "T"}}
    docs = s.wait("update/documents")
    assert docs["previous"]["state"]["desired"] == {
        "lights": {"color": {"r": 255, "g": 255, "b": 255}}, "colors": ["RED", "GREEN"]}
    assert docs["current"]["state"] == {
        "desired": {"lights": {"color": {"r": 255, "g": 255}}, "colors": ["RED", "GREEN"],
                    "fan": {"speed": 2}},
        "reported": {"lights": {"color": {"r": 255, "g": 255, "b": 255}}, "colors": ["RED", "GREEN"]},
    }
    assert stamps(docs["current"]["metadata"]) == {
        "desired": {"lights": {"color": {"r": "T", "g": "T"}}, "colors": ["T", "T"],
                    "fan": {"speed": "T"}},
        "reported": {"lights": {"color": {"r": "T", "g": "T", "b": "T"}}, "colors": ["T", "T"]},
    }
    assert (docs["previous"]["version"], docs["current"]["version"], docs["clientToken"]) == (3, 4, "n4")

    # a key deleted from reported but still desired comes back into the delta
    s.update({"state": {"reported": {"lights": None}}})
    delta = s.wait("update/delta")
    assert delta["state"] == {"lights": {"color": {"r": 255, "g": 255}}, "fan": {"speed": 2}}
    assert "clientToken" not in delta
    s.wait("update/documents")

    got = s.get()
    assert got["state"]["delta"] == {"lights": {"color": {"r": 255, "g": 255}}, "fan": {"speed": 2}}
    assert stamps(got["metadata"]["delta"]) == {"lights": {"color": {"r": "T", "g": "T"}},
                                               "fan": {"speed": "T"}}
    assert got["version"] == 5


def test_desired_null_removes_the_section(broker, client_factory, uid):
    s = ShadowMqtt(client_factory(), thing_name(uid), "nulls")
    s.update({"state": {"desired": {"color": "red", "mode": 1}, "reported": {"color": "blue"}}})
    assert s.wait("update/delta")["state"] == {"color": "red", "mode": 1}
    s.wait("update/documents")
    # AWS's example: "desired": null removes the desired property
    acc = s.update({"state": {"reported": {"color": "red"}, "desired": None}, "clientToken": "dn"})
    assert acc["state"] == {"reported": {"color": "red"}, "desired": None}
    assert stamps(acc["metadata"], acc["timestamp"]) == {"reported": {"color": "T"}, "desired": "T"}
    assert acc["version"] == 2
    docs = s.wait("update/documents")
    assert docs["current"]["state"] == {"reported": {"color": "red"}}
    assert stamps(docs["current"]["metadata"]) == {"reported": {"color": "T"}}
    assert docs["previous"]["state"]["desired"] == {"color": "red", "mode": 1}
    s.expect_none("update/delta", 0.3)
    got = s.get()
    assert got["state"] == {"reported": {"color": "red"}}
    assert set(got["metadata"]) == {"reported"}
    assert got["version"] == 2

    # "Setting the device's shadow state to null does not delete the shadow. The shadow
    # version will be incremented on the next update."
    acc = s.update({"state": None, "clientToken": "sn"})
    assert acc["state"] is None and acc["version"] == 3
    docs = s.wait("update/documents")
    assert docs["current"] == {"state": {}, "metadata": {}, "version": 3}
    got = s.get()
    assert (got["state"], got["metadata"], got["version"]) == ({}, {}, 3)
    assert s.update({"state": {"desired": {"a": 1}}})["version"] == 4


# -------------------------------------------------------------------- errors (400, 415)

TOKEN65 = "t" * 65


def deep(levels: int) -> dict:
    """A section object nesting `levels` objects (the section itself is level 1)."""
    inner = {"leaf": 1}
    for i in range(levels - 1):
        inner = {f"l{levels - i}": inner}
    return inner


BAD_UPDATES = [
    # (id, payload, code, message, echoed token)
    ("not-json", b"{not json", 400, "Invalid JSON", None),
    ("json-array", b"[1, 2]", 400, "Invalid JSON", None),
    ("json-string", b'"state"', 400, "Invalid JSON", None),
    ("empty", b"", 400, "Invalid JSON", None),
    ("missing-state", {"desired": {"a": 1}, "clientToken": "m1"}, 400, "Missing required node: state", "m1"),
    ("state-not-object", {"state": [1], "clientToken": "m2"}, 400, "State node must be an object", "m2"),
    ("desired-array", {"state": {"desired": [1]}, "clientToken": "m3"}, 400, "Desired node must be an object", "m3"),
    ("desired-string", {"state": {"desired": "on"}}, 400, "Desired node must be an object", None),
    ("reported-number", {"state": {"reported": 7}, "clientToken": "m4"}, 400, "Reported node must be an object", "m4"),
    ("version-string", {"state": {"desired": {"a": 1}}, "version": "1", "clientToken": "m5"}, 400, "Invalid version", "m5"),
    ("version-negative", {"state": {"desired": {"a": 1}}, "version": -1}, 400, "Invalid version", None),
    ("version-float", {"state": {"desired": {"a": 1}}, "version": 1.5}, 400, "Invalid version", None),
    ("token-65-bytes", {"state": {"desired": {"a": 1}}, "clientToken": TOKEN65}, 400, "Invalid clientToken", None),
    ("token-not-string", {"state": {"desired": {"a": 1}}, "clientToken": 12}, 400, "Invalid clientToken", None),
    ("depth-7-desired", {"state": {"desired": deep(7)}, "clientToken": "m6"}, 400,
     "JSON contains too many levels of nesting; maximum is 6", "m6"),
    ("depth-7-reported-array", {"state": {"reported": {"a": {"b": {"c": {"d": {"e": {"f": [1]}}}}}}}}, 400,
     "JSON contains too many levels of nesting; maximum is 6", None),
    ("null-in-array", {"state": {"desired": {"colors": [None, "RED"]}}, "clientToken": "m7"}, 400,
     "State contains an invalid node", "m7"),
    ("unknown-state-node", {"state": {"delta": {"a": 1}}}, 400, "State contains an invalid node", None),
    ("not-utf8", b'{"state":{"desired":{"a":"\xff"}}}', 415,
     "Unsupported documented encoding; supported encoding is UTF-8", None),
]


@pytest.mark.parametrize("shadow", KINDS, ids=KIND_IDS)
def test_update_rejections(broker, client_factory, uid, shadow):
    thing = thing_name(uid)
    s = ShadowMqtt(client_factory(), thing, shadow)
    for case, payload, code, message, token in BAD_UPDATES:
        body = s.update_rejected(payload)
        try:
            assert_error(body, code, message, token)
        except AssertionError as e:
            raise AssertionError(f"case {case}: {e}") from None
    # nothing was created, nothing else was published
    s.expect_none("update/accepted", 0.1)
    s.expect_none("update/delta", 0)
    s.expect_none("update/documents", 0)
    kind, body = s.request("get")
    assert kind == "rejected"
    assert_error(body, 404, no_shadow_message(thing, shadow))
    # the limits themselves are allowed: 64-byte token, 6 levels
    acc = s.update({"state": {"desired": deep(6), "reported": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}},
                    "clientToken": "k" * 64})
    assert (acc["version"], acc["clientToken"]) == (1, "k" * 64)


def test_get_and_delete_ignore_their_payload(broker, client_factory, uid):
    """AWS: the content of a /get or /delete request is ignored (core echoes a usable
    clientToken, and ignores a bad one rather than rejecting the request)."""
    s = ShadowMqtt(client_factory(), thing_name(uid))
    s.update({"state": {"reported": {"a": 1}}})
    got = s.get(b"{garbage")
    assert got["version"] == 1 and "clientToken" not in got
    got = s.get({"clientToken": TOKEN65})
    assert got["version"] == 1 and "clientToken" not in got
    got = s.get({"clientToken": "ok", "version": 99})
    assert got["clientToken"] == "ok"
    deleted = s.delete({"version": 42, "clientToken": "del"})
    assert (deleted["version"], deleted["clientToken"]) == (1, "del")


BAD_NAMES = [
    # (thing, shadow, what the message must mention)
    ("bad.thing", None, "thing name"),
    ("t" * 129, None, "thing name"),
    ("ok-thing", "bad.shadow", "shadow name"),
    ("ok-thing", "s" * 65, "shadow name"),
]


@pytest.mark.parametrize("op", ["get", "update", "delete"])
def test_bad_thing_or_shadow_name_on_the_topic(broker, client_factory, uid, op):
    c = client_factory()
    for thing, shadow, what in BAD_NAMES:
        if thing == "ok-thing":
            thing = thing_name(uid)
        s = ShadowMqtt(c, thing, shadow, responses=(f"{op}/accepted", f"{op}/rejected"))
        kind, body = s.request(op, {"state": {"desired": {"a": 1}}, "clientToken": "bn"})
        assert kind == "rejected", body
        assert_error(body, 400, None, "bn")
        assert what in body["message"], body
    # the longest names AWS allows, with every allowed punctuation, work
    thing = ("T:h_i-n" + "g" * 128)[:128]
    s = ShadowMqtt(c, thing, ("s:h_a-d" + "w" * 64)[:64])
    kind, body = s.request("update", {"state": {"desired": {"a": 1}}})
    assert kind == "accepted" and body["version"] == 1


# -------------------------------------------------------------------- 409, 413

def test_optimistic_locking_with_version(broker, client_factory, uid):
    s = ShadowMqtt(client_factory(), thing_name(uid), "lock")
    # core: a new shadow is at version 0, so a request carrying version 1 conflicts and one
    # carrying 0 creates it (the guide only says a version must match the current one)
    body = s.update_rejected({"state": {"desired": {"colors": ["RED"]}}, "version": 1, "clientToken": "v1"})
    assert_error(body, 409, "Version conflict", "v1")
    acc = s.update({"state": {"desired": {"colors": ["RED", "GREEN", "BLUE"]}}, "version": 0})
    assert acc["version"] == 1
    s.wait("update/delta")
    s.wait("update/documents")
    # the guide's example: an older version is refused, the matching one accepted
    body = s.update_rejected({"state": {"desired": {"colors": ["BLUE"]}}, "version": 0,
                              "clientToken": "426bfd96-e720-46d3-95cd-014e3ef12bb6"})
    assert_error(body, 409, "Version conflict", "426bfd96-e720-46d3-95cd-014e3ef12bb6")
    body = s.update_rejected({"state": {"desired": {"colors": ["BLUE"]}}, "version": 7})
    assert_error(body, 409, "Version conflict")
    # a refused update changes nothing and publishes no delta or documents
    s.expect_none("update/documents", 0.2)
    s.expect_none("update/delta", 0)
    got = s.get()
    assert (got["state"]["desired"], got["version"]) == ({"colors": ["RED", "GREEN", "BLUE"]}, 1)
    acc = s.update({"state": {"desired": {"colors": ["BLUE"]}}, "version": 1, "clientToken": "ok"})
    assert (acc["version"], acc["clientToken"]) == (2, "ok")
    # "A client can bypass version matching by not including a version"
    assert s.update({"state": {"desired": {"colors": ["RED"]}}})["version"] == 3
    assert s.get()["state"]["desired"] == {"colors": ["RED"]}


def test_state_over_8kb_after_merge_is_413(broker, client_factory, uid):
    thing = thing_name(uid)
    c = client_factory()
    s = ShadowMqtt(c, thing)
    # {"a":"xxx..."} is 8 bytes plus the string: exactly 8192 bytes is allowed
    acc = s.update({"state": {"desired": {"a": "x" * 8184}}, "clientToken": "big"})
    assert acc["version"] == 1
    # a small update that would grow the stored state past 8 KB is refused
    body = s.update_rejected({"state": {"reported": {"b": 1}}, "clientToken": "over"})
    assert_error(body, 413, "The payload exceeds the maximum size allowed", "over")
    body = s.update_rejected({"state": {"desired": {"b": True}}})
    assert_error(body, 413, "The payload exceeds the maximum size allowed")
    got = s.get()
    assert got["version"] == 1 and got["state"]["desired"] == {"a": "x" * 8184}
    # replacing the big value by a smaller one is fine, and so is a request over 8 KB that
    # only deletes (core: the limit is on the resulting document)
    assert s.update({"state": {"desired": {"a": "y" * 8000, "b": 1}}})["version"] == 2
    assert s.update({"state": {"desired": {"a": None, "z" * 9000: None}}})["version"] == 3
    assert s.get()["state"] == {"desired": {"b": 1}, "delta": {"b": 1}}

    other = ShadowMqtt(c, thing, "big")
    body = other.update_rejected({"state": {"desired": {"a": "x" * 4100}, "reported": {"a": "x" * 4100}},
                                  "clientToken": "both"})
    # desired + reported count together: 4108 + 4108 > 8192
    assert_error(body, 413, "The payload exceeds the maximum size allowed", "both")
    kind, body = other.request("get")
    assert kind == "rejected" and body["code"] == 404


def test_max_state_bytes_override(broker_factory, client_factory, uid):
    b = broker_factory(max_state_bytes=100, max_depth=2, max_client_token_bytes=4)
    s = ShadowMqtt(client_factory(broker_=b), thing_name(uid))
    assert s.update({"state": {"desired": {"a": "x" * 92}}})["version"] == 1  # 100 bytes
    assert_error(s.update_rejected({"state": {"desired": {"b": 0}}}), 413,
                 "The payload exceeds the maximum size allowed")
    assert_error(s.update_rejected({"state": {"reported": {"a": {"b": {}}}}}), 400,
                 "JSON contains too many levels of nesting; maximum is 2")
    assert_error(s.update_rejected({"state": {"reported": {"a": 1}}, "clientToken": "12345"}), 400,
                 "Invalid clientToken")
    acc = s.update({"state": {"desired": None, "reported": {"a": {"b": 1}}}, "clientToken": "1234"})
    assert (acc["version"], acc["clientToken"]) == (2, "1234")


# -------------------------------------------------------------------- versions

def test_version_continues_after_delete(broker, client_factory, uid):
    thing = thing_name(uid)
    s = ShadowMqtt(client_factory(), thing, "cont")
    for v in (1, 2, 3):
        assert s.update({"state": {"reported": {"n": v}}})["version"] == v
        s.wait("update/documents")
    assert s.delete()["version"] == 3
    kind, body = s.request("get")
    assert kind == "rejected" and body["code"] == 404
    # "deleting a shadow does not reset its version number to 0": the re-created shadow
    # continues; core: a deleted shadow's current version is the deleted one's, so a
    # request carrying it is accepted and any other conflicts
    assert_error(s.update_rejected({"state": {"reported": {"n": 0}}, "version": 0}), 409, "Version conflict")
    acc = s.update({"state": {"reported": {"n": 4}}, "version": 3, "clientToken": "re"})
    assert acc["version"] == 4
    docs = s.wait("update/documents")
    # the old content is gone: the re-created shadow has no previous document
    assert docs["previous"] is None
    assert docs["current"]["state"] == {"reported": {"n": 4}} and docs["current"]["version"] == 4
    got = s.get()
    assert (got["state"], got["version"]) == ({"reported": {"n": 4}}, 4)
    # a second delete / re-create keeps counting
    assert s.delete()["version"] == 4
    assert s.update({"state": {"desired": {"n": 5}}})["version"] == 5


def test_concurrent_writers_without_versions_lose_nothing(broker, client_factory, uid):
    thing = thing_name(uid)
    n = 15
    writers = [ShadowMqtt(client_factory(), thing) for _ in range(2)]
    versions = [[], []]
    errors = []

    def run(i):
        try:
            for k in range(n):
                kind, body = writers[i].request(
                    "update", {"state": {"reported": {f"w{i}_{k}": k}}, "clientToken": f"w{i}-{k}"},
                    match_token=True)
                assert kind == "accepted", body
                versions[i].append(body["version"])
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # every update got its own version, 1..2n, and each writer saw its own increase
    assert sorted(versions[0] + versions[1]) == list(range(1, 2 * n + 1))
    assert versions[0] == sorted(versions[0]) and versions[1] == sorted(versions[1])
    reader = ShadowMqtt(client_factory(), thing, responses=("get/accepted", "get/rejected"))
    got = reader.get()
    assert got["version"] == 2 * n
    assert got["state"]["reported"] == {f"w{i}_{k}": k for i in range(2) for k in range(n)}


def test_concurrent_writers_with_versions_get_409_and_no_lost_update(broker, client_factory, uid):
    """Two clients increment one counter with optimistic locking: read, update with the
    read version, retry on 409. No increment may be lost."""
    thing = thing_name(uid)
    s0 = ShadowMqtt(client_factory(), thing, "counter")
    s0.update({"state": {"desired": {"counter": 0}}, "clientToken": "init"})
    per_writer = 10
    writers = [ShadowMqtt(client_factory(), thing, "counter") for _ in range(2)]
    accepted = [0, 0]
    conflicts = [0, 0]
    errors = []

    def run(i):
        w = writers[i]
        try:
            seq = 0
            while accepted[i] < per_writer:
                seq += 1
                kind, got = w.request("get", {"clientToken": f"g{i}-{seq}"}, match_token=True)
                assert kind == "accepted", got
                counter, version = got["state"]["desired"]["counter"], got["version"]
                kind, body = w.request("update", {
                    "state": {"desired": {"counter": counter + 1}},
                    "version": version, "clientToken": f"u{i}-{seq}"}, match_token=True)
                if kind == "accepted":
                    assert body["version"] == version + 1
                    accepted[i] += 1
                else:
                    assert_error(body, 409, "Version conflict", f"u{i}-{seq}")
                    conflicts[i] += 1
                # drop what the other writer caused, so the stash stays small
                w.stash.clear()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not errors, errors
    final = ShadowMqtt(client_factory(), thing, "counter", responses=("get/accepted",)).get()
    total = sum(accepted)
    assert total == 2 * per_writer
    # the version counts every accepted update (the initial one included) and the counter
    # every accepted increment: nothing lost, nothing applied twice
    assert final["version"] == total + 1
    assert final["state"]["desired"]["counter"] == total


# -------------------------------------------------------------------- 429

def test_too_many_requests_in_flight_is_429(broker_factory, client_factory, uid):
    """More than max_in_flight_per_thing requests waiting for the log: 429 "Too many
    requests". A burst of QoS 0 updates written in one TCP send reaches the owner shard
    while the first group commit's fsync is still running, so the 3rd and later are
    refused (each is checked: every request is answered once, accepted versions are
    consecutive, the shadow ends at the number of accepted updates)."""
    b = broker_factory(max_in_flight_per_thing=2, durable=True)
    thing = thing_name(uid)
    watcher = ShadowMqtt(client_factory(broker_=b), thing,
                         responses=("update/accepted", "update/rejected"))
    burst = 40
    raw, ack = r.raw_connect(b.host, b.port, f"{uid}-burst")
    try:
        data = b"".join(
            r.publish(f"{prefix(thing)}/update",
                      json.dumps({"state": {"reported": {"i": i}}, "clientToken": f"b{i}"}).encode())
            for i in range(burst))
        raw.send(data)
        answers = {}
        for _ in range(burst):
            m = watcher.wait_any(["update/accepted", "update/rejected"], 10)
            body = json.loads(m.payload)
            assert body["clientToken"] not in answers, f"answered twice: {body}"
            answers[body["clientToken"]] = (m.topic.rsplit("/", 1)[1], body)
    finally:
        raw.close()
    assert set(answers) == {f"b{i}" for i in range(burst)}
    accepted = sorted((body["version"], tok) for tok, (kind, body) in answers.items() if kind == "accepted")
    rejected = [(tok, body) for tok, (kind, body) in answers.items() if kind == "rejected"]
    for tok, body in rejected:
        assert_error(body, 429, "Too many requests", tok)
    assert rejected, "no request was refused with 429 (burst did not overlap an fsync)"
    assert accepted and [v for v, _ in accepted] == list(range(1, len(accepted) + 1))
    # requests are applied in the order they were sent
    order = [int(tok[1:]) for _, tok in accepted]
    assert order == sorted(order)
    got = ShadowMqtt(client_factory(broker_=b), thing, responses=("get/accepted",)).get()
    assert got["version"] == len(accepted)
    assert got["state"]["reported"] == {"i": order[-1]}


def test_durable_off_answers_at_once_and_never_429(broker_factory, client_factory, uid):
    """With durable=False no answer waits for an fsync, so even max_in_flight_per_thing=1
    never refuses a burst; every request is answered once, in order."""
    b = broker_factory(durable=False, max_in_flight_per_thing=1)
    s = ShadowMqtt(client_factory(broker_=b), thing_name(uid))
    for i in range(1, 21):
        s.publish("update", {"state": {"reported": {"i": i}}, "clientToken": f"q{i}"}, qos=0)
    answers = []
    for _ in range(20):
        m = s.wait_any(["update/accepted", "update/rejected"])
        body = json.loads(m.payload)
        assert m.topic.endswith("/update/accepted"), body
        answers.append((body["version"], body["clientToken"]))
    assert answers == [(i, f"q{i}") for i in range(1, 21)]
    got = s.get()
    assert got["version"] == 20 and got["state"]["reported"] == {"i": 20}


def test_request_puback_comes_with_or_after_its_answer(broker, uid):
    """A QoS 1 request is acknowledged once its answer is out (both leave in one write when
    they can): the requester sees `/accepted` (or `/rejected`) no later than the PUBACK, for
    things owned by either shard, and for a request the service refuses."""
    c, _ = r.raw_connect(broker.host, broker.port, f"{uid}-raw")
    things = [thing_name(uid, f"-{i}") for i in range(8)]
    filters = [(f"{prefix(t)}/update/+", 1) for t in things]
    c.sub(filters)
    requests = [(t, b'{"state":{"reported":{"on":true}}}', "accepted") for t in things]
    requests.append((things[0], b"not json", "rejected"))
    for pid, (thing, body, outcome) in enumerate(requests, start=1):
        c.pub(f"{prefix(thing)}/update", body, qos=1, pid=pid)
        seen = []
        while True:
            p = c.recv_packet()
            if p.type == r.PUBLISH:
                if p.qos:
                    c.send(r.puback(p.pid))
                seen.append(p.topic.rsplit("/", 1)[1])
            elif p.type == r.PUBACK:
                assert p.pid == pid and p.rc == 0, p
                break
        assert outcome in seen, f"PUBACK {pid} arrived before the {outcome} answer: {seen}"
    c.close()
