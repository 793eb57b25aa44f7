//! The receive buffer of a thread that receives: each datagram of one
//! `recv` copied out of the transport's buffers (which the transport reuses
//! at its next `recv`, so nothing may point into them past the call) into
//! one shared buffer, and handed on as a [`Bytes`] slice of it.
//!
//! A slice is a reference count on the buffer, not an allocation, and a
//! codec may keep slices of it in what it decodes
//! ([`SharedState::decode_shared`](crate::SharedState::decode_shared)).
//! Once every slice of the datagrams received so far has been dropped, the
//! buffer is written again from its start, so a thread that handles what it
//! receives before its next `recv` (the single-thread replica, the client
//! threads) allocates nothing in the steady state. Where slices are still
//! held when the buffer is full (datagrams queued for a verify stage), a new
//! buffer is allocated and the old one is freed with its last slice: one
//! allocation per buffer's worth of datagrams ([`ARENA_BYTES`]), not one per
//! datagram.

use std::net::SocketAddr;
use std::ops::Range;

use bytes::BytesMut;
use wire::Bytes;

/// Bytes the buffer holds at first; it grows if one `recv` brings more.
pub const ARENA_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub(super) struct Arena {
    buf: BytesMut,
    /// The datagrams pushed since the last [`Arena::take`]: where each came
    /// from and where it lies in `buf`.
    datagrams: Vec<(SocketAddr, Range<usize>)>,
}

impl Arena {
    pub(super) fn new() -> Arena {
        Arena {
            buf: BytesMut::with_capacity(ARENA_BYTES),
            datagrams: Vec::new(),
        }
    }

    /// Copies a datagram from `src` in.
    pub(super) fn push(&mut self, src: SocketAddr, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.datagrams.push((src, start..self.buf.len()));
    }

    /// Hands over the datagrams pushed since the last call, in order, each
    /// with its source and its bytes as a slice of the shared buffer.
    pub(super) fn take(&mut self) -> impl Iterator<Item = (SocketAddr, Bytes)> + '_ {
        let received = self.buf.split().freeze();
        self.datagrams
            .drain(..)
            .map(move |(src, range)| (src, received.slice(range)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    #[test]
    fn datagrams_come_out_whole_and_in_order() {
        let mut arena = Arena::new();
        for round in 0..3u8 {
            arena.push(SRC, &[round; 3]);
            arena.push(SRC, &[]);
            arena.push(SRC, &[round, 7]);
            let got: Vec<Vec<u8>> = arena.take().map(|(_, b)| b.to_vec()).collect();
            assert_eq!(got, [vec![round; 3], vec![], vec![round, 7]]);
        }
        assert_eq!(arena.take().count(), 0);
    }

    /// A buffer whose slices are still held stays as it was, and the next
    /// datagrams go to a new one; once its slices are dropped, a buffer is
    /// written again from its start.
    #[test]
    fn a_buffer_is_reused_once_its_slices_are_dropped() {
        let mut arena = Arena::new();
        let datagram = vec![1u8; ARENA_BYTES / 2 + 1];
        arena.push(SRC, &datagram);
        let (_, held) = arena.take().next().unwrap();
        arena.push(SRC, &datagram);
        let (_, second) = arena.take().next().unwrap();
        assert_ne!(second.as_ptr(), held.as_ptr(), "a new buffer");
        assert_eq!(held, datagram);
        let reused = second.as_ptr();
        drop((held, second));
        arena.push(SRC, &datagram);
        let (_, third) = arena.take().next().unwrap();
        assert_eq!(third.as_ptr(), reused, "the buffer again, from its start");
    }
}
