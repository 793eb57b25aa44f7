//! Decoding and encoding for every node of a chain. Unsigned: chain
//! replication tolerates crashes, not lies. A message between servers (or
//! with the master) is taken to be from the server whose address it came
//! from; one that came from anywhere else is dropped.

use runtime::{Addr, DropReason, SharedState, Source};
use wire::chain::Message;

#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl SharedState for Codec {
    type Message = Message;
    type Outbound = Message;

    fn decode(&self, source: Source, bytes: &[u8]) -> Result<(Addr, Message), DropReason> {
        let msg: Message = wire::decode(bytes)?;
        let from = match &msg {
            Message::Update { request, .. } | Message::Query { request, .. } => {
                Addr::Client(request.client_id)
            }
            Message::Hello { client_id } | Message::Where { client_id } => Addr::Client(*client_id),
            _ => match source {
                Source::Replica(id) => Addr::Replica(id),
                Source::Other => return Err(DropReason("server message from elsewhere")),
            },
        };
        Ok((from, msg))
    }

    fn encode(&self, msg: &Message, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        Ok(wire::encode(msg, buf)?)
    }

    fn describe(&self, bytes: &[u8]) -> String {
        let Ok(msg) = wire::decode::<Message>(bytes) else {
            return "undecodable".to_string();
        };
        match msg {
            Message::Update { epoch, request } => {
                format!(
                    "Update e{epoch} c{} #{}",
                    request.client_id.0, request.request_num
                )
            }
            Message::Query { epoch, request } => {
                format!(
                    "Query e{epoch} c{} #{}",
                    request.client_id.0, request.request_num
                )
            }
            Message::Hello { client_id } => format!("Hello c{}", client_id.0),
            Message::Where { client_id } => format!("Where c{}", client_id.0),
            Message::Reply(r) => format!("Reply c{} #{}", r.client_id.0, r.request_num),
            Message::Redirect { client_id, config } => {
                format!(
                    "Redirect c{} e{} {:?}",
                    client_id.0, config.epoch, config.chain
                )
            }
            Message::Forward(f) => format!(
                "Forward e{} seq {} c{} #{}",
                f.epoch, f.seq, f.request.client_id.0, f.request.request_num
            ),
            Message::Ack { epoch, committed } => format!("Ack e{epoch} {committed}"),
            Message::Want { epoch, next } => format!("Want e{epoch} from {next}"),
            Message::Resume {
                epoch,
                committed,
                next,
            } => format!("Resume e{epoch} {committed}..{next}"),
            Message::Chunk(c) => format!(
                "Chunk e{} at {} {}/{}",
                c.epoch, c.committed, c.index, c.count
            ),
            Message::Ping(p) => format!(
                "Ping e{} joined e{} synced {} echo {}",
                p.epoch, p.joined, p.synced, p.echo
            ),
            Message::Pong(p) => format!(
                "Pong e{} {:?} member {} lease {}",
                p.config.epoch, p.config.chain, p.member, p.lease
            ),
        }
    }
}
