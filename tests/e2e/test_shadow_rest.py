"""Device Shadow REST API: `GET|POST|DELETE /things/{thing}/shadow[?name=]` and
`GET /api/things/shadow/ListNamedShadowsForThing/{thing}`, its errors (AWS's codes and
texts for the document errors, iotcore's own for HTTP-level ones: 404/405 routes, 411,
413 body), the REST and MQTT views of one shadow, and shadows surviving a restart."""
import http.client
import json
import socket
import threading

import pytest

from conftest import Broker
from shadow_helpers import (ShadowMqtt, assert_error, now_ok, raw_http, rest, shadow_path,
                            stamps, thing_name)

pytestmark = pytest.mark.iotcore

KINDS = [None, "cfg"]
KIND_IDS = ["classic", "named"]
LIST = "/api/things/shadow/ListNamedShadowsForThing/"


def no_shadow_message(thing, shadow):
    return f"No shadow exists with name: '{shadow if shadow is not None else thing}'"


def ok(resp):
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "application/json", resp.headers
    return resp.json


def error(resp, code, message=None, token=None):
    assert resp.status == code, resp
    assert resp.headers["content-type"] == "application/json", resp.headers
    assert_error(resp.json, code, message, token)
    return resp.json


@pytest.mark.parametrize("shadow", KINDS, ids=KIND_IDS)
def test_rest_get_update_delete(broker, uid, shadow):
    thing = thing_name(uid)
    path = shadow_path(thing, shadow)
    error(rest(broker, "GET", path), 404, no_shadow_message(thing, shadow))
    error(rest(broker, "DELETE", path), 404, no_shadow_message(thing, shadow))

    acc = ok(rest(broker, "POST", path, {"state": {"desired": {"color": "RED"}}, "clientToken": "r1"}))
    assert acc["state"] == {"desired": {"color": "RED"}}
    assert stamps(acc["metadata"], acc["timestamp"]) == {"desired": {"color": "T"}}
    assert (acc["version"], acc["clientToken"]) == (1, "r1")
    assert now_ok(acc["timestamp"])

    acc = ok(rest(broker, "POST", path, {"state": {"reported": {"color": "GREEN", "engine": "ON"}}}))
    assert acc["version"] == 2 and "clientToken" not in acc

    got = ok(rest(broker, "GET", path))
    # "The response state document includes the delta between the desired and reported states"
    assert got["state"] == {"desired": {"color": "RED"},
                            "reported": {"color": "GREEN", "engine": "ON"},
                            "delta": {"color": "RED"}}
    assert stamps(got["metadata"]) == {"desired": {"color": "T"},
                                       "reported": {"color": "T", "engine": "T"},
                                       "delta": {"color": "T"}}
    assert got["version"] == 2 and now_ok(got["timestamp"])

    # null removes a key (UpdateThingShadow: "Any field with a value of null is removed")
    ok(rest(broker, "POST", path, {"state": {"reported": {"engine": None, "color": "RED"}}}))
    got = ok(rest(broker, "GET", path))
    assert got["state"] == {"desired": {"color": "RED"}, "reported": {"color": "RED"}}
    assert got["version"] == 3

    deleted = ok(rest(broker, "DELETE", path))
    assert deleted["version"] == 3 and now_ok(deleted["timestamp"])
    assert set(deleted) == {"version", "timestamp"}
    error(rest(broker, "GET", path), 404, no_shadow_message(thing, shadow))
    # "deleting a shadow does not reset its version number to 0"
    assert ok(rest(broker, "POST", path, {"state": {"reported": {"x": 1}}}))["version"] == 4


def test_rest_name_query_selects_the_shadow(broker, uid):
    thing = thing_name(uid)
    ok(rest(broker, "POST", shadow_path(thing, "a"), {"state": {"reported": {"who": "a"}}}))
    ok(rest(broker, "POST", shadow_path(thing), {"state": {"reported": {"who": "classic"}}}))
    assert ok(rest(broker, "GET", shadow_path(thing, "a")))["state"] == {"reported": {"who": "a"}}
    assert ok(rest(broker, "GET", shadow_path(thing)))["state"] == {"reported": {"who": "classic"}}
    # an empty name is the classic shadow
    assert ok(rest(broker, "GET", f"/things/{thing}/shadow?name="))["state"] == {"reported": {"who": "classic"}}
    error(rest(broker, "GET", shadow_path(thing, "b")), 404, "No shadow exists with name: 'b'")


BAD_BODIES = [
    ("not-json", b"{nope", 400, "Invalid JSON", None),
    ("empty", b"", 400, "Invalid JSON", None),
    ("missing-state", {"clientToken": "e1"}, 400, "Missing required node: state", "e1"),
    ("state-string", {"state": "x"}, 400, "State node must be an object", None),
    ("desired-list", {"state": {"desired": [], "reported": {}}, "clientToken": "e2"}, 400,
     "Desired node must be an object", "e2"),
    ("reported-bool", {"state": {"reported": True}}, 400, "Reported node must be an object", None),
    ("version-bool", {"state": {"reported": {}}, "version": True}, 400, "Invalid version", None),
    ("token-65", {"state": {"reported": {"a": 1}}, "clientToken": "x" * 65}, 400, "Invalid clientToken", None),
    ("depth-7", {"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}, "clientToken": "e3"},
     400, "JSON contains too many levels of nesting; maximum is 6", "e3"),
    ("null-in-array", {"state": {"reported": {"c": [1, None]}}}, 400, "State contains an invalid node", None),
    ("not-utf8", b'{"state":{"reported":{"a":"\xc3\x28"}}}', 415,
     "Unsupported documented encoding; supported encoding is UTF-8", None),
]


@pytest.mark.parametrize("shadow", KINDS, ids=KIND_IDS)
def test_rest_update_errors_are_http_errors_not_mqtt(broker, client_factory, uid, shadow):
    """REST errors come back as the HTTP status and error document; "no MQTT error
    messages are emitted"."""
    thing = thing_name(uid)
    path = shadow_path(thing, shadow)
    watcher = ShadowMqtt(client_factory(), thing, shadow)
    for case, body, code, message, token in BAD_BODIES:
        try:
            error(rest(broker, "POST", path, body), code, message, token)
        except AssertionError as e:
            raise AssertionError(f"case {case}: {e}") from None
    error(rest(broker, "GET", path), 404, no_shadow_message(thing, shadow))
    error(rest(broker, "DELETE", path), 404, no_shadow_message(thing, shadow))
    watcher.expect_none(None, 0.3)


def test_rest_409_and_413(broker, uid):
    path = shadow_path(thing_name(uid), "limits")
    assert ok(rest(broker, "POST", path, {"state": {"desired": {"a": "x" * 8184}}}))["version"] == 1
    error(rest(broker, "POST", path, {"state": {"reported": {"b": 0}}, "clientToken": "big"}), 413,
          "The payload exceeds the maximum size allowed", "big")
    error(rest(broker, "POST", path, {"state": {"desired": {"a": 1}}, "version": 0, "clientToken": "old"}), 409,
          "Version conflict", "old")
    error(rest(broker, "POST", path, {"state": {"desired": {"a": 1}}, "version": 2}), 409, "Version conflict")
    got = ok(rest(broker, "GET", path))
    assert got["version"] == 1 and got["state"]["desired"] == {"a": "x" * 8184}
    acc = ok(rest(broker, "POST", path, {"state": {"desired": {"a": 1}}, "version": 1, "clientToken": "cur"}))
    assert (acc["version"], acc["clientToken"]) == (2, "cur")


BAD_NAME_PATHS = [
    ("/things/bad.thing/shadow", "thing name"),
    ("/things/bad%2Fthing/shadow", "thing name"),
    ("/things/" + "t" * 129 + "/shadow", "thing name"),
    ("/things/ok/shadow?name=bad.shadow", "shadow name"),
    ("/things/ok/shadow?name=" + "s" * 65, "shadow name"),
    ("/things/ok/shadow?name=a%2Bb", "shadow name"),
]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_rest_bad_thing_or_shadow_name_is_400(broker, method):
    for path, what in BAD_NAME_PATHS:
        resp = rest(broker, method, path, {"state": {"reported": {"a": 1}}} if method == "POST" else None)
        body = error(resp, 400)
        assert what in body["message"], (path, body)
    body = error(rest(broker, "GET", LIST + "bad.thing"), 400)
    assert "thing name" in body["message"], body


def test_rest_unknown_routes_and_methods(broker):
    for path in ("/", "/things", "/things/x", "/things/x/shadow/extra", "/things/x/shadows",
                 "/api/things/shadow/ListNamedShadows/x", "/things//shadow/x"):
        body = error(rest(broker, "GET", path), 404)
        assert path in body["message"], body
    for method in ("PUT", "PATCH", "OPTIONS"):
        error(rest(broker, method, "/things/x/shadow", b"{}"), 405)
    for method in ("POST", "DELETE", "PUT"):
        error(rest(broker, method, LIST + "x", b""), 405)


def test_rest_chunked_body_is_411(broker, uid):
    req = (f"POST /things/{thing_name(uid)}/shadow HTTP/1.1\r\nHost: x\r\n"
           "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
           '1d\r\n{"state":{"reported":{"a":1}}}\r\n0\r\n\r\n').encode()
    status, headers, body = raw_http(broker, req)
    assert status == 411
    assert headers["connection"] == "close"
    assert_error(json.loads(body), 411)
    # nothing was stored
    error(rest(broker, "GET", shadow_path(thing_name(uid))), 404)


def test_rest_body_over_max_body_bytes_is_413(broker_factory, uid):
    b = broker_factory(max_body_bytes=1024)
    path = shadow_path(thing_name(uid))
    # exactly the limit is read and handled by the shadow service
    doc = {"state": {"reported": {"pad": ""}}}
    doc["state"]["reported"]["pad"] = "p" * (1024 - len(json.dumps(doc)))
    data = json.dumps(doc).encode()
    assert len(data) == 1024
    assert ok(rest(b, "POST", path, data))["version"] == 1
    # one byte more is refused from the Content-Length alone, before the body is read
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n").encode()
    status, headers, body = raw_http(b, head)
    assert status == 413
    assert_error(json.loads(body), 413)
    assert "1024" in json.loads(body)["message"]
    assert ok(rest(b, "GET", path))["version"] == 1


def test_rest_keep_alive_connection_serves_several_requests(broker, uid):
    thing = thing_name(uid)
    conn = http.client.HTTPConnection(broker.host, broker.http_port, timeout=5)
    rest(broker, "GET", "/")  # waits for the listener
    try:
        for v in range(1, 4):
            conn.request("POST", shadow_path(thing), body=json.dumps({"state": {"reported": {"v": v}}}))
            resp = conn.getresponse()
            assert resp.status == 200
            assert json.loads(resp.read())["version"] == v
        conn.request("GET", shadow_path(thing))
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["state"] == {"reported": {"v": 3}}
        conn.request("GET", "/nowhere")
        resp = conn.getresponse()
        assert resp.status == 404
        resp.read()
        conn.request("DELETE", shadow_path(thing))
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["version"] == 3
    finally:
        conn.close()


# -------------------------------------------------------------------- REST <-> MQTT

@pytest.mark.parametrize("shadow", KINDS, ids=KIND_IDS)
def test_mqtt_update_is_seen_by_rest(broker, client_factory, uid, shadow):
    thing = thing_name(uid)
    s = ShadowMqtt(client_factory(), thing, shadow)
    s.update({"state": {"desired": {"temp": 21, "modes": ["eco"]}, "reported": {"temp": 19}}})
    got = ok(rest(broker, "GET", shadow_path(thing, shadow)))
    mqtt_got = s.get()
    assert got["state"] == mqtt_got["state"] == {
        "desired": {"temp": 21, "modes": ["eco"]}, "reported": {"temp": 19},
        "delta": {"temp": 21, "modes": ["eco"]}}
    assert stamps(got["metadata"]) == stamps(mqtt_got["metadata"])
    assert got["version"] == mqtt_got["version"] == 1
    # a REST GET is answered over HTTP only: nothing on get/accepted
    s.wait("update/delta")
    s.wait("update/documents")
    s.expect_none(None, 0.2)
    # deleting over MQTT is seen by REST
    s.delete()
    error(rest(broker, "GET", shadow_path(thing, shadow)), 404, no_shadow_message(thing, shadow))


@pytest.mark.parametrize("shadow", KINDS, ids=KIND_IDS)
def test_rest_update_publishes_accepted_delta_and_documents(broker, client_factory, uid, shadow):
    thing = thing_name(uid)
    s = ShadowMqtt(client_factory(), thing, shadow)
    path = shadow_path(thing, shadow)
    acc = ok(rest(broker, "POST", path, {"state": {"desired": {"on": True, "lvl": 5}}, "clientToken": "rest-1"}))
    published = s.wait("update/accepted")
    # the MQTT subscriber gets the very document the REST caller got
    assert published == acc
    delta = s.wait("update/delta")
    assert (delta["state"], delta["version"], delta["clientToken"]) == ({"on": True, "lvl": 5}, 1, "rest-1")
    docs = s.wait("update/documents")
    assert docs["previous"] is None
    assert docs["current"]["state"] == {"desired": {"on": True, "lvl": 5}}
    assert (docs["current"]["version"], docs["clientToken"]) == (1, "rest-1")

    # the device answers over MQTT; REST sees the result and its version
    s.update({"state": {"reported": {"on": True, "lvl": 5}}})
    s.wait("update/documents")
    got = ok(rest(broker, "GET", path))
    assert got["state"] == {"desired": {"on": True, "lvl": 5}, "reported": {"on": True, "lvl": 5}}
    assert got["version"] == 2

    # a second REST update: documents carry previous and current
    ok(rest(broker, "POST", path, {"state": {"desired": {"lvl": 7}}, "version": 2}))
    assert s.wait("update/accepted")["version"] == 3
    assert s.wait("update/delta")["state"] == {"lvl": 7}
    docs = s.wait("update/documents")
    assert docs["previous"]["state"]["desired"] == {"on": True, "lvl": 5}
    assert docs["current"]["state"]["desired"] == {"on": True, "lvl": 7}
    assert (docs["previous"]["version"], docs["current"]["version"]) == (2, 3)
    assert "clientToken" not in docs

    # a REST delete is announced on delete/accepted (core publishes it like an MQTT delete)
    deleted = ok(rest(broker, "DELETE", path))
    assert s.wait("delete/accepted") == deleted
    # a failed REST update publishes nothing
    error(rest(broker, "POST", path, {"state": {"desired": {"x": 1}}, "version": 99}), 409, "Version conflict")
    s.expect_none(None, 0.3)


# -------------------------------------------------------------------- ListNamedShadowsForThing

def list_page(broker, thing, **query):
    from urllib.parse import urlencode
    q = urlencode(query)
    return rest(broker, "GET", LIST + thing + (f"?{q}" if q else ""), timeout=2)


def test_list_is_answered_whichever_shard_takes_the_connection(broker, uid):
    """Each request opens a new connection, and the kernel spreads connections over the
    shards' listeners (SO_REUSEPORT), so some land on the shard owning the thing and some
    on the other: every one must be answered (12 tries: all on one shard by chance has
    probability 2**-11)."""
    thing = thing_name(uid)
    ok(rest(broker, "POST", shadow_path(thing, "only"), {"state": {"reported": {"a": 1}}}))
    unanswered = 0
    for _ in range(12):
        try:
            assert ok(list_page(broker, thing))["results"] == ["only"]
        except TimeoutError:
            unanswered += 1
    assert unanswered == 0, f"{unanswered} of 12 ListNamedShadowsForThing requests got no answer within 2 s"


def test_list_named_shadows_paging(broker, uid):
    thing = thing_name(uid)
    names = ["zeta", "alpha", "m:id", "b_2", "b-1", "Cap"]
    for n in names:
        ok(rest(broker, "POST", shadow_path(thing, n), {"state": {"reported": {"n": n}}}))
    # the classic shadow is not listed
    ok(rest(broker, "POST", shadow_path(thing), {"state": {"reported": {"classic": True}}}))

    whole = ok(list_page(broker, thing))
    assert sorted(whole["results"]) == sorted(names)
    assert "nextToken" not in whole and now_ok(whole["timestamp"])

    seen, pages, token = [], [], None
    while True:
        query = {"pageSize": 4}
        if token is not None:
            query["nextToken"] = token
        page = ok(list_page(broker, thing, **query))
        pages.append(len(page["results"]))
        seen += page["results"]
        token = page.get("nextToken")
        if token is None:
            break
        assert isinstance(token, str) and token
        assert len(pages) < 10
    assert pages == [4, 2]
    assert sorted(seen) == sorted(names) and len(seen) == len(set(seen))

    one_by_one = []
    token = None
    for i in range(len(names)):
        query = {"pageSize": 1, **({"nextToken": token} if token else {})}
        page = ok(list_page(broker, thing, **query))
        assert len(page["results"]) == 1
        one_by_one += page["results"]
        token = page.get("nextToken")
        assert (token is None) == (i == len(names) - 1), page
    assert one_by_one == seen

    # deleted shadows are not listed; re-created ones are again
    ok(rest(broker, "DELETE", shadow_path(thing, "alpha")))
    ok(rest(broker, "DELETE", shadow_path(thing, "zeta")))
    assert sorted(ok(list_page(broker, thing))["results"]) == sorted(set(names) - {"alpha", "zeta"})
    ok(rest(broker, "POST", shadow_path(thing, "zeta"), {"state": {"desired": {"back": 1}}}))
    assert "zeta" in ok(list_page(broker, thing))["results"]


def test_list_unknown_thing_or_classic_only_is_empty(broker, client_factory, uid):
    thing = thing_name(uid)
    # "The response is an empty list if you only have a classic shadow or if the thingName
    # you specify doesn't exist."
    page = ok(list_page(broker, thing + "-nobody"))
    assert page["results"] == [] and "nextToken" not in page and now_ok(page["timestamp"])
    ShadowMqtt(client_factory(), thing).update({"state": {"reported": {"a": 1}}})
    page = ok(list_page(broker, thing, pageSize=5))
    assert page["results"] == [] and "nextToken" not in page
    # a thing whose only named shadow was deleted lists nothing either
    ok(rest(broker, "POST", shadow_path(thing, "gone"), {"state": {"reported": {"a": 1}}}))
    assert ok(list_page(broker, thing))["results"] == ["gone"]
    ok(rest(broker, "DELETE", shadow_path(thing, "gone")))
    assert ok(list_page(broker, thing))["results"] == []


def test_list_page_size_limits(broker_factory, uid):
    b = broker_factory(max_page_size=3)
    thing = thing_name(uid)
    for i in range(5):
        ok(rest(b, "POST", shadow_path(thing, f"s{i}"), {"state": {"reported": {"i": i}}}))
    first = ok(list_page(b, thing))  # no pageSize: max_page_size
    assert len(first["results"]) == 3 and first.get("nextToken")
    second = ok(list_page(b, thing, nextToken=first["nextToken"]))
    assert len(second["results"]) == 2 and "nextToken" not in second
    assert sorted(first["results"] + second["results"]) == [f"s{i}" for i in range(5)]
    for bad in ("0", "4", "-1", "abc", "1.5"):
        body = error(list_page(b, thing, pageSize=bad), 400)
        assert "pageSize" in body["message"], body


# -------------------------------------------------------------------- 429 over REST

def test_rest_burst_beyond_in_flight_limit_gets_429(broker_factory, uid):
    """16 concurrent POSTs for one thing with max_in_flight_per_thing=2: each is answered
    200 or 429 "Too many requests" (with its clientToken), some are refused (in 30 runs
    2 to 5 were accepted: the requests pile up behind the first group commit's fsync), and
    the shadow's version is the number of 200s."""
    b = broker_factory(max_in_flight_per_thing=2)
    thing = thing_name(uid)
    path = shadow_path(thing)
    rest(b, "GET", "/")  # listener up
    n = 16
    socks = [socket.create_connection((b.host, b.http_port), timeout=5) for _ in range(n)]
    results = [None] * n
    go = threading.Barrier(n)

    def run(i):
        body = json.dumps({"state": {"reported": {f"k{i}": i}}, "clientToken": f"c{i}"}).encode()
        req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode() + body
        go.wait()
        s = socks[i]
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        results[i] = (int(head.split(b" ")[1]), json.loads(payload))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(res is not None for res in results)
    accepted = 0
    for i, (status, body) in enumerate(results):
        if status == 200:
            accepted += 1
            assert body["clientToken"] == f"c{i}"
        else:
            assert status == 429, body
            assert_error(body, 429, "Too many requests", f"c{i}")
    assert 1 <= accepted < n, f"{accepted} of {n} concurrent updates accepted"
    got = ok(rest(b, "GET", path))
    assert got["version"] == accepted
    assert got["state"]["reported"] == {f"k{i}": i for i, (st, _) in enumerate(results) if st == 200}


# -------------------------------------------------------------------- restart

def test_shadows_survive_a_clean_restart(broker_factory, client_factory, tmp_path, uid):
    data_dir = tmp_path / "shadow-data"
    thing = thing_name(uid)
    first = Broker(tmp_path, {"data_dir": str(data_dir)})
    try:
        ok(rest(first, "POST", shadow_path(thing), {"state": {"desired": {"a": {"b": [1, 2]}}, "reported": {"a": 1}}}))
        ok(rest(first, "POST", shadow_path(thing), {"state": {"reported": {"c": "x"}}}))
        ok(rest(first, "POST", shadow_path(thing, "named"), {"state": {"reported": {"n": 1}}}))
        ok(rest(first, "POST", shadow_path(thing, "gone"), {"state": {"reported": {"g": 1}}}))
        ok(rest(first, "POST", shadow_path(thing, "gone"), {"state": {"reported": {"g": 2}}}))
        ok(rest(first, "DELETE", shadow_path(thing, "gone")))
        before = ok(rest(first, "GET", shadow_path(thing)))
        first.stop()
    finally:
        first.kill()

    second = broker_factory(data_dir=str(data_dir))
    after = ok(rest(second, "GET", shadow_path(thing)))
    assert after["state"] == before["state"] == {
        "desired": {"a": {"b": [1, 2]}}, "reported": {"a": 1, "c": "x"}, "delta": {"a": {"b": [1, 2]}}}
    assert after["metadata"] == before["metadata"]
    assert after["version"] == 2
    s = ShadowMqtt(client_factory(broker_=second), thing, "named")
    assert s.get()["state"] == {"reported": {"n": 1}}
    # the deleted shadow stays deleted, and its version history survived too
    error(rest(second, "GET", shadow_path(thing, "gone")), 404, "No shadow exists with name: 'gone'")
    assert ok(rest(second, "POST", shadow_path(thing, "gone"), {"state": {"reported": {"g": 3}}}))["version"] == 3
    # versions keep counting after the restart
    assert s.update({"state": {"reported": {"n": 2}}, "version": 1})["version"] == 2
    assert sorted(ok(list_page(second, thing))["results"]) == ["gone", "named"]
