//! The HotStuff client: one request outstanding, sent to the replica it
//! expects to lead when the request arrives, retransmitted to every
//! replica with the kit's backoff, and accepted on f + 1 matching results
//! from distinct replicas, whose MACs it checks only when they would make
//! the f + 1 ([`ReplyQuorum`]).
//!
//! The expected leader is the one replies name: a replica's reply carries
//! the view whose leader proposes next as the replica sees it when it
//! executes (the view after the one it is entering if the group is moving
//! on, that view if it is going idle). A replica that a request reaches
//! and that will not propose next forwards it to the one that will, and
//! every replica keeps a request it got in its pool (the replica that
//! leads next proposes what its chain lacks), so a wrong guess costs a hop
//! and a silent replica costs a retransmission, never the request.
//!
//! Before its first operation a client registers (request 0, no
//! operation); the f + 1 matching replies carry its session number, which
//! every later request carries. If f + 1 replicas say its session was
//! evicted, the client gives up ([`runtime::Client::has_failed`]).

use std::sync::Arc;
use std::time::Duration;

use runtime::{Addr, ClientId, Context, State};
use wire::auth::MacReply;
use wire::client::Request;
use wire::hotstuff::View;

use super::CLIENT_RESEND_MAX;
use super::codec::{Codec, Config, Inbound, Outbound};
use crate::common::{ReplyQuorum, Retransmit};

type Ctx<'a, 'b> = Context<'a, Outbound, ClientTimer>;

/// A closed-loop HotStuff client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    config: Arc<Config>,
    resend: Retransmit,
    session: Session,
    /// Number of the latest request; 0 is the registration.
    request_num: u64,
    outstanding: Option<Request>,
    /// The operation invoked while the client registers.
    queued: Option<Vec<u8>>,
    /// Replies to the outstanding request; each names the view whose
    /// leader the next request should go to.
    replies: ReplyQuorum,
    result: Option<Vec<u8>>,
    /// The view whose leader the next request goes to; `None` before the
    /// first result: to every replica.
    expected: Option<View>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    Unregistered,
    Open(u64),
    Evicted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// Send the outstanding request to every replica again.
    Resend,
}

impl Client {
    /// Client `id` of the client node whose codec is `codec` (which this
    /// registers it with: see [`Codec::register_client`]); it first
    /// retransmits after `resend_interval` (or twice its smoothed latency).
    pub fn new(id: ClientId, codec: &Codec, resend_interval: Duration) -> Client {
        assert!(resend_interval > Duration::ZERO);
        let config = Arc::clone(codec.config());
        Client {
            id,
            replies: ReplyQuorum::new(codec.register_client(id), config.f),
            config,
            resend: Retransmit::new(resend_interval, CLIENT_RESEND_MAX),
            session: Session::Unregistered,
            request_num: 0,
            outstanding: None,
            queued: None,
            result: None,
            expected: None,
        }
    }

    fn session_number(&self) -> u64 {
        match self.session {
            Session::Open(number) => number,
            Session::Unregistered | Session::Evicted => 0,
        }
    }

    fn send(&mut self, request: Request, ctx: &mut Ctx<'_, '_>) {
        let outbound = Outbound::Request {
            session: self.session_number(),
            request: request.clone(),
        };
        match self.expected {
            Some(view) => ctx.send(Addr::Replica(self.config.leader(view)), outbound),
            None => ctx.send_to_replicas(outbound),
        }
        ctx.set_timer(ClientTimer::Resend, self.resend.first());
        self.outstanding = Some(request);
        self.replies.clear();
    }

    /// f + 1 replies with the same result from distinct replicas: one of
    /// them at least is correct.
    fn on_reply(&mut self, reply: MacReply, evicted: bool, ctx: &mut Ctx<'_, '_>) {
        let Some(request) = &self.outstanding else {
            ctx.drop_message("client: reply with nothing outstanding");
            return;
        };
        let registration = request.request_num == 0;
        if reply.reply.client_id != self.id || reply.reply.request_num != request.request_num {
            ctx.drop_message("client: reply to another request");
            return;
        }
        let Some(accepted) = self.replies.offer(reply, evicted, ctx) else {
            return;
        };
        // One of the f + 1 at least is correct: the earliest view named is
        // at most the true one (a faulty replica can only make the guess
        // wrong, which costs a forward).
        self.expected = accepted.views.last().copied();
        let result = accepted.result;
        let session = <[u8; 8]>::try_from(&result[..]).map(u64::from_le_bytes);
        if registration && !evicted && session.is_err() {
            // f + 1 alike, one of them correct: cannot happen.
            ctx.drop_message("client: malformed session number");
            return;
        }
        self.outstanding = None;
        ctx.cancel_timer(ClientTimer::Resend);
        if evicted {
            ctx.count("client: evicted");
            self.session = Session::Evicted;
            return;
        }
        if let (true, Ok(session)) = (registration, session) {
            self.session = Session::Open(session);
            ctx.count("client: registered");
            if let Some(op) = self.queued.take() {
                self.invoke_registered(op, ctx);
            }
            return;
        }
        self.result = Some(result);
        self.resend.complete(ctx.now());
    }

    fn invoke_registered(&mut self, op: Vec<u8>, ctx: &mut Ctx<'_, '_>) {
        self.request_num += 1;
        let request = Request {
            client_id: self.id,
            request_num: self.request_num,
            op,
        };
        self.send(request, ctx);
    }
}

impl State for Client {
    type Message = Inbound;
    type Outbound = Outbound;
    type Timer = ClientTimer;
    type Shared = Codec;

    fn on_message(&mut self, _from: Addr, msg: Inbound, ctx: &mut Ctx<'_, '_>) {
        match msg {
            Inbound::Reply(reply) => self.on_reply(reply, false, ctx),
            Inbound::Evicted(reply) => self.on_reply(reply, true, ctx),
            _ => ctx.drop_message("client: unexpected message"),
        }
    }

    fn on_timer(&mut self, timer: ClientTimer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            ClientTimer::Resend => {
                let Some(request) = &self.outstanding else {
                    return; // Spurious: the result came first.
                };
                ctx.count("client: retransmission");
                ctx.send_to_replicas(Outbound::Request {
                    session: self.session_number(),
                    request: request.clone(),
                });
                ctx.set_timer(ClientTimer::Resend, self.resend.backoff());
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: &[u8], ctx: &mut Ctx<'_, '_>) {
        assert!(self.outstanding.is_none(), "one operation at a time");
        self.resend.begin(ctx.now());
        match self.session {
            Session::Open(_) => self.invoke_registered(op.to_vec(), ctx),
            Session::Unregistered => {
                let registration = Request {
                    client_id: self.id,
                    request_num: 0,
                    op: Vec::new(),
                };
                self.queued = Some(op.to_vec());
                self.send(registration, ctx);
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
            Inbound::Reply(reply) | Inbound::Evicted(reply) => Some(reply.reply.client_id),
            _ => None,
        }
    }
}
