//! The REST routes of the shadow service, mapped onto the same requests as the MQTT topics.

use std::rc::Rc;

use bytes::Bytes;
use iotcore_core::shadow::{Rejection, ShadowKey, ShadowName, ThingName};

use super::request::HttpRequest;
use crate::shadow::service::{Origin, ShadowRequest};
use crate::shadow::topics::ShadowOp;
use crate::shard::replies::{Reply, ReplyTo};
use crate::shard::Shard;

const LIST_PREFIX: &str = "/api/things/shadow/ListNamedShadowsForThing/";

/// Answers one request: `(status, JSON body)`.
pub async fn handle(shard: &Rc<Shard>, req: HttpRequest) -> (u16, Vec<u8>) {
    if let Some(thing) = req.path.strip_prefix(LIST_PREFIX) {
        if req.method != "GET" {
            return error(405, &format!("{} is not allowed here; use GET", req.method));
        }
        return list(shard, thing, &req).await;
    }
    let Some(thing) = req
        .path
        .strip_prefix("/things/")
        .and_then(|rest| rest.strip_suffix("/shadow"))
    else {
        return error(404, &format!("no such resource: {}", req.path));
    };
    let op = match req.method.as_str() {
        "GET" => ShadowOp::Get,
        "POST" => ShadowOp::Update,
        "DELETE" => ShadowOp::Delete,
        other => {
            return error(
                405,
                &format!("{other} is not allowed here; use GET, POST or DELETE"),
            )
        }
    };
    let key = match shadow_key(thing, req.query("name")) {
        Ok(key) => key,
        Err(message) => return error(400, &message),
    };
    let payload = if op == ShadowOp::Update {
        Bytes::from(req.body)
    } else {
        Bytes::new()
    };
    let id = shard.replies.register();
    shard.shadow_request(ShadowRequest {
        key,
        op,
        payload,
        origin: Origin::Rest(ReplyTo {
            shard: shard.id,
            id,
        }),
    });
    answer(shard.replies.wait(id).await)
}

async fn list(shard: &Rc<Shard>, thing: &str, req: &HttpRequest) -> (u16, Vec<u8>) {
    let thing = match ThingName::new(thing) {
        Ok(t) => t,
        Err(e) => return error(400, &e.to_string()),
    };
    let max = shard.config.shadows.max_page_size;
    let page_size = match req.query("pageSize") {
        None | Some("") => max,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return error(400, &format!("pageSize must be a number in 1..={max}")),
        },
    };
    let next_token = req
        .query("nextToken")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let id = shard.shadow_list_request(thing, next_token, page_size);
    answer(shard.replies.wait(id).await)
}

fn shadow_key(thing: &str, name: Option<&str>) -> Result<ShadowKey, String> {
    let thing = ThingName::new(thing).map_err(|e| e.to_string())?;
    let name = match name {
        None | Some("") => None,
        Some(n) => Some(ShadowName::new(n).map_err(|e| e.to_string())?),
    };
    Ok(ShadowKey { thing, name })
}

fn answer(reply: Reply) -> (u16, Vec<u8>) {
    match reply {
        Reply::Http { status, body } => (status, body),
        _ => error(500, "internal error"),
    }
}

fn error(status: u16, message: &str) -> (u16, Vec<u8>) {
    (status, error_body(status, message))
}

/// An error body in AWS's shape.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    Rejection {
        code: status,
        message: message.to_string(),
        client_token: None,
    }
    .to_json(crate::shadow::now_secs())
}
