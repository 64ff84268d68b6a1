//! The reserved shadow topics: `$aws/things/{thing}/shadow[/name/{shadow}]/{get|update|delete}`
//! carry requests; the service answers on the same topic plus `/accepted` or `/rejected`, and
//! publishes `/update/delta` and `/update/documents` after an accepted update.

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOp {
    Get,
    Update,
    Delete,
}

impl ShadowOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOp::Get => "get",
            ShadowOp::Update => "update",
            ShadowOp::Delete => "delete",
        }
    }
}

/// A request topic taken apart. The names are not validated here: a request with a bad
/// thing name still gets its answer on `/rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTopic<'a> {
    pub thing: &'a str,
    pub shadow: Option<&'a str>,
    pub op: ShadowOp,
    /// The topic without the operation: `$aws/things/{thing}/shadow[/name/{shadow}]`.
    pub prefix: &'a str,
}

const THINGS: &str = "$aws/things/";

/// Parses a request topic; `None` for any other topic (responses included).
pub fn parse(topic: &str) -> Option<RequestTopic<'_>> {
    let rest = topic.strip_prefix(THINGS)?;
    let (thing, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("shadow/")?;
    let (shadow, op_str) = match rest.strip_prefix("name/") {
        Some(named) => {
            let (name, op) = named.split_once('/')?;
            (Some(name), op)
        }
        None => (None, rest),
    };
    let op = match op_str {
        "get" => ShadowOp::Get,
        "update" => ShadowOp::Update,
        "delete" => ShadowOp::Delete,
        _ => return None,
    };
    if thing.is_empty() || shadow.is_some_and(str::is_empty) {
        return None;
    }
    let prefix = &topic[..topic.len() - op_str.len() - 1];
    Some(RequestTopic {
        thing,
        shadow,
        op,
        prefix,
    })
}

/// The topic prefix of a shadow: `$aws/things/{thing}/shadow[/name/{shadow}]`.
pub fn prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        Some(name) => format!("{THINGS}{thing}/shadow/name/{name}"),
        None => format!("{THINGS}{thing}/shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_and_named_requests() {
        let r = parse("$aws/things/lamp/shadow/update").expect("classic");
        assert_eq!((r.thing, r.shadow, r.op), ("lamp", None, ShadowOp::Update));
        assert_eq!(r.prefix, "$aws/things/lamp/shadow");
        let r = parse("$aws/things/lamp/shadow/name/cfg/get").expect("named");
        assert_eq!(
            (r.thing, r.shadow, r.op),
            ("lamp", Some("cfg"), ShadowOp::Get)
        );
        assert_eq!(r.prefix, "$aws/things/lamp/shadow/name/cfg");
        assert_eq!(prefix("lamp", Some("cfg")), r.prefix);
        assert_eq!(
            parse("$aws/things/x/shadow/delete").map(|r| r.op),
            Some(ShadowOp::Delete)
        );
    }

    #[test]
    fn responses_and_other_topics_are_not_requests() {
        for t in [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/delta",
            "$aws/things/lamp/shadow/get/rejected",
            "$aws/things/lamp/shadow/name/cfg/update/documents",
            "$aws/things/lamp/shadow/name//update",
            "$aws/things//shadow/update",
            "$aws/things/lamp/shadow",
            "$aws/things/lamp/shadow/list",
            "things/lamp/shadow/update",
            "$aws/events/presence/connected/x",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
    }
}
