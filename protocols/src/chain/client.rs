//! A client of the chain: updates to the head, queries to the tail.

use std::time::Duration;

use runtime::{Addr, ClientId, Context, State};
use wire::chain::{Config, Message};
use wire::client::{Reply, Request};

use super::{Codec, RESEND_MAX, initial_config, master_id};
use crate::app::ReadOnly;
use crate::common::Retransmit;

/// The client's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Retransmit the outstanding request, and ask the master where the
    /// chain is.
    Resend,
}

type Ctx<'a, 'b> = Context<'a, Message, Timer>;

/// A closed-loop client with one outstanding operation.
pub struct Client {
    id: ClientId,
    master: Addr,
    /// The configuration it sends by.
    config: Config,
    read_only: ReadOnly,
    resend: Retransmit,
    request_num: u64,
    /// The outstanding request, and whether it is a query.
    outstanding: Option<(Request, bool)>,
    result: Option<Vec<u8>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("epoch", &self.config.epoch)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Client `id` of a chain of `n` servers, telling queries from updates
    /// with `read_only`, first retransmitting after `resend_interval` at
    /// least.
    pub fn new(id: ClientId, n: usize, read_only: ReadOnly, resend_interval: Duration) -> Client {
        Client {
            id,
            master: Addr::Replica(master_id(n)),
            config: initial_config(n),
            read_only,
            resend: Retransmit::new(resend_interval, RESEND_MAX),
            request_num: 0,
            outstanding: None,
            result: None,
        }
    }

    fn head(&self) -> Addr {
        Addr::Replica(self.config.chain[0])
    }

    fn tail(&self) -> Addr {
        Addr::Replica(*self.config.chain.last().expect("a chain is never empty"))
    }

    fn hello(&self, ctx: &mut Ctx<'_, '_>) {
        ctx.send(self.tail(), Message::Hello { client_id: self.id });
    }

    fn send(&self, ctx: &mut Ctx<'_, '_>) {
        let Some((request, query)) = &self.outstanding else {
            return;
        };
        let epoch = self.config.epoch;
        let request = request.clone();
        if *query {
            ctx.send(self.tail(), Message::Query { epoch, request });
        } else {
            ctx.send(self.head(), Message::Update { epoch, request });
        }
    }

    fn on_reply(&mut self, reply: Reply, ctx: &mut Ctx<'_, '_>) {
        let Some((request, _)) = &self.outstanding else {
            ctx.drop_message("client: reply with nothing outstanding");
            return;
        };
        if reply.client_id != self.id || reply.request_num != request.request_num {
            ctx.drop_message("client: reply to another request");
            return;
        }
        self.outstanding = None;
        self.result = Some(reply.result);
        self.resend.complete(ctx.now());
        ctx.cancel_timer(Timer::Resend);
    }

    fn on_redirect(&mut self, config: Config, ctx: &mut Ctx<'_, '_>) {
        if config.epoch <= self.config.epoch || config.chain.is_empty() {
            return;
        }
        let new_tail = config.chain.last() != self.config.chain.last();
        self.config = config;
        if new_tail {
            self.hello(ctx);
        }
        self.send(ctx);
    }
}

impl State for Client {
    type Message = Message;
    type Outbound = Message;
    type Timer = Timer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        self.hello(ctx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, ctx: &mut Ctx<'_, '_>) {
        if !matches!(from, Addr::Replica(_)) {
            ctx.drop_message("client: not from a server");
            return;
        }
        match msg {
            Message::Reply(reply) => self.on_reply(reply, ctx),
            Message::Redirect { client_id, config } if client_id == self.id => {
                self.on_redirect(config, ctx);
            }
            _ => ctx.drop_message("client: unexpected message"),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            Timer::Resend => {
                if self.outstanding.is_none() {
                    return; // Spurious: the reply came first.
                }
                ctx.count("client: retransmission");
                self.send(ctx);
                self.hello(ctx);
                ctx.send(self.master, Message::Where { client_id: self.id });
                ctx.set_timer(Timer::Resend, self.resend.backoff());
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: &[u8], ctx: &mut Ctx<'_, '_>) {
        assert!(self.outstanding.is_none(), "one operation at a time");
        self.request_num += 1;
        let query = (self.read_only)(op);
        let request = Request {
            client_id: self.id,
            request_num: self.request_num,
            op: op.to_vec(),
        };
        self.outstanding = Some((request, query));
        self.resend.begin(ctx.now());
        self.send(ctx);
        ctx.set_timer(Timer::Resend, self.resend.first());
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    fn recipient(msg: &Message) -> Option<ClientId> {
        match msg {
            Message::Reply(reply) => Some(reply.client_id),
            Message::Redirect { client_id, .. } => Some(*client_id),
            _ => None,
        }
    }
}
