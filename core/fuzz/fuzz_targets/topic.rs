//! Topic names and filters: arbitrary text through `TopicName`, `TopicFilter`,
//! `SubscriptionFilter::parse` and `filter_matches`, each checked against a small independent
//! reference, then a sequence of `SubscriptionTrie` inserts, removes and matches checked
//! against a plain list of subscriptions and `filter_matches`.
//!
//! Input: the bytes as UTF-8 (invalid sequences replaced), split into lines. Every line goes
//! through the parsers. A line's first character also makes it an operation on the trie:
//! its code point mod 4 picks insert (0, 1), remove (2) or match (3), and (code point / 4)
//! mod 4 the subscriber key; the rest of the line is the filter or topic.

#![no_main]

use bytestring::ByteString;
use iotcore_core::topic::{
    check_limits, filter_matches, SubscriptionFilter, SubscriptionTrie, TopicFilter, TopicName,
    SHARE_PREFIX,
};
use libfuzzer_sys::fuzz_target;

const MAX_TOPIC_BYTES: usize = 65_535;

/// §4.7.3: non-empty, at most 65,535 bytes, no U+0000.
fn ref_common(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOPIC_BYTES && !s.contains('\0')
}

fn ref_is_name(s: &str) -> bool {
    ref_common(s) && !s.contains(['+', '#'])
}

/// §4.7.1: `+` fills a whole level; `#` fills a whole level and is the last one.
fn ref_is_filter(s: &str) -> bool {
    let levels: Vec<&str> = s.split('/').collect();
    ref_common(s)
        && levels.iter().enumerate().all(|(i, l)| {
            (!l.contains('+') || *l == "+")
                && (!l.contains('#') || (*l == "#" && i == levels.len() - 1))
        })
}

/// Recursive matcher over level slices, written independently of `filter_matches`.
fn ref_matches(filter: &str, topic: &str) -> bool {
    fn go(f: &[&str], t: &[&str]) -> bool {
        match (f.split_first(), t.split_first()) {
            (Some((&"#", _)), _) => true,
            (None, None) => true,
            (Some((&fl, fr)), Some((&tl, tr))) => (fl == "+" || fl == tl) && go(fr, tr),
            _ => false,
        }
    }
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    go(&f, &t)
}

fn check_parsers(line: &str) {
    let name = TopicName::try_from(line);
    assert_eq!(
        name.is_ok(),
        ref_is_name(line),
        "TopicName validity of {line:?}"
    );
    if let Ok(n) = &name {
        assert_eq!(n.as_str(), line);
        assert_eq!(n.level_count(), line.split('/').count());
        assert!(n.levels().eq(line.split('/')));
        assert!(
            filter_matches(line, line),
            "a topic name matches itself: {line:?}"
        );
        assert_eq!(filter_matches("#", line), !line.starts_with('$'));
    }
    let filter = TopicFilter::try_from(line);
    assert_eq!(
        filter.is_ok(),
        ref_is_filter(line),
        "TopicFilter validity of {line:?}"
    );
    if let Ok(f) = &filter {
        assert_eq!(f.as_str(), line);
        assert_eq!(f.level_count(), line.split('/').count());
        assert_eq!(f.has_wildcards(), line.contains(['+', '#']));
    }
    let _ = check_limits(line, 256, 8);

    let sub = SubscriptionFilter::parse(ByteString::from(line));
    match line.strip_prefix(SHARE_PREFIX) {
        None => {
            assert_eq!(sub.is_ok(), filter.is_ok(), "plain subscription {line:?}");
            if let Ok(sub) = &sub {
                assert!(sub.share_group.is_none());
                assert_eq!(sub.filter.as_str(), line);
            }
        }
        Some(rest) => {
            let expected = line.len() <= MAX_TOPIC_BYTES
                && match rest.split_once('/') {
                    Some((group, f)) => {
                        !group.is_empty() && !group.contains(['+', '#', '\0']) && ref_is_filter(f)
                    }
                    None => false,
                };
            assert_eq!(
                sub.is_ok(),
                expected,
                "shared subscription {line:?}: {sub:?}"
            );
            if let Ok(sub) = &sub {
                let group = sub
                    .share_group
                    .as_ref()
                    .expect("a $share/ filter has a group");
                assert_eq!(format!("{SHARE_PREFIX}{group}/{}", sub.filter), line);
            }
        }
    }
}

/// The trie's matches for `topic`, as sorted (key, value) pairs.
fn trie_matches(trie: &SubscriptionTrie<u8, u32>, topic: &str) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    trie.for_each_match(topic, |&k, &v| out.push((k, v)));
    out.sort_unstable();
    out
}

/// The same from the list of subscriptions and `filter_matches`.
fn model_matches(model: &[(String, u8, u32)], topic: &str) -> Vec<(u8, u32)> {
    let mut out: Vec<(u8, u32)> = model
        .iter()
        .filter(|(f, _, _)| filter_matches(f, topic))
        .map(|&(_, k, v)| (k, v))
        .collect();
    out.sort_unstable();
    out
}

fn check_trie(trie: &SubscriptionTrie<u8, u32>, model: &[(String, u8, u32)]) {
    assert_eq!(trie.len(), model.len());
    let mut filters: Vec<&str> = model.iter().map(|(f, _, _)| f.as_str()).collect();
    filters.sort_unstable();
    filters.dedup();
    assert_eq!(trie.filter_count(), filters.len());
    assert_eq!(trie.is_empty(), model.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();

    let mut topics = Vec::new();
    for line in &lines {
        check_parsers(line);
        if ref_is_name(line) {
            topics.push(*line);
        }
    }
    // filter_matches against the reference, for every (filter, topic) pair (bounded).
    for f in lines.iter().filter(|l| ref_is_filter(l)).take(32) {
        for t in topics.iter().take(32) {
            assert_eq!(
                filter_matches(f, t),
                ref_matches(f, t),
                "filter_matches({f:?}, {t:?})"
            );
        }
    }

    let mut trie: SubscriptionTrie<u8, u32> = SubscriptionTrie::new();
    let mut model: Vec<(String, u8, u32)> = Vec::new();
    for (value, line) in (0u32..).zip(&lines) {
        let mut chars = line.chars();
        let Some(op) = chars.next() else {
            continue;
        };
        let arg = chars.as_str();
        let op = u32::from(op);
        let key = ((op / 4) % 4) as u8;
        match op % 4 {
            0 | 1 => {
                let Ok(filter) = TopicFilter::try_from(arg) else {
                    continue;
                };
                let old = trie.insert(&filter, key, value);
                let pos = model.iter().position(|(f, k, _)| f == arg && *k == key);
                let model_old = match pos {
                    Some(i) => Some(std::mem::replace(&mut model[i].2, value)),
                    None => {
                        model.push((arg.to_owned(), key, value));
                        None
                    }
                };
                assert_eq!(old, model_old, "insert {arg:?} {key}");
                assert_eq!(trie.get(&filter, &key), Some(&value));
            }
            2 => {
                let Ok(filter) = TopicFilter::try_from(arg) else {
                    continue;
                };
                let old = trie.remove(&filter, &key);
                let pos = model.iter().position(|(f, k, _)| f == arg && *k == key);
                let model_old = pos.map(|i| model.swap_remove(i).2);
                assert_eq!(old, model_old, "remove {arg:?} {key}");
                assert_eq!(trie.get(&filter, &key), None);
            }
            _ => {
                if TopicName::try_from(arg).is_ok() {
                    assert_eq!(
                        trie_matches(&trie, arg),
                        model_matches(&model, arg),
                        "match {arg:?}"
                    );
                } else {
                    // Not a topic name: must not panic, whatever it returns.
                    trie.for_each_match(arg, |_, _| {});
                }
            }
        }
        check_trie(&trie, &model);
    }
    for t in &topics {
        assert_eq!(
            trie_matches(&trie, t),
            model_matches(&model, t),
            "match {t:?}"
        );
    }
    // Empty it again: removal and pruning must leave a consistent, empty trie.
    while let Some((f, k, v)) = model.pop() {
        let filter = TopicFilter::try_from(f.as_str()).expect("model filters are valid");
        assert_eq!(trie.remove(&filter, &k), Some(v));
        check_trie(&trie, &model);
    }
    for t in &topics {
        assert!(trie_matches(&trie, t).is_empty());
    }
});
