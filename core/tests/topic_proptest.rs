//! Property tests: the subscription trie and the retained tree must agree with the naive
//! `filter_matches` over a plain list, through inserts, replacements and removals; shared
//! subscription filters must round-trip.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use bytestring::ByteString;
use iotcore_core::topic::{
    filter_matches, RetainedTree, SubscriptionFilter, SubscriptionTrie, TopicFilter, TopicName,
};
use proptest::prelude::*;
use proptest::sample::select;

/// Topic levels: the empty level, a `$` level (special only when first), and a few literals.
/// A small alphabet so random filters and topics actually collide.
fn topic_level() -> impl Strategy<Value = &'static str> {
    select(vec!["", "$SYS", "a", "b", "c"])
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(topic_level(), 1..=4).prop_map(|levels| non_empty(levels.join("/")))
}

/// A single empty level joins to "", which is not a valid topic or filter; use `/` (two
/// empty levels) instead.
fn non_empty(s: String) -> String {
    if s.is_empty() {
        "/".to_owned()
    } else {
        s
    }
}

fn filter() -> impl Strategy<Value = String> {
    let level = select(vec!["", "$SYS", "a", "b", "+", "+"]);
    (prop::collection::vec(level, 0..=4), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash || levels.is_empty() {
            levels.push("#");
        }
        non_empty(levels.join("/"))
    })
}

fn tf(s: &str) -> TopicFilter {
    TopicFilter::try_from(s).unwrap()
}

/// The trie's matches for `topic`, as sorted (filter, key, value) triples; the value carries
/// the filter so entries are identifiable.
fn trie_matches(trie: &SubscriptionTrie<u8, (String, u32)>, topic: &str) -> Vec<(String, u8, u32)> {
    let mut got = Vec::new();
    trie.for_each_match(topic, |k, (f, v)| got.push((f.clone(), *k, *v)));
    got.sort();
    got
}

fn model_matches(model: &HashMap<(String, u8), u32>, topic: &str) -> Vec<(String, u8, u32)> {
    let mut want: Vec<_> = model
        .iter()
        .filter(|((f, _), _)| filter_matches(f, topic))
        .map(|((f, k), v)| (f.clone(), *k, *v))
        .collect();
    want.sort();
    want
}

fn check_trie(
    trie: &SubscriptionTrie<u8, (String, u32)>,
    model: &HashMap<(String, u8), u32>,
    topics: &[String],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(trie.len(), model.len());
    prop_assert_eq!(trie.is_empty(), model.is_empty());
    let mut filters: Vec<&String> = model.keys().map(|(f, _)| f).collect();
    filters.sort();
    filters.dedup();
    prop_assert_eq!(trie.filter_count(), filters.len());
    for ((f, k), v) in model {
        prop_assert_eq!(trie.get(&tf(f), k).map(|(_, v)| *v), Some(*v));
    }
    for topic in topics {
        prop_assert_eq!(
            trie_matches(trie, topic),
            model_matches(model, topic),
            "topic {:?}",
            topic
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn topic_trie_matches_naive_scan(
        entries in prop::collection::vec((filter(), 0u8..6), 0..80),
        removals in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), filter(), 0u8..6), 0..80),
        topics in prop::collection::vec(topic(), 1..24),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut model: HashMap<(String, u8), u32> = HashMap::new();
        for (i, (f, k)) in entries.iter().enumerate() {
            let id = u32::try_from(i).unwrap();
            let old = trie.insert(&tf(f), *k, (f.clone(), id));
            let old_model = model.insert((f.clone(), *k), id);
            prop_assert_eq!(old.map(|(_, v)| v), old_model);
        }
        check_trie(&trie, &model, &topics)?;

        // Remove mostly existing entries, sometimes random (possibly absent) ones.
        for (index, existing, f, k) in removals {
            let (f, k) = if existing && !entries.is_empty() {
                index.get(&entries).clone()
            } else {
                (f, k)
            };
            let got = trie.remove(&tf(&f), &k).map(|(_, v)| v);
            prop_assert_eq!(got, model.remove(&(f.clone(), k)));
        }
        check_trie(&trie, &model, &topics)?;

        // Everything can be removed, and re-inserting afterwards still works.
        let remaining: Vec<(String, u8)> = model.keys().cloned().collect();
        for (f, k) in remaining {
            prop_assert!(trie.remove(&tf(&f), &k).is_some());
            model.remove(&(f, k));
        }
        check_trie(&trie, &model, &topics)?;
        if let Some((f, k)) = entries.first() {
            trie.insert(&tf(f), *k, (f.clone(), 0));
            model.insert((f.clone(), *k), 0);
            check_trie(&trie, &model, &topics)?;
        }
    }

    #[test]
    fn topic_retained_matches_naive_scan(
        inserts in prop::collection::vec(topic(), 0..60),
        removals in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), topic()), 0..40),
        filters in prop::collection::vec(filter(), 1..24),
    ) {
        let mut tree = RetainedTree::new();
        let mut model: BTreeMap<String, usize> = BTreeMap::new();
        for (i, t) in inserts.iter().enumerate() {
            let old = tree.insert(&TopicName::try_from(t.as_str()).unwrap(), i);
            prop_assert_eq!(old, model.insert(t.clone(), i));
        }
        for (index, existing, t) in removals {
            let t = if existing && !inserts.is_empty() { index.get(&inserts).clone() } else { t };
            prop_assert_eq!(tree.remove(&t), model.remove(&t));
        }
        prop_assert_eq!(tree.len(), model.len());
        prop_assert_eq!(tree.is_empty(), model.is_empty());
        for (t, v) in &model {
            prop_assert_eq!(tree.get(t), Some(v));
        }
        for f in &filters {
            let mut got = Vec::new();
            tree.for_each_matching(&tf(f), |t, v| got.push((t.to_owned(), *v)));
            got.sort();
            let want: Vec<(String, usize)> = model
                .iter()
                .filter(|(t, _)| filter_matches(f, t))
                .map(|(t, v)| (t.clone(), *v))
                .collect();
            prop_assert_eq!(got, want, "filter {:?}", f);
        }
    }

    #[test]
    fn topic_shared_subscription_round_trip(
        group in "[a-zA-Z0-9_$.-]{1,8}",
        f in filter(),
    ) {
        let full = format!("$share/{group}/{f}");
        let sf = SubscriptionFilter::parse(ByteString::from(full.as_str())).unwrap();
        prop_assert_eq!(sf.share_group.as_ref().map(|g| g.as_str()), Some(group.as_str()));
        prop_assert_eq!(sf.filter.as_str(), f.as_str());
        prop_assert_eq!(&*sf.full(), full.as_str());
        prop_assert_eq!(sf.to_string(), full);

        let plain = SubscriptionFilter::parse(ByteString::from(f.as_str())).unwrap();
        prop_assert!(plain.share_group.is_none());
        prop_assert_eq!(&*plain.full(), f.as_str());
        prop_assert_eq!(plain.filter, tf(&f));
    }

    /// Arbitrary input never panics, and anything accepted prints back as it came in.
    #[test]
    fn topic_parse_never_panics_and_round_trips(
        s in prop_oneof![
            ".{0,12}",
            "\\$share[/a-c+#$\u{0}]{0,10}",
            "[/a+#]{0,10}",
        ],
    ) {
        if let Ok(sf) = SubscriptionFilter::parse(ByteString::from(s.as_str())) {
            prop_assert_eq!(&*sf.full(), s.as_str());
            prop_assert_eq!(sf.to_string(), s);
        }
    }

    /// Validation agrees with a direct reading of the rules over a wildcard-heavy alphabet.
    #[test]
    fn topic_validation_matches_rules(s in "[/a+#\u{0}]{0,8}") {
        let no_null = !s.contains('\0');
        let name_ok = !s.is_empty() && no_null && !s.contains(['+', '#']);
        prop_assert_eq!(TopicName::try_from(s.as_str()).is_ok(), name_ok);

        let levels: Vec<&str> = s.split('/').collect();
        let filter_ok = !s.is_empty()
            && no_null
            && levels.iter().enumerate().all(|(i, l)| {
                *l == "+"
                    || (*l == "#" && i == levels.len() - 1)
                    || !l.contains(['+', '#'])
            });
        prop_assert_eq!(TopicFilter::try_from(s.as_str()).is_ok(), filter_ok);
    }
}
