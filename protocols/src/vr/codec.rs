//! Decoding and encoding for every VR node. Unsigned: VR tolerates
//! crashes, not lies. A message between replicas is taken to be from the
//! replica whose address it came from, and one that came from anywhere
//! else is dropped; a request is from the client it names.

use runtime::{Addr, DropReason, SharedState, Source};
use wire::vr::{Message, Peer};

#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl SharedState for Codec {
    type Message = Message;
    type Outbound = Message;

    fn decode(&self, source: Source, bytes: &[u8]) -> Result<(Addr, Message), DropReason> {
        let msg: Message = wire::decode(bytes)?;
        let from = match (&msg, source) {
            (Message::Request(request), _) => Addr::Client(request.client_id),
            (_, Source::Replica(id)) => Addr::Replica(id),
            (_, Source::Other) => return Err(DropReason("replica message from elsewhere")),
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
            Message::Request(r) => format!("Request c{} #{}", r.client_id.0, r.request_num),
            Message::Reply { view, reply } => format!(
                "Reply v{view} c{} #{}",
                reply.client_id.0, reply.request_num
            ),
            Message::Peer { crashes, msg } => format!("{} crashes {crashes:?}", describe_peer(msg)),
        }
    }
}

fn describe_peer(msg: Peer) -> String {
    match msg {
        Peer::Prepare {
            view,
            commit,
            entry,
        } => format!(
            "Prepare v{view} op {} ({} requests) commit {commit}",
            entry.op,
            entry.requests.len()
        ),
        Peer::PrepareOk { view, op, replica } => {
            format!("PrepareOk v{view} op {op} from r{}", replica.0)
        }
        Peer::Commit { view, commit } => format!("Commit v{view} {commit}"),
        Peer::StartViewChange { view, replica } => {
            format!("StartViewChange v{view} from r{}", replica.0)
        }
        Peer::DoViewChange {
            view,
            last_normal,
            commit,
            top,
            replica,
        } => format!(
            "DoViewChange v{view} normal v{last_normal} commit {commit} top {top} from r{}",
            replica.0
        ),
        Peer::StartView {
            view,
            commit,
            log_view,
            top,
        } => format!("StartView v{view} commit {commit} log of v{log_view} to {top}"),
        Peer::GetState { view, op, replica } => {
            format!("GetState v{view} above {op} from r{}", replica.0)
        }
        Peer::NewState { view, commit, log } => format!(
            "NewState v{view} commit {commit} log {}..{}",
            log.base,
            log.top()
        ),
        Peer::Chunk(c) => format!(
            "Chunk v{} snapshot at {} part {} of {} ({} bytes)",
            c.view,
            c.op,
            c.index,
            c.count,
            c.bytes.len()
        ),
        Peer::Recovery { replica, nonce } => {
            format!("Recovery from r{} nonce {nonce:x}", replica.0)
        }
        Peer::RecoveryResponse {
            view,
            nonce,
            primary,
            replica,
        } => match primary {
            Some(p) => format!(
                "RecoveryResponse v{view} nonce {nonce:x} commit {} top {} from r{}",
                p.commit, p.top, replica.0
            ),
            None => format!(
                "RecoveryResponse v{view} nonce {nonce:x} from r{}",
                replica.0
            ),
        },
    }
}
