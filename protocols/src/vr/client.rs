//! The VR client (§4.1): one request outstanding, sent to the primary of
//! the latest view it knows, retransmitted to every replica with the kit's
//! backoff (a backup drops it; the primary, whoever it is now, answers),
//! and accepted on the primary's reply, which comes only once the request
//! is committed.

use std::time::Duration;

use runtime::{Addr, ClientId, Context, State};
use wire::client::Request;
use wire::vr::Message;

use super::{CLIENT_RESEND_MAX, Codec, Config};
use crate::common::Retransmit;

/// The client's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// Send the outstanding request to every replica again.
    Resend,
}

type Ctx<'a, 'b> = Context<'a, Message, ClientTimer>;

/// A closed-loop VR client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    config: Config,
    /// The latest view a reply named: its primary gets the next request.
    view: u64,
    resend: Retransmit,
    request_num: u64,
    outstanding: Option<Request>,
    result: Option<Vec<u8>>,
}

impl Client {
    /// Client `id` of the group `config` describes; it first retransmits
    /// after `resend_interval` (or twice its smoothed latency).
    pub fn new(id: ClientId, config: Config, resend_interval: Duration) -> Client {
        Client {
            id,
            config,
            view: 0,
            resend: Retransmit::new(resend_interval, CLIENT_RESEND_MAX),
            request_num: 0,
            outstanding: None,
            result: None,
        }
    }
}

impl State for Client {
    type Message = Message;
    type Outbound = Message;
    type Timer = ClientTimer;
    type Shared = Codec;

    fn on_message(&mut self, from: Addr, msg: Message, ctx: &mut Ctx<'_, '_>) {
        let Addr::Replica(replica) = from else {
            ctx.drop_message("client: not from a replica");
            return;
        };
        let Message::Reply { view, reply } = msg else {
            ctx.drop_message("client: unexpected message");
            return;
        };
        if self.config.primary(view) != replica {
            ctx.drop_message("client: reply from a replica not the primary of its view");
            return;
        }
        let Some(request) = &self.outstanding else {
            ctx.drop_message("client: reply with nothing outstanding");
            return;
        };
        if reply.client_id != self.id || reply.request_num != request.request_num {
            ctx.drop_message("client: reply to another request");
            return;
        }
        self.view = self.view.max(view);
        self.outstanding = None;
        self.result = Some(reply.result);
        self.resend.complete(ctx.now());
        ctx.cancel_timer(ClientTimer::Resend);
    }

    fn on_timer(&mut self, timer: ClientTimer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            ClientTimer::Resend => {
                let Some(request) = &self.outstanding else {
                    return; // Spurious: the reply came first.
                };
                ctx.count("client: retransmission");
                ctx.send_to_replicas(Message::Request(request.clone()));
                ctx.set_timer(ClientTimer::Resend, self.resend.backoff());
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: &[u8], ctx: &mut Ctx<'_, '_>) {
        assert!(self.outstanding.is_none(), "one operation at a time");
        self.request_num += 1;
        let request = Request {
            client_id: self.id,
            request_num: self.request_num,
            op: op.to_vec(),
        };
        self.resend.begin(ctx.now());
        let primary = Addr::Replica(self.config.primary(self.view));
        ctx.send(primary, Message::Request(request.clone()));
        ctx.set_timer(ClientTimer::Resend, self.resend.first());
        self.outstanding = Some(request);
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    fn recipient(msg: &Message) -> Option<ClientId> {
        match msg {
            Message::Reply { reply, .. } => Some(reply.client_id),
            _ => None,
        }
    }
}
