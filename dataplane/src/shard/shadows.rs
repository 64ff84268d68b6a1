//! The shard's part in the shadow service: sending a request to the thing's owner, applying
//! it there, the group-commit task, and delivering the answers.

use std::rc::Rc;
use std::sync::Arc;

use bytestring::ByteString;
use iotcore_core::mqtt::{PublishProperties, QoS};
use iotcore_core::shadow::ThingName;

use super::mesh::ShardMsg;
use super::replies::{Reply, ReplyTo};
use super::Shard;
use crate::message::Message;
use crate::shadow::service::{Output, Pending, ShadowRequest, ShadowService};
use crate::shadow::{now_secs, owner_of};

impl Shard {
    /// Sends a request to the shard owning its thing (this one, possibly).
    pub fn shadow_request(self: &Rc<Self>, req: ShadowRequest) {
        let owner = owner_of(&req.key.thing, self.shard_count);
        if owner == self.id {
            self.apply_shadow_request(req);
        } else {
            self.post_to(owner, ShardMsg::Shadow(Box::new(req)));
        }
    }

    /// Asks the owner of `thing` for a page of its named shadows.
    pub fn shadow_list_request(
        self: &Rc<Self>,
        thing: ThingName,
        next_token: Option<String>,
        page_size: usize,
    ) -> super::replies::ReplyId {
        let owner = owner_of(&thing, self.shard_count);
        if owner == self.id {
            // No mesh to oneself: answer in place (the reply completes locally).
            let id = self.replies.register();
            let reply = ReplyTo { shard: self.id, id };
            self.answer_shadow_list(&thing, next_token.as_deref(), page_size, reply);
            return id;
        }
        self.request(owner, |reply| ShardMsg::ShadowList {
            thing,
            next_token,
            page_size,
            reply,
        })
    }

    pub(super) fn apply_shadow_request(self: &Rc<Self>, req: ShadowRequest) {
        let outputs = {
            let mut service = self.shadows.borrow_mut();
            let Some(service) = service.as_mut() else {
                tracing::warn!("shadow request on a shard without a shadow store");
                drop(service);
                // Unanswered, but the PUBLISH itself was received: acknowledge it.
                if let crate::shadow::service::Origin::Mqtt(Some(to)) = req.origin {
                    self.release_puback(to);
                }
                return;
            };
            crate::metrics::bump(&self.metrics.shadow_requests_total, 1);
            if req.op == crate::shadow::topics::ShadowOp::Update {
                // The device of this thing gets thing affinity from its next CONNECT on (a
                // rejected update marks it too, which costs nothing).
                self.placement.mark_shadowed(req.key.thing.as_str());
            }
            let outputs = service.handle(req, now_secs());
            if service.needs_commit() {
                self.shadow_commit.notify();
            }
            outputs
        };
        self.emit_shadow_outputs(outputs);
    }

    pub(super) fn answer_shadow_list(
        &self,
        thing: &ThingName,
        next_token: Option<&str>,
        page_size: usize,
        reply: ReplyTo,
    ) {
        let (status, body) = match self.shadows.borrow().as_ref() {
            Some(service) => service.list(thing, next_token, page_size, now_secs()),
            None => (500, Vec::new()),
        };
        self.reply(reply, Reply::Http { status, body });
    }

    fn emit_shadow_outputs(self: &Rc<Self>, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Publish { topic, payload } => {
                    // Answers are ordinary messages: any authorised subscriber sees them.
                    let message = Arc::new(Message {
                        topic: ByteString::from(topic),
                        payload: payload.into(),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: PublishProperties::default(),
                        expires_at: None,
                        publisher: None,
                    });
                    self.route_unacked(message);
                }
                Output::Http { to, status, body } => {
                    self.reply(to, Reply::Http { status, body });
                }
                // Sent after the answers above, so on the requester's shard the PUBACK
                // lands in the same mesh batch and the same write as its answer.
                Output::PubAck(to) => self.release_puback(to),
            }
        }
    }

    pub fn start_shadow_commits(self: &Rc<Self>) {
        self.spawn_commit_task(self.clone().run_commits(
            |s| &s.shadows,
            |s| &s.shadow_commit,
            "shadows",
            Shard::deliver_shadow_answers,
        ));
    }

    /// The answers a shadow commit released (see `ShadowService::answers`).
    fn deliver_shadow_answers(self: &Rc<Self>, released: Vec<Pending>, ok: bool) {
        let outputs = match self.shadows.borrow_mut().as_mut() {
            Some(service) => service.answers(released, ok, now_secs()),
            None => return,
        };
        self.emit_shadow_outputs(outputs);
    }

    /// Installs the shard's shadow service (opened by the server at start-up).
    pub fn set_shadow_service(&self, service: ShadowService) {
        for thing in service.store.things() {
            self.placement.mark_shadowed(thing.as_str());
        }
        *self.shadows.borrow_mut() = Some(service);
    }
}
