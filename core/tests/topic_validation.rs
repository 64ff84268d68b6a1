//! Table-driven tests of topic name, filter, shared-subscription and limit validation.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use bytestring::ByteString;
use iotcore_core::topic::{
    check_limits, ShareGroup, SubscriptionFilter, TopicError, TopicFilter, TopicName,
    AWS_MAX_TOPIC_BYTES, AWS_MAX_TOPIC_LEVELS,
};

#[test]
fn topic_names() {
    let too_long = "x".repeat(65_536);
    let max = "x".repeat(65_535);
    let cases: &[(&str, Result<(), TopicError>)] = &[
        ("a", Ok(())),
        ("/", Ok(())),
        ("a//b", Ok(())),
        ("a/", Ok(())),
        (" ", Ok(())),
        ("$SYS/broker/load", Ok(())),
        ("sport/tennis/player1", Ok(())),
        ("日本/東京", Ok(())),
        (&max, Ok(())),
        ("", Err(TopicError::Empty)),
        ("+", Err(TopicError::WildcardInTopicName)),
        ("#", Err(TopicError::WildcardInTopicName)),
        ("a/+/b", Err(TopicError::WildcardInTopicName)),
        ("a/b#", Err(TopicError::WildcardInTopicName)),
        ("a+b", Err(TopicError::WildcardInTopicName)),
        ("a\0b", Err(TopicError::NullCharacter)),
        ("\0", Err(TopicError::NullCharacter)),
        (&too_long, Err(TopicError::TooLong { len: 65_536 })),
    ];
    for (input, expected) in cases {
        let got = TopicName::new(ByteString::from(*input)).map(|_| ());
        assert_eq!(&got, expected, "TopicName {:?}", truncate(input));
        assert_eq!(
            TopicName::try_from(*input).map(|_| ()),
            got,
            "TryFrom<&str> must agree with new"
        );
    }
}

#[test]
fn topic_filters() {
    let too_long = "x".repeat(65_536);
    let cases: &[(&str, Result<(), TopicError>)] = &[
        ("#", Ok(())),
        ("+", Ok(())),
        ("+/+", Ok(())),
        ("/+", Ok(())),
        ("+/", Ok(())),
        ("a/#", Ok(())),
        ("+/#", Ok(())),
        ("/#", Ok(())),
        ("sport/tennis/player1/#", Ok(())),
        ("sport/+/player1", Ok(())),
        ("a//b", Ok(())),
        ("/", Ok(())),
        ("$SYS/#", Ok(())),
        ("$share", Ok(())),
        ("", Err(TopicError::Empty)),
        ("a\0", Err(TopicError::NullCharacter)),
        ("+/\0/#", Err(TopicError::NullCharacter)),
        (&too_long, Err(TopicError::TooLong { len: 65_536 })),
        ("sport/tennis#", Err(TopicError::MultiLevelWildcardNotLast)),
        (
            "sport/tennis/#/ranking",
            Err(TopicError::MultiLevelWildcardNotLast),
        ),
        ("#/", Err(TopicError::MultiLevelWildcardNotLast)),
        ("#/a", Err(TopicError::MultiLevelWildcardNotLast)),
        ("##", Err(TopicError::MultiLevelWildcardNotLast)),
        ("a/#/#", Err(TopicError::MultiLevelWildcardNotLast)),
        ("+#", Err(TopicError::MultiLevelWildcardNotLast)),
        ("sport+", Err(TopicError::SingleLevelWildcardNotWholeLevel)),
        ("+a/b", Err(TopicError::SingleLevelWildcardNotWholeLevel)),
        ("a/++", Err(TopicError::SingleLevelWildcardNotWholeLevel)),
        ("a/b+/#", Err(TopicError::SingleLevelWildcardNotWholeLevel)),
    ];
    for (input, expected) in cases {
        let got = TopicFilter::new(ByteString::from(*input)).map(|_| ());
        assert_eq!(&got, expected, "TopicFilter {:?}", truncate(input));
    }
}

#[test]
fn topic_shared_subscription_filters() {
    // (input, Ok((group, filter)) or the error)
    type Case<'a> = (&'a str, Result<(Option<&'a str>, &'a str), TopicError>);
    let cases: &[Case] = &[
        ("$share/g/a/b", Ok((Some("g"), "a/b"))),
        ("$share/g/#", Ok((Some("g"), "#"))),
        ("$share/g/+/x", Ok((Some("g"), "+/x"))),
        ("$share/g/$SYS/#", Ok((Some("g"), "$SYS/#"))),
        ("$share/$g/a", Ok((Some("$g"), "a"))),
        ("$share/g//", Ok((Some("g"), "/"))),
        ("$share/g/$share/h/x", Ok((Some("g"), "$share/h/x"))),
        ("a/b", Ok((None, "a/b"))),
        ("#", Ok((None, "#"))),
        ("$share", Ok((None, "$share"))),
        ("$sharegroup/x", Ok((None, "$sharegroup/x"))),
        ("$SHARE/g/x", Ok((None, "$SHARE/g/x"))),
        ("share/g/x", Ok((None, "share/g/x"))),
        ("$share/", Err(TopicError::EmptyShareName)),
        ("$share//a", Err(TopicError::EmptyShareName)),
        ("$share/g", Err(TopicError::MissingShareFilter)),
        ("$share/g/", Err(TopicError::MissingShareFilter)),
        ("$share/g+/a", Err(TopicError::InvalidShareName)),
        ("$share/#/a", Err(TopicError::InvalidShareName)),
        ("$share/g/a#", Err(TopicError::MultiLevelWildcardNotLast)),
        ("$share/g/#/a", Err(TopicError::MultiLevelWildcardNotLast)),
        (
            "$share/g/a+",
            Err(TopicError::SingleLevelWildcardNotWholeLevel),
        ),
        ("$share/g\0/a", Err(TopicError::NullCharacter)),
        ("$share/g/a\0", Err(TopicError::NullCharacter)),
        ("", Err(TopicError::Empty)),
        ("a/#/b", Err(TopicError::MultiLevelWildcardNotLast)),
    ];
    for (input, expected) in cases {
        let got = SubscriptionFilter::parse(ByteString::from(*input));
        match (&got, expected) {
            (Ok(sf), Ok((group, filter))) => {
                assert_eq!(
                    sf.share_group.as_ref().map(ShareGroup::as_str),
                    *group,
                    "{input:?}"
                );
                assert_eq!(sf.filter.as_str(), *filter, "{input:?}");
                assert_eq!(sf.is_shared(), group.is_some());
                assert_eq!(&*sf.full(), *input, "full() round trip");
                assert_eq!(sf.to_string(), *input, "Display round trip");
            }
            (Err(e), Err(want)) => assert_eq!(e, want, "{input:?}"),
            _ => panic!("{input:?}: got {got:?}, want {expected:?}"),
        }
    }
    let too_long = format!("$share/g/{}", "x".repeat(65_530));
    assert_eq!(
        SubscriptionFilter::try_from(too_long.as_str()),
        Err(TopicError::TooLong { len: 65_539 })
    );
}

#[test]
fn topic_share_group_direct() {
    assert!(ShareGroup::try_from("group-1").is_ok());
    assert_eq!(ShareGroup::try_from(""), Err(TopicError::EmptyShareName));
    for bad in ["a/b", "a+", "#"] {
        assert_eq!(ShareGroup::try_from(bad), Err(TopicError::InvalidShareName));
    }
    assert_eq!(ShareGroup::try_from("a\0"), Err(TopicError::NullCharacter));
}

#[test]
fn topic_limits() {
    let b256 = "a".repeat(256);
    let b257 = "a".repeat(257);
    let cases: &[(&str, Result<(), TopicError>)] = &[
        ("a/b", Ok(())),
        (&b256, Ok(())),
        ("1/2/3/4/5/6/7/8", Ok(())),
        ("///////", Ok(())),
        (
            &b257,
            Err(TopicError::ExceedsByteLimit { len: 257, max: 256 }),
        ),
        (
            "1/2/3/4/5/6/7/8/9",
            Err(TopicError::ExceedsLevelLimit { levels: 9, max: 8 }),
        ),
        (
            "////////",
            Err(TopicError::ExceedsLevelLimit { levels: 9, max: 8 }),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            &check_limits(input, AWS_MAX_TOPIC_BYTES, AWS_MAX_TOPIC_LEVELS),
            expected,
            "{input:?}"
        );
    }
}

#[test]
fn topic_every_error_names_its_rule() {
    let spec = [
        (TopicError::Empty, "[MQTT-4.7.3-1]"),
        (TopicError::TooLong { len: 70_000 }, "[MQTT-4.7.3-3]"),
        (TopicError::NullCharacter, "[MQTT-4.7.3-2]"),
        (TopicError::WildcardInTopicName, "[MQTT-3.3.2-2]"),
        (TopicError::MultiLevelWildcardNotLast, "[MQTT-4.7.1-1]"),
        (
            TopicError::SingleLevelWildcardNotWholeLevel,
            "[MQTT-4.7.1-2]",
        ),
        (TopicError::EmptyShareName, "[MQTT-4.8.2-1]"),
        (TopicError::InvalidShareName, "[MQTT-4.8.2-2]"),
        (TopicError::MissingShareFilter, "[MQTT-4.8.2-2]"),
    ];
    for (err, rule) in spec {
        assert!(err.to_string().starts_with(rule), "{err}");
    }
    let bytes = TopicError::ExceedsByteLimit { len: 300, max: 256 }.to_string();
    assert!(bytes.contains("300") && bytes.contains("256"), "{bytes}");
    let levels = TopicError::ExceedsLevelLimit { levels: 9, max: 8 }.to_string();
    assert!(levels.contains('9') && levels.contains('8'), "{levels}");
}

#[test]
fn topic_name_and_filter_accessors() {
    let t = TopicName::try_from("a//b").unwrap();
    assert_eq!(t.levels().collect::<Vec<_>>(), ["a", "", "b"]);
    assert_eq!(t.level_count(), 3);
    assert!(!t.is_reserved());
    assert_eq!(t.to_string(), "a//b");
    assert_eq!(t.as_str(), "a//b");
    assert_eq!(t.as_bytestring(), "a//b");
    assert!(TopicName::from_static("$SYS/x").unwrap().is_reserved());
    assert_eq!(
        TopicName::from_static("a/+"),
        Err(TopicError::WildcardInTopicName)
    );
    assert_eq!(TopicName::try_from("/").unwrap().level_count(), 2);

    // Borrow<str> lets sets of names be queried by &str; Ord is byte order.
    let set: HashSet<TopicName> = ["x/y", "z"]
        .into_iter()
        .map(|s| s.try_into().unwrap())
        .collect();
    assert!(set.contains("x/y"));
    assert!(TopicName::try_from("a").unwrap() < TopicName::try_from("b").unwrap());

    let f = TopicFilter::try_from("a/+/#").unwrap();
    assert_eq!(f.levels().collect::<Vec<_>>(), ["a", "+", "#"]);
    assert_eq!(f.level_count(), 3);
    assert!(f.has_wildcards());
    assert!(!f.starts_with_wildcard());
    assert!(TopicFilter::from_static("+/x")
        .unwrap()
        .starts_with_wildcard());
    assert!(!TopicFilter::from_static("a/b").unwrap().has_wildcards());
    assert_eq!(f.to_string(), "a/+/#");
}

fn truncate(s: &str) -> &str {
    s.get(..40).unwrap_or(s)
}
