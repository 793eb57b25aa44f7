//! The PBFT client (§4.1): one request outstanding, sent to the primary it
//! believes in and retransmitted to every replica on a timeout; accepted on
//! f+1 matching replies from distinct replicas, whose MACs it checks only
//! when they would make the f+1 ([`ReplyQuorum`]). Its codec authenticates
//! every request for every replica.
//!
//! Before its first operation a client registers: request 0, with no
//! operation, ordered like any request; the f+1 matching replies carry the
//! session number the client table gave it, which every later request
//! carries (see [`crate::common::sessions`]). If f+1 replicas say its session was evicted,
//! the client gives up for good ([`runtime::Client::has_failed`]): it cannot
//! know whether its last request executed before the eviction, so it must not
//! send it again under a new session.

use std::sync::Arc;
use std::time::Duration;

use runtime::{Addr, ClientId, Context, State};
use wire::client::Request;
use wire::pbft::{MacReply, Message, View};

use super::CLIENT_RESEND_MAX;
use super::codec::{Codec, Config, Inbound, Outbound};
use crate::common::{ReplyQuorum, Retransmit};

/// A closed-loop PBFT client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    config: Arc<Config>,
    /// When to retransmit: the first time after twice the smoothed latency
    /// of this client's operations (at least the resend interval), then
    /// twice as long each time, up to [`CLIENT_RESEND_MAX`]. An operation's
    /// latency runs from its invocation, registration included.
    resend: Retransmit,
    /// The view the client believes current, learnt from replies.
    view: View,
    session: Session,
    /// Number of the latest request; 0 is the registration.
    request_num: u64,
    /// The request in flight: the registration, or an operation.
    outstanding: Option<Request>,
    /// The operation invoked while the client was registering.
    queued: Option<Vec<u8>>,
    /// Replies to the outstanding request.
    replies: ReplyQuorum,
    result: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    Unregistered,
    Open(u64),
    /// The replicas evicted it: the client has given up.
    Evicted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// Retransmit the outstanding request to every replica.
    Resend,
}

impl Client {
    /// Client `id` of the client node whose codec is `codec` (which this
    /// registers it with: see [`Codec::register_client`]).
    pub fn new(id: ClientId, codec: &Codec, resend_interval: Duration) -> Client {
        assert!(resend_interval > Duration::ZERO);
        let config = Arc::clone(codec.config());
        Client {
            id,
            replies: ReplyQuorum::new(codec.register_client(id), config.f),
            config,
            resend: Retransmit::new(resend_interval, CLIENT_RESEND_MAX),
            view: 0,
            session: Session::Unregistered,
            request_num: 0,
            outstanding: None,
            queued: None,
            result: None,
        }
    }

    fn session_number(&self) -> u64 {
        match self.session {
            Session::Open(number) => number,
            Session::Unregistered | Session::Evicted => 0,
        }
    }

    /// Sends `request` to the primary it believes in (or, with `to_all`, to
    /// every replica) and arms the retransmission timer.
    fn send(
        &mut self,
        request: Request,
        to_all: bool,
        ctx: &mut Context<'_, Outbound, ClientTimer>,
    ) {
        let outbound = Outbound::Request(self.session_number(), request.clone());
        if to_all {
            ctx.send_to_replicas(outbound);
        } else {
            ctx.send(Addr::Replica(self.config.primary(self.view)), outbound);
        }
        // The first retransmission waits for twice the usual latency (at
        // least the resend interval), so that requests queued behind others
        // at a busy primary are not taken for lost.
        ctx.set_timer(ClientTimer::Resend, self.resend.first());
        self.outstanding = Some(request);
        self.replies.clear();
    }

    /// §4.1: the client waits for f+1 replies with the same result from
    /// distinct replicas; one of them at least is correct.
    fn on_reply(
        &mut self,
        reply: MacReply,
        evicted: bool,
        ctx: &mut Context<'_, Outbound, ClientTimer>,
    ) {
        let Some(request) = &self.outstanding else {
            ctx.drop_message("client: reply with nothing outstanding");
            return;
        };
        let request_num = request.request_num;
        if reply.reply.client_id != self.id || reply.reply.request_num != request_num {
            ctx.drop_message("client: reply to another request");
            return;
        }
        let Some(accepted) = self.replies.offer(reply, evicted, ctx) else {
            return;
        };
        // The (f+1)-th highest view among matching replies: at least one
        // correct replica is in it or beyond, so a faulty replica cannot send
        // the client after a view far ahead.
        self.view = self.view.max(accepted.views[self.config.f]);
        let result = accepted.result;
        self.outstanding = None;
        ctx.cancel_timer(ClientTimer::Resend);
        if evicted {
            ctx.count("client: evicted");
            self.session = Session::Evicted;
            return;
        }
        if request_is_registration(request_num) {
            let Ok(bytes) = <[u8; 8]>::try_from(&result[..]) else {
                // f+1 replicas agree on a malformed session: at least one
                // correct replica sent it, so this is a bug.
                panic!("a registration reply carries an 8-byte session number");
            };
            self.session = Session::Open(u64::from_le_bytes(bytes));
            ctx.count("client: registered");
            let op = self
                .queued
                .take()
                .expect("an operation waits for the registration");
            self.invoke_registered(op, ctx);
            return;
        }
        self.result = Some(result);
        self.resend.complete(ctx.now());
    }

    fn invoke_registered(&mut self, op: Vec<u8>, ctx: &mut Context<'_, Outbound, ClientTimer>) {
        self.request_num += 1;
        let request = Request {
            client_id: self.id,
            request_num: self.request_num,
            op,
        };
        self.send(request, false, ctx);
    }
}

fn request_is_registration(request_num: u64) -> bool {
    request_num == 0
}

impl State for Client {
    type Message = Inbound;
    type Outbound = Outbound;
    type Timer = ClientTimer;
    type Shared = Codec;

    fn on_message(
        &mut self,
        _from: Addr,
        msg: Inbound,
        ctx: &mut Context<'_, Outbound, ClientTimer>,
    ) {
        match msg {
            Inbound::Message(Message::Reply(reply)) => self.on_reply(reply, false, ctx),
            Inbound::Message(Message::Evicted(reply)) => self.on_reply(reply, true, ctx),
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
                let session = self.session_number();
                ctx.send_to_replicas(Outbound::Request(session, request.clone()));
                ctx.set_timer(ClientTimer::Resend, self.resend.backoff());
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: &[u8], ctx: &mut Context<'_, Outbound, ClientTimer>) {
        assert!(self.outstanding.is_none(), "one operation at a time");
        self.resend.begin(ctx.now());
        match self.session {
            Session::Open(_) => self.invoke_registered(op.to_vec(), ctx),
            Session::Unregistered => {
                // Register first, with every replica: the registration is
                // ordered like any request, and from it every replica's
                // runtime learns where this client's replies go (a message
                // the codec authenticated as the client's teaches the
                // runtime its address).
                let registration = Request {
                    client_id: self.id,
                    request_num: 0,
                    op: Vec::new(),
                };
                self.queued = Some(op.to_vec());
                self.send(registration, true, ctx);
            }
            Session::Evicted => panic!("an evicted client is asked for no more operations"),
        }
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    fn has_failed(&self) -> bool {
        self.session == Session::Evicted
    }

    fn recipient(msg: &Inbound) -> Option<ClientId> {
        match msg {
            Inbound::Message(Message::Reply(reply) | Message::Evicted(reply)) => {
                Some(reply.reply.client_id)
            }
            _ => None,
        }
    }
}
