//! Table-driven matching tests: the spec's examples from MQTT 5 §4.7 and edge cases, checked
//! against the naive `filter_matches` and, entry by entry, against the subscription trie and
//! the retained tree.
#![allow(clippy::unwrap_used)]

use iotcore_core::topic::{filter_matches, RetainedTree, SubscriptionTrie, TopicFilter, TopicName};

/// (filter, topic, matches)
const CASES: &[(&str, &str, bool)] = &[
    // §4.7.1.2 multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", true),
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking",
        true,
    ),
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon",
        true,
    ),
    ("sport/tennis/player1/#", "sport/tennis/player2", false),
    ("sport/tennis/player1/#", "sport/tennis", false),
    ("sport/#", "sport", true),
    ("sport/#", "sports", false),
    ("#", "sport/tennis/player1", true),
    ("#", "a", true),
    ("#", "/", true),
    // §4.7.1.3 single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", true),
    ("sport/tennis/+", "sport/tennis/player2", true),
    ("sport/tennis/+", "sport/tennis/player1/ranking", false),
    ("sport/tennis/+", "sport/tennis", false),
    ("sport/+", "sport", false),
    ("sport/+", "sport/", true),
    ("+", "a", true),
    ("+", "/finance", false),
    ("+/+", "/finance", true),
    ("/+", "/finance", true),
    ("+/+", "a", false),
    ("+/tennis/#", "sport/tennis/player1", true),
    ("+/tennis/#", "sport/tennis", true),
    ("sport/+/player1", "sport/tennis/player1", true),
    ("sport/+/player1", "sport/tennis/player2", false),
    // §4.7.2 topics beginning with $
    ("#", "$SYS/broker/load", false),
    ("#", "$SYS", false),
    ("+/monitor/Clients", "$SYS/monitor/Clients", false),
    ("+/#", "$SYS", false),
    ("+", "$SYS", false),
    ("$SYS/#", "$SYS/monitor/Clients", true),
    ("$SYS/#", "$SYS", true),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
    ("$SYS/monitor/+", "$SYS/monitor/Clients/x", false),
    ("$SYS", "$SYS", true),
    ("+/bar", "$foo/bar", false),
    ("$foo/+", "$foo/bar", true),
    // `$` below the first level is an ordinary character.
    ("a/+", "a/$SYS", true),
    ("a/#", "a/$SYS/x", true),
    ("+/$SYS", "a/$SYS", true),
    // empty levels and trailing slashes
    ("a//b", "a//b", true),
    ("a/+/b", "a//b", true),
    ("a/b", "a//b", false),
    ("a//b", "a/b", false),
    ("#", "a//b", true),
    ("a/", "a/", true),
    ("a/", "a", false),
    ("a", "a/", false),
    ("a/+", "a/", true),
    ("a/#", "a/", true),
    ("a/#", "a", true),
    ("/#", "/", true),
    ("/#", "/a", true),
    ("/#", "a", false),
    ("/", "/", true),
    ("+/+", "/", true),
    ("+", "/", false),
    ("//", "//", true),
    ("+/+/+", "//", true),
    // literal comparison is exact and case-sensitive
    ("ACCOUNTS", "Accounts", false),
    ("a/b/c", "a/b", false),
    ("a/b", "a/b/c", false),
    ("a/b", "a/b", true),
    ("a/bc", "a/b", false),
    ("a/b", "a/bc", false),
];

#[test]
fn topic_naive_matcher_table() {
    for &(filter, topic, expected) in CASES {
        assert_eq!(
            filter_matches(filter, topic),
            expected,
            "filter {filter:?} topic {topic:?}"
        );
    }
}

#[test]
fn topic_trie_agrees_with_table() {
    for &(filter, topic, expected) in CASES {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&TopicFilter::try_from(filter).unwrap(), "client", 1u8);
        let mut hits = 0;
        trie.for_each_match(topic, |k, v| {
            assert_eq!((*k, *v), ("client", 1));
            hits += 1;
        });
        assert_eq!(
            hits,
            usize::from(expected),
            "filter {filter:?} topic {topic:?}"
        );
    }
}

#[test]
fn topic_trie_with_all_table_filters_at_once() {
    let mut trie = SubscriptionTrie::new();
    for (i, &(filter, _, _)) in CASES.iter().enumerate() {
        trie.insert(&TopicFilter::try_from(filter).unwrap(), i, filter);
    }
    for &(_, topic, _) in CASES {
        let mut got: Vec<&str> = Vec::new();
        trie.for_each_match(topic, |_, f| got.push(f));
        got.sort_unstable();
        let mut want: Vec<&str> = CASES
            .iter()
            .map(|c| c.0)
            .filter(|f| filter_matches(f, topic))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "topic {topic:?}");
    }
}

#[test]
fn topic_retained_agrees_with_table() {
    for &(filter, topic, expected) in CASES {
        let mut tree = RetainedTree::new();
        tree.insert(&TopicName::try_from(topic).unwrap(), 7u8);
        let mut got = Vec::new();
        tree.for_each_matching(&TopicFilter::try_from(filter).unwrap(), |t, v| {
            got.push((t.to_owned(), *v));
        });
        let want = if expected {
            vec![(topic.to_owned(), 7)]
        } else {
            vec![]
        };
        assert_eq!(got, want, "filter {filter:?} topic {topic:?}");
    }
}

#[test]
fn topic_trie_entry_semantics() {
    let f = TopicFilter::try_from("sensors/+/temp").unwrap();
    let g = TopicFilter::try_from("sensors/#").unwrap();
    let mut trie = SubscriptionTrie::new();
    assert!(trie.is_empty());
    assert_eq!(trie.insert(&f, "c1", 0u8), None);
    assert_eq!(
        trie.insert(&f, "c1", 1),
        Some(0),
        "same key, same filter: replaced"
    );
    assert_eq!(
        trie.insert(&g, "c1", 2),
        None,
        "same key, other filter: separate entry"
    );
    assert_eq!(trie.insert(&f, "c2", 3), None);
    assert_eq!((trie.len(), trie.filter_count()), (3, 2));
    assert_eq!(trie.get(&f, &"c1"), Some(&1));
    assert_eq!(trie.get(&g, &"c2"), None);
    assert_eq!(
        trie.get(&TopicFilter::try_from("sensors").unwrap(), &"c1"),
        None
    );
    *trie.get_mut(&f, &"c2").unwrap() = 4;

    let mut got = Vec::new();
    trie.for_each_match("sensors/kitchen/temp", |k, v| got.push((*k, *v)));
    got.sort_unstable();
    assert_eq!(got, [("c1", 1), ("c1", 2), ("c2", 4)]);

    assert_eq!(trie.remove(&f, &"c3"), None);
    assert_eq!(
        trie.remove(&TopicFilter::try_from("x/y").unwrap(), &"c1"),
        None
    );
    assert_eq!(trie.remove(&f, &"c1"), Some(1));
    assert_eq!(trie.remove(&f, &"c1"), None);
    assert_eq!((trie.len(), trie.filter_count()), (2, 2));
    assert_eq!(trie.remove(&f, &"c2"), Some(4));
    assert_eq!((trie.len(), trie.filter_count()), (1, 1));
    trie.clear();
    assert!(trie.is_empty());
    assert_eq!(trie.filter_count(), 0);
}

#[test]
fn topic_thousand_subscribers_on_one_filter() {
    let f = TopicFilter::try_from("fleet/+/telemetry").unwrap();
    let mut trie = SubscriptionTrie::new();
    for id in 0..1_000u32 {
        assert_eq!(trie.insert(&f, id, id * 2), None);
    }
    assert_eq!((trie.len(), trie.filter_count()), (1_000, 1));
    let mut sum = 0u64;
    trie.for_each_match("fleet/truck7/telemetry", |k, v| {
        assert_eq!(*v, k * 2);
        sum += u64::from(*k);
    });
    assert_eq!(sum, 999 * 1_000 / 2);
    for id in (0..1_000u32).step_by(2) {
        assert_eq!(trie.remove(&f, &id), Some(id * 2));
    }
    assert_eq!(trie.len(), 500);
    for id in (1..1_000u32).step_by(2) {
        assert_eq!(trie.remove(&f, &id), Some(id * 2));
    }
    assert!(trie.is_empty());
    assert_eq!(trie.filter_count(), 0);
}

#[test]
fn topic_retained_semantics() {
    let mut tree = RetainedTree::new();
    let t = TopicName::try_from("home/kitchen/temp").unwrap();
    assert_eq!(tree.insert(&t, "20C"), None);
    assert_eq!(tree.insert(&t, "21C"), Some("20C"));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.get("home/kitchen/temp"), Some(&"21C"));
    assert_eq!(tree.get("home/kitchen"), None);
    assert_eq!(tree.get("home/kitchen/temp/x"), None);
    *tree.get_mut("home/kitchen/temp").unwrap() = "22C";
    tree.insert(&TopicName::try_from("home").unwrap(), "root");
    tree.insert(&TopicName::try_from("$SYS/uptime").unwrap(), "1d");

    let mut got = Vec::new();
    tree.for_each_matching(&TopicFilter::try_from("home/#").unwrap(), |t, v| {
        got.push((t.to_owned(), *v));
    });
    got.sort();
    assert_eq!(
        got,
        [
            ("home".to_owned(), "root"),
            ("home/kitchen/temp".to_owned(), "22C")
        ]
    );

    let mut all = Vec::new();
    tree.for_each_matching(&TopicFilter::try_from("#").unwrap(), |t, _| {
        all.push(t.to_owned());
    });
    all.sort();
    assert_eq!(all, ["home", "home/kitchen/temp"], "`#` skips $SYS");

    assert_eq!(tree.remove("home/kitchen"), None);
    assert_eq!(tree.remove("home/kitchen/temp"), Some("22C"));
    assert_eq!(tree.remove("home/kitchen/temp"), None);
    assert_eq!(tree.len(), 2);
    tree.clear();
    assert!(tree.is_empty());
}
