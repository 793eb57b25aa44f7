//! The PBFT client (§4.1): one request outstanding, sent to the primary it
//! believes in and retransmitted to every replica on a timeout; accepted on
//! f+1 matching replies from distinct replicas, whose MACs the codec checked.
//! Its codec authenticates every request for every replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use runtime::{Addr, ClientId, Context, ReplicaId, State, Time};
use wire::client::Request;
use wire::pbft::{Message, Reply, View};

use super::CLIENT_RESEND_MAX;
use super::codec::{Codec, Config, Outbound};

/// A closed-loop PBFT client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    config: Arc<Config>,
    /// The first retransmission of a request waits at least this long.
    resend_interval: Duration,
    /// The next retransmission of the outstanding request waits this long:
    /// doubled at each one, up to [`CLIENT_RESEND_MAX`].
    resend_after: Duration,
    /// Smoothed latency of this client's operations (as TCP smooths round
    /// trips: each new sample weighs 1/8); zero before the first.
    latency: Duration,
    /// When the outstanding request was invoked.
    invoked: Time,
    /// The view the client believes current, learnt from replies.
    view: View,
    /// Number of the latest request; 0 before the first.
    request_num: u64,
    outstanding: Option<Request>,
    /// Replies to the outstanding request, at most one per replica (the
    /// latest): n entries at most.
    replies: BTreeMap<ReplicaId, (View, Vec<u8>)>,
    result: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// Retransmit the outstanding request to every replica.
    Resend,
}

impl Client {
    /// Client `id`, registered with [`Codec::register_client`] of the codec
    /// it runs with.
    pub fn new(id: ClientId, config: Arc<Config>, resend_interval: Duration) -> Client {
        assert!(resend_interval > Duration::ZERO);
        Client {
            id,
            config,
            resend_interval,
            resend_after: resend_interval,
            latency: Duration::ZERO,
            invoked: Time::ZERO,
            view: 0,
            request_num: 0,
            outstanding: None,
            replies: BTreeMap::new(),
            result: None,
        }
    }

    /// §4.1: the client waits for f+1 replies with the same result from
    /// distinct replicas; one of them at least is correct.
    fn on_reply(&mut self, reply: Reply, ctx: &mut Context<'_, Outbound, ClientTimer>) {
        let Some(request) = &self.outstanding else {
            ctx.drop_message("client: reply with nothing outstanding");
            return;
        };
        if reply.client_id != self.id || reply.request_num != request.request_num {
            ctx.drop_message("client: reply to another request");
            return;
        }
        self.replies
            .insert(reply.replica, (reply.view, reply.result.clone()));
        let matching: Vec<View> = self
            .replies
            .values()
            .filter(|(_, result)| *result == reply.result)
            .map(|(view, _)| *view)
            .collect();
        if matching.len() <= self.config.f {
            return;
        }
        // The (f+1)-th highest view among matching replies: at least one
        // correct replica is in it or beyond, so a faulty replica cannot send
        // the client after a view far ahead.
        let mut views = matching;
        views.sort_unstable_by(|a, b| b.cmp(a));
        self.view = self.view.max(views[self.config.f]);
        self.outstanding = None;
        self.replies.clear();
        self.result = Some(reply.result);
        ctx.cancel_timer(ClientTimer::Resend);
        let sample = ctx.now().since(self.invoked);
        self.latency = if self.latency.is_zero() {
            sample
        } else {
            (self.latency * 7 + sample) / 8
        };
    }
}

impl State for Client {
    type Message = Message;
    type Outbound = Outbound;
    type Timer = ClientTimer;
    type Shared = Codec;

    fn on_message(
        &mut self,
        _from: Addr,
        msg: Message,
        ctx: &mut Context<'_, Outbound, ClientTimer>,
    ) {
        match msg {
            Message::Reply(reply) => self.on_reply(reply.reply, ctx),
            _ => ctx.drop_message("client: unexpected message"),
        }
    }

    /// §4.1: a client that gets no answer in time multicasts its request to
    /// every replica; backups relay it to the primary and time it. Each
    /// retransmission of a request waits twice as long as the previous one
    /// (up to [`CLIENT_RESEND_MAX`]): a faulty primary is still suspected
    /// after the first interval, but an overloaded group is not flooded with
    /// copies of requests it is already working through.
    fn on_timer(&mut self, timer: ClientTimer, ctx: &mut Context<'_, Outbound, ClientTimer>) {
        match timer {
            ClientTimer::Resend => {
                let Some(request) = &self.outstanding else {
                    return; // Spurious: the result came first.
                };
                ctx.count("client: retransmission");
                ctx.send_to_replicas(Outbound::Request(request.clone()));
                self.resend_after =
                    (self.resend_after * 2).min(CLIENT_RESEND_MAX.max(self.resend_interval));
                ctx.set_timer(ClientTimer::Resend, self.resend_after);
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: Vec<u8>, ctx: &mut Context<'_, Outbound, ClientTimer>) {
        assert!(self.outstanding.is_none(), "one operation at a time");
        self.request_num += 1;
        let request = Request {
            client_id: self.id,
            request_num: self.request_num,
            op,
        };
        if self.request_num == 1 {
            // Every replica replies, so every one needs to know where to.
            ctx.send_to_replicas(Outbound::Message(Message::Hello(self.id)));
        }
        let primary = Addr::Replica(self.config.primary(self.view));
        ctx.send(primary, Outbound::Request(request.clone()));
        // The first retransmission waits for twice the usual latency (at
        // least `resend_interval`), so that requests queued behind others at
        // a busy primary are not taken for lost.
        self.resend_after = (self.latency * 2).clamp(
            self.resend_interval,
            CLIENT_RESEND_MAX.max(self.resend_interval),
        );
        ctx.set_timer(ClientTimer::Resend, self.resend_after);
        self.invoked = ctx.now();
        self.outstanding = Some(request);
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    fn recipient(msg: &Message) -> Option<ClientId> {
        match msg {
            Message::Reply(reply) => Some(reply.reply.client_id),
            _ => None,
        }
    }
}
