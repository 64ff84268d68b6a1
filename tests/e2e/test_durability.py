"""Crash tests for the durable state (core/src/log, dataplane storage): the broker is killed
with SIGKILL in the middle of a stream of shadow updates, retained publishes or messages
queued for persistent sessions, restarted on the same data directory, and everything it
acknowledged (/update/accepted, PUBACK) must be there. Then the on-disk logs are damaged by
hand (a torn tail, a flipped byte) and the broker must start, report the damage on stderr,
and serve what the corruption policy of core/src/log/mod.rs says survives."""
from __future__ import annotations

import json
import os
import time
import zlib

import pytest

from conftest import TClient, roundtrip_ok
from durability_helpers import (  # noqa: F401 (brokers is a fixture)
    Publisher, ShadowWriter, brokers, plain_stderr, run_to_end, run_until_killed,
    segments, shadow_records,
)
from shadow_helpers import ShadowMqtt, rest, shadow_path, thing_name

pytestmark = pytest.mark.iotcore

DAMAGE_WARNING = "shadow log damage found and skipped"

# Storage settings the kill tests run with: the defaults; 4 KiB segments (the kill may
# land while a segment is being closed and the next created); and, on top, compaction after
# 8 KiB (the kill may land while a snapshot is written and old segments deleted).
STORAGE = {
    "default": {},
    "small_segments": {"segment_bytes": 4096},
    "compacting": {"segment_bytes": 4096, "compact_after_bytes": 8192},
}


def snapshots(data_dir, log: str) -> list:
    return sorted(data_dir.glob(f"shard-*/{log}/*.snap"))


# ---------------------------------------------------------------- reading state back


def read_shadows(broker, things) -> dict:
    """{thing: (version, state.reported) or None} read over MQTT (/get) and checked against
    the REST API, which must agree."""
    out = {}
    c = TClient(broker.host, broker.port)
    try:
        for thing in things:
            s = ShadowMqtt(c, thing, responses=("get/accepted", "get/rejected"))
            kind, body = s.request("get", {"clientToken": "get-1"}, match_token=True)
            r = rest(broker, "GET", shadow_path(thing))
            if kind == "rejected":
                assert body["code"] == 404, f"{thing}: /get rejected {body}"
                assert r.status == 404, f"{thing}: MQTT says no shadow, REST says {r}"
                out[thing] = None
            else:
                got = (body["version"], body["state"]["reported"])
                assert r.status == 200, f"{thing}: MQTT has {got}, REST says {r}"
                rb = r.json
                assert (rb["version"], rb["state"]["reported"]) == got, f"{thing}: MQTT {got}, REST {rb}"
                out[thing] = got
            c.unsubscribe([f"{s.prefix}/get/accepted", f"{s.prefix}/get/rejected"])
    finally:
        c.close()
    return out


def version_n(found: dict) -> dict:
    """{thing: (version, reported.n) or None}"""
    return {t: (v[0], v[1].get("n")) if v else None for t, v in found.items()}


def update_shadow(broker, thing, n) -> int:
    """One update (reported.n = n) that must be accepted; returns the new version."""
    c = TClient(broker.host, broker.port)
    try:
        s = ShadowMqtt(c, thing, responses=("update/accepted", "update/rejected"))
        body = s.update({"state": {"reported": {"n": n}}, "clientToken": f"u-{n}"})
        assert body["state"]["reported"]["n"] == n
        return body["version"]
    finally:
        c.close()


def check_against_acks(found, acked, sent, what):
    """`acked[(thing, key)]` = (n, version) of the last acknowledged update of that key by
    its only writer (n increasing); `sent[(thing, key)]` = every n sent. The recovered
    shadow must be at least as new as every acknowledged update (version and each key),
    hold only values really sent, and for a thing with one writer, give the acknowledged
    version to the acknowledged n."""
    problems = []
    writers: dict[str, list] = {}
    for thing, key in acked:
        writers.setdefault(thing, []).append(key)
    for thing, keys in sorted(writers.items()):
        got = found.get(thing)
        if got is None:
            problems.append(f"{thing}: acknowledged {[(k, acked[thing, k]) for k in keys]}, found no shadow")
            continue
        version, reported = got
        v_max = max(acked[thing, k][1] for k in keys)
        if version < v_max:
            problems.append(f"{thing}: acknowledged version {v_max}, found version {version} ({reported})")
        for key in keys:
            n_acked, v_acked = acked[thing, key]
            n = reported.get(key)
            if n is None or n < n_acked:
                problems.append(f"{thing}: acknowledged {key}={n_acked} (version {v_acked}), "
                                f"found {key}={n} (version {version})")
            elif n not in sent[thing, key]:
                problems.append(f"{thing}: found {key}={n}, which was never sent")
            elif len(keys) == 1 and n == n_acked and version != v_acked:
                problems.append(f"{thing}: {key}={n} was acknowledged as version {v_acked}, "
                                f"found version {version}")
            elif len(keys) == 1 and n > n_acked and version <= v_acked:
                problems.append(f"{thing}: found {key}={n} (newer than the acknowledged {n_acked}) "
                                f"with version {version} <= {v_acked}")
    assert not problems, f"{what}:\n" + "\n".join(problems)


# ---------------------------------------------------------------- 1. shadows under kill -9


@pytest.mark.parametrize("storage", STORAGE, ids=list(STORAGE))
def test_shadow_updates_survive_kill9(brokers, uid, storage):
    """7 writers with a thing each, and 3 more sharing one thing (each its own reported key),
    stream updates; the broker is killed with SIGKILL after 300 acknowledged ones, three
    times over. After each restart every shadow is at least at its last acknowledged update,
    and writing continues from the recovered version."""
    solo = [thing_name(uid, f"-{i}") for i in range(7)]
    shared = thing_name(uid, "-shared")
    slots = [(t, "n") for t in solo] + [(shared, k) for k in ("a", "b", "c")]
    things = solo + [shared]
    acked: dict[tuple[str, str], tuple[int, int]] = {}
    sent: dict[tuple[str, str], set[int]] = {s: set() for s in slots}
    next_n = {s: 1 for s in slots}
    found = None
    for cycle in range(3):
        b = brokers.start(**STORAGE[storage])
        if cycle:
            found = read_shadows(b, things)
            check_against_acks(found, acked, sent, f"after kill #{cycle}")
        writers = [ShadowWriter(b, t, next_n[t, k], key=k) for t, k in slots]
        run_until_killed(brokers, b, writers, lambda: sum(len(w.accepted) for w in writers), 300)
        for w in writers:
            assert not w.rejected, f"{w.thing}: updates rejected: {w.rejected[:3]}"
            versions = [v for _, v in w.accepted]
            assert versions == sorted(set(versions)), f"{w.thing}: versions not increasing: {versions}"
            if w.accepted and found is not None:
                # the first update after a restart builds on what was recovered
                base = found[w.thing][0] if found.get(w.thing) else 0
                if w.thing == shared:
                    assert versions[0] > base, (
                        f"{w.thing}: recovered version {base}, an update after restart got {versions[0]}")
                else:
                    assert versions[0] == base + 1, (
                        f"{w.thing}: recovered version {base}, first update after restart got {versions[0]}")
            slot = (w.thing, w.key)
            sent[slot].update(w.sent)
            if w.accepted:
                acked[slot] = w.accepted[-1]
            next_n[slot] = max(sent[slot], default=0) + 1
    assert set(acked) == set(slots), f"writers without any accepted update: {set(slots) - set(acked)}"
    b = brokers.start(**STORAGE[storage])
    check_against_acks(read_shadows(b, things), acked, sent, "after kill #3")
    if storage == "compacting":
        assert snapshots(brokers.data_dir, "shadows"), "no shadow snapshot was written"


# ---------------------------------------------------------------- 2. retained under kill -9


@pytest.mark.parametrize("storage", STORAGE, ids=list(STORAGE))
def test_retained_survives_kill9(brokers, uid, storage):
    """QoS 1 retained publishes to 40 topics, values increasing per topic; SIGKILL after
    500 PUBACKs, twice. Every PUBACKed topic's retained value is then at least its last
    PUBACKed value."""
    topics = 40
    prefix = f"ret/{uid}"
    base = 0
    last_acked: dict[str, int] = {}
    sent: dict[str, set[int]] = {}
    for cycle in range(2):
        b = brokers.start(**STORAGE[storage])
        if cycle:
            check_retained(b, prefix, last_acked, sent, f"after kill #{cycle}")
        start = base

        def make(seq, start=start):
            v = start + seq
            return f"{prefix}/{v % topics}", str(v).encode()

        pub = Publisher(b, f"retpub-{uid}-{cycle}", make, retain=True)
        run_until_killed(brokers, b, [pub], lambda: len(pub.acked), 500)
        assert not pub.failed, f"PUBACK errors: {pub.failed[:5]}"
        for seq in pub.sent:
            v = start + seq
            sent.setdefault(f"{prefix}/{v % topics}", set()).add(v)
        for seq in pub.acked:
            v = start + seq
            t = f"{prefix}/{v % topics}"
            last_acked[t] = max(last_acked.get(t, -1), v)
        base = start + len(pub.sent)
    b = brokers.start(**STORAGE[storage])
    check_retained(b, prefix, last_acked, sent, "after kill #2")
    if storage == "compacting":
        assert snapshots(brokers.data_dir, "retained"), "no retained snapshot was written"


def check_retained(b, prefix, last_acked, sent, what):
    c = TClient(b.host, b.port)
    try:
        c.subscribe(f"{prefix}/#", 1)
        got: dict[str, int] = {}
        deadline = time.monotonic() + 10
        while not set(last_acked) <= set(got):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(last_acked) - set(got))
                raise AssertionError(f"{what}: no retained message for PUBACKed topics "
                                     f"{[(t, last_acked[t]) for t in missing]}")
            m = c.get(left)
            assert m.retain, f"unexpected live message {m.topic}"
            got[m.topic] = int(m.payload)
        c.expect_none(0.2)
    finally:
        c.close()
    problems = []
    for t, v in sorted(last_acked.items()):
        if got[t] < v:
            problems.append(f"{t}: PUBACKed value {v}, retained value {got[t]}")
        elif got[t] not in sent[t]:
            problems.append(f"{t}: retained value {got[t]} was never published there")
    for t in set(got) - set(last_acked):
        if got[t] not in sent.get(t, ()):
            problems.append(f"{t}: retained value {got[t]} was never published there")
    assert not problems, f"{what}:\n" + "\n".join(problems)


# ---------------------------------------------------------------- 3. persistent sessions


@pytest.mark.parametrize("storage", STORAGE, ids=list(STORAGE))
def test_persistent_session_queue_survives_kill9(brokers, uid, storage):
    """Persistent sessions subscribed QoS 1 to q/#: two offline (MQTT 5 expiry 3600, MQTT
    3.1.1 clean session false) and one online, acknowledging as messages arrive. A publisher
    streams numbered QoS 1 messages; SIGKILL after 1000 PUBACKs. After the restart every
    session resumes, and every PUBACKed message reaches each of them (the online one: before
    the kill or after the restart); their subscriptions still work."""
    over = {"max_queued_messages": 100000, **STORAGE[storage]}
    b = brokers.start(**over)
    prefix = f"q/{uid}"
    subs = {
        "v5": dict(client_id=f"s5-{uid}", version=5, connect_props={"SessionExpiryInterval": 3600}),
        "v3": dict(client_id=f"s3-{uid}", version=4),
        "online": dict(client_id=f"sl-{uid}", version=5, connect_props={"SessionExpiryInterval": 3600}),
    }
    before: dict[str, set[int]] = {name: set() for name in subs}
    online = None
    for name, kw in subs.items():
        c = TClient(b.host, b.port, clean=kw["version"] == 5, **kw)
        assert c.subscribe(f"{prefix}/#", 1) == [1]
        if name == "online":
            online = c
        else:
            c.disconnect()

    try:
        pub = Publisher(b, f"qpub-{uid}", lambda seq: (f"{prefix}/{seq % 4}", str(seq).encode()))
        run_until_killed(brokers, b, [pub], lambda: len(pub.acked), 1000)
        online.wait_disconnected()
        before["online"] = {int(m.payload) for m in online.drain()}
    finally:
        online.close()
    assert not pub.failed, f"PUBACK errors: {pub.failed[:5]}"
    assert before["online"], "the online subscriber received nothing before the kill"
    acked = set(pub.acked)
    sent = set(pub.sent)
    assert before["online"] <= sent

    b = brokers.start(**over)
    for name, kw in subs.items():
        c = TClient(b.host, b.port, clean=False, **kw)
        try:
            assert c.session_present, f"{name}: session not present after the restart"
            got: set[int] = set()
            deadline = time.monotonic() + 10
            while not acked <= got | before[name]:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(acked - got - before[name])
                    raise AssertionError(
                        f"{name}: {len(missing)} of {len(acked)} PUBACKed messages never delivered "
                        f"(first missing seqs {missing[:20]}; received {len(before[name])} before the "
                        f"kill, {len(got)} after the restart; {len(sent)} sent)")
                m = c.get(left)
                seq = int(m.payload)
                assert seq in sent, f"{name}: message {seq} was never published"
                assert m.topic == f"{prefix}/{seq % 4}"
                got.add(seq)
            # the subscription itself survived: a message published now reaches it
            p = TClient(b.host, b.port)
            assert p.publish(f"{prefix}/after", b"after", 1) == 0
            p.close()
            deadline = time.monotonic() + 5
            while True:
                m = c.get(max(0.01, deadline - time.monotonic()))
                if m.topic == f"{prefix}/after":
                    assert m.payload == b"after"
                    break
                assert int(m.payload) in sent  # a late duplicate or unacknowledged message
        finally:
            c.close()
    if storage == "compacting":
        assert snapshots(brokers.data_dir, "sessions"), "no session snapshot was written"


# ---------------------------------------------------------------- 4. torn tail


def write_shadows(broker, things, rounds):
    """`rounds` acknowledged updates per thing (n = 1..rounds, version = n)."""
    ws = [ShadowWriter(broker, t, 1, limit=rounds) for t in things]
    run_to_end(ws, broker=broker)
    for w in ws:
        assert [n for n, _ in w.accepted] == list(range(1, rounds + 1)), w.accepted
        assert [v for _, v in w.accepted] == list(range(1, rounds + 1)), w.accepted


def last_shadow_segment(data_dir):
    """(segment, its records) of the shard whose last shadows segment has most records."""
    best = None
    for log_dir in sorted(data_dir.glob("shard-*/shadows")):
        segs = segments(log_dir)
        if segs:
            recs = shadow_records(segs[-1])
            if best is None or len(recs) > len(best[1]):
                best = (segs[-1], recs)
    assert best and best[1], f"no shadow records under {data_dir}"
    return best


@pytest.mark.parametrize("damage", ["cut_payload", "cut_header", "garbage"])
def test_torn_tail_of_shadow_log(brokers, uid, damage):
    """After a clean stop, the last record of a shadows segment is cut in the middle (as a
    crash mid-write leaves it) or garbage is appended. The broker starts, reports it, and
    loses at most that last update; it then takes new updates that survive another restart."""
    things = [thing_name(uid, f"-{i}") for i in range(6)]
    rounds = 5
    b = brokers.start()
    write_shadows(b, things, rounds)
    brokers.stop(b)

    seg, recs = last_shadow_segment(brokers.data_dir)
    off, victim, slot = recs[-1]
    assert slot["s"]["r"]["n"] == rounds, slot
    data = seg.read_bytes()
    if damage == "cut_payload":
        seg.write_bytes(data[:off + 8 + (len(data) - off - 8) // 2])
    elif damage == "cut_header":
        seg.write_bytes(data[:off + 5])
    else:
        # a whole record whose checksum does not match, then a partial one
        junk = os.urandom(20)
        bad_crc = (zlib.crc32((20).to_bytes(4, "little") + junk) ^ 1).to_bytes(4, "little")
        seg.write_bytes(data + (20).to_bytes(4, "little") + bad_crc + junk + b"\x07\x00")

    b = brokers.start()
    found = version_n(read_shadows(b, things))
    for t in things:
        if t == victim and damage != "garbage":
            assert found[t] == (rounds - 1, rounds - 1), f"{t} (torn last record): {found[t]}"
        else:
            assert found[t] == (rounds, rounds), f"{t}: {found[t]}"
    err = plain_stderr(b)
    assert DAMAGE_WARNING in err and seg.name in err, f"no corruption report for {seg}:\n{err[-3000:]}"

    # new updates go on after the cut and are readable after another restart
    v = update_shadow(b, victim, 100)
    assert v == found[victim][0] + 1
    brokers.stop(b)
    assert [r[1] for r in shadow_records(seg)][-1] == victim
    b = brokers.start()
    assert version_n(read_shadows(b, [victim]))[victim] == (v, 100)
    assert DAMAGE_WARNING not in plain_stderr(b), "the truncated segment is reported again"


# ---------------------------------------------------------------- 5. corrupted record


@pytest.mark.parametrize("where", ["early_segment", "last_segment"])
def test_corrupted_record_in_shadow_log(brokers, uid, where):
    """With 4 KiB segments, one byte is flipped inside a record of a shadows segment (an
    early, fully synced one, or the middle of the last one). The broker must start, report
    the damage, and serve exactly what the policy keeps: in the damaged segment the records
    before the bad one, and every other segment in full. New updates work and survive."""
    over = {"segment_bytes": 4096}
    early = [thing_name(uid, f"-e{i}") for i in range(8)]
    stream = [thing_name(uid, f"-s{i}") for i in range(8)]
    b = brokers.start(**over)
    write_shadows(b, early, 3)  # n = 1..3 of each, all in the first segment
    write_shadows(b, stream, 40)
    brokers.stop(b)

    # the shard with the most segments among those holding some of the early things
    # (whose last records are then in its first segment)
    def early_on(d):
        segs = segments(d)
        return bool(segs) and any(t in early for _, t, _ in shadow_records(segs[0]))
    log_dir = max((d for d in brokers.data_dir.glob("shard-*/shadows") if early_on(d)),
                  key=lambda d: len(segments(d)))
    segs = segments(log_dir)
    assert len(segs) >= 3, f"expected several segments in {log_dir}: {segs}"
    per_seg = {s: shadow_records(s) for s in segs}
    target = segs[0] if where == "early_segment" else segs[-1]
    recs = per_seg[target]
    bad = 1 if where == "early_segment" else len(recs) // 2
    assert len(recs) > bad + 2
    off, _, _ = recs[bad]
    data = bytearray(target.read_bytes())
    data[off + 8 + 10] ^= 0x40  # inside the payload: its checksum no longer matches
    target.write_bytes(bytes(data))

    # what the policy keeps, last record per thing wins
    final = {}
    kept = {}
    for s in segs:
        for i, (_, thing, slot) in enumerate(per_seg[s]):
            val = (slot["v"], slot["s"]["r"]["n"])
            final[thing] = val
            if not (s == target and i >= bad):
                kept[thing] = val
    damaged = sorted(t for t in final if kept.get(t) != final[t])
    assert damaged, "the damage should hit the last record of some thing"

    b = brokers.start(**over)
    found = version_n(read_shadows(b, early + stream))
    problems = []
    for t in early + stream:
        expected = kept.get(t) if t in final else ((3, 3) if t in early else (40, 40))
        if found[t] != expected:
            problems.append(f"{t}: expected {expected} (last written {final.get(t)}), found {found[t]}")
    assert not problems, "after the corruption:\n" + "\n".join(problems)
    err = plain_stderr(b)
    assert DAMAGE_WARNING in err and target.name in err, f"no corruption report for {target}:\n{err[-3000:]}"

    # still serving: new updates, of a thing rolled back by the damage and of one that was
    # not (if the damage spared one), or of a new thing; they survive another restart
    spared = [t for t in early + stream if t not in damaged]
    fresh = thing_name(uid, "-new")
    targets = [damaged[0], spared[0] if spared else fresh]
    found[fresh] = None
    roundtrip_ok(b)
    for t in targets:
        base = found[t][0] if found[t] else 0
        v = update_shadow(b, t, 1000)
        assert v == base + 1, f"{t}: recovered version {base}, next update got version {v}"
    brokers.stop(b)
    b = brokers.start(**over)
    again = version_n(read_shadows(b, targets))
    for t in targets:
        base = found[t][0] if found[t] else 0
        assert again[t] == (base + 1, 1000), f"{t}: {again[t]}"
    assert DAMAGE_WARNING in plain_stderr(b) or where == "last_segment"


# ---------------------------------------------------------------- 6. durable = false


def test_non_durable_mode_survives_clean_restart(brokers, uid):
    """With durable = false updates and retained PUBACKs are answered without waiting for
    an fsync, and a clean stop still writes everything out."""
    things = [thing_name(uid, f"-{i}") for i in range(4)]
    b = brokers.start(durable=False)
    write_shadows(b, things, 10)
    c = TClient(b.host, b.port)
    for i in range(20):
        assert c.publish(f"nd/{uid}/{i % 5}", str(i).encode(), 1, retain=True) == 0
    c.close()
    brokers.stop(b)

    b = brokers.start(durable=False)
    assert version_n(read_shadows(b, things)) == {t: (10, 10) for t in things}
    c = TClient(b.host, b.port)
    c.subscribe(f"nd/{uid}/#", 1)
    got = {m.topic: int(m.payload) for m in c.get_n(5)}
    c.expect_none(0.2)
    c.close()
    assert got == {f"nd/{uid}/{k}": 15 + k for k in range(5)}
