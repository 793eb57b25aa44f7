//! UDP transports for the real runtime: io_uring, with an epoll +
//! `recvmmsg`/`sendmmsg` fallback.
//!
//! One [`Transport`] wraps one UDP socket and is driven by one thread. Sends are
//! queued and go out in batches on [`Transport::flush`] (or when a batch is
//! full); receives drain up to a batch per call. [`Transport::wait`] blocks until
//! a datagram may be waiting, a [`Waker`] is woken, or a timeout passes — the
//! blocking half of the spin-then-block idle strategy.
//!
//! Two backends sit behind the one API:
//!
//! - `uring` (io_uring): a ring set up with `SINGLE_ISSUER | DEFER_TASKRUN`
//!   (plain setup where the kernel refuses), the socket registered as a fixed
//!   file, every queued datagram a `sendmsg` SQE and one `io_uring_enter` per
//!   flush. While busy, `recv` reads the socket with `recvmmsg`, as epoll
//!   does: a multishot `recvmsg` into a ring of provided buffers is armed only
//!   by [`Transport::wait`], and cancelled once it returns (an armed receive
//!   keeps an entry on the socket's wait queue and takes every datagram
//!   through poll task work, ~0.65 µs each). Where the kernel lacks multishot
//!   `recvmsg`, one-shot `recvmsg`s stay armed and are re-armed as they
//!   complete. `recv` enters the kernel with `GETEVENTS` (and no wait) when
//!   there is ring work: with `DEFER_TASKRUN` that is what runs completions,
//!   on the caller's own time, instead of interrupting it; with
//!   `TASKRUN_FLAG` it skips the system call when the kernel flags none.
//! - `epoll`: a non-blocking socket, `recvmmsg`/`sendmmsg` batches of
//!   [`RECV_BATCH_MAX`]/[`SEND_BATCH_MAX`] (the receive headers built once),
//!   and a `poll` on the socket and the waker's eventfd only to block. The
//!   socket is on no wait queue while the thread is busy: a permanent epoll
//!   registration ran its callback on every datagram (~0.4 µs each).
//!
//! Both can use UDP GSO (`UDP_SEGMENT`: datagrams of equal size to one
//! destination leave in one send and the kernel cuts them apart) and GRO
//! (`UDP_GRO`: the kernel hands over runs of datagrams from one source in one
//! buffer, which [`Transport::recv`] cuts apart again); see [`Options`].
//!
//! Nothing that arrives from the network makes a call fail or panic: oversized,
//! truncated or unparseable datagrams are dropped and counted, and so are
//! datagrams the kernel refuses to send. Errors are for the environment (bind
//! failed, a broken descriptor, a transport used from the wrong thread).
//!
//! A transport may emulate WAN links in user space ([`Transport::emulate`]):
//! what it sends then waits in a timed hold queue ([`link::HoldQueue`]) for
//! its link's delay, jitter and bandwidth, or is lost, and leaves on the
//! first [`Transport::flush`] at or after its release time;
//! [`Transport::wait`] returns by the next release, and
//! [`Transport::next_release`] tells a thread that blocks elsewhere when to
//! come back.
//!
//! Only `uring.rs` and `epoll.rs` contain `unsafe` code; each block says why
//! it is sound.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::socket::{SockaddrStorage, getsockopt, setsockopt, sockopt};
use wire::control::{LinkEmulation, TransportKind};

use crate::actor::Counters;

mod epoll;
pub mod link;
mod uring;
mod waker;

pub use waker::Waker;

/// Datagrams received per [`Transport::recv`] call at most (receive buffers,
/// with GRO: see [`Transport::recv`]).
pub const RECV_BATCH_MAX: usize = 64;
/// Datagrams queued before [`Transport::send`] flushes by itself.
pub const SEND_BATCH_MAX: usize = 64;
/// Bytes queued before [`Transport::send`] flushes by itself: bounds the send
/// queue's memory when datagrams are large.
pub const SEND_QUEUE_BYTES_MAX: usize = 1 << 20;
/// Datagrams in one GSO send at most (the kernel's `UDP_MAX_SEGMENTS` is 64 on
/// older kernels).
pub const GSO_SEGMENTS_MAX: usize = 64;
/// Bytes in one GSO send at most: what one IPv4 datagram can carry.
pub const GSO_BYTES_MAX: usize = 65_507;
/// What a GRO buffer can hold: the kernel stops coalescing below 64 KiB.
const GRO_BUFFER_LEN: usize = 1 << 16;

/// Names of the transport's counters (see [`Transport::counters`]).
pub mod counter {
    pub const SENT: &str = wire::control::DATAGRAMS_SENT_COUNTER;
    pub const RECEIVED: &str = wire::control::DATAGRAMS_RECEIVED_COUNTER;
    /// Received datagrams larger than the limit (or truncated), dropped.
    pub const OVERSIZED: &str = "transport: oversized";
    /// Received datagrams whose source address could not be read, dropped.
    pub const BAD_SOURCE: &str = "transport: bad source address";
    /// Receive errors other than "nothing to read" (the receive goes on).
    pub const RECV_ERROR: &str = "transport: receive error";
    /// Datagrams the kernel refused with `EAGAIN`/`ENOBUFS`, dropped.
    pub const SEND_BUFFER_FULL: &str = "transport: send buffer full";
    /// Datagrams handed to `send` above `MESSAGE_SIZE_MAX`, dropped.
    pub const SEND_TOO_LARGE: &str = "transport: send too large";
    /// Datagrams the kernel refused for another reason (no route,
    /// unreachable, bad address...), dropped.
    pub const SEND_FAILED: &str = "transport: send failed";
    /// io_uring: no send slot free even after reaping completions, dropped.
    pub const SEND_QUEUE_FULL: &str = "transport: send queue full";
    /// GSO sends (of more than one datagram) the kernel took.
    pub const GSO_SENDS: &str = "transport: gso sends";
    /// Received GRO buffers that carried more than one datagram.
    pub const GRO_RUNS: &str = "transport: gro runs";
    /// GSO sends the kernel refused, resent one datagram at a time.
    pub const GSO_FALLBACK: &str = "transport: gso fallback";
    /// The kernel capped `SO_RCVBUF`/`SO_SNDBUF` below what was asked (set
    /// once, at bind): expect drops under bursts.
    pub const BUFFER_CAPPED: &str = "transport: socket buffer capped";
    /// GSO or GRO was asked for but the kernel does not support it (set once).
    pub const OFFLOAD_UNAVAILABLE: &str = "transport: gso/gro unavailable";
    /// Datagrams the kernel dropped because the socket's receive buffer was
    /// full (read once, when the transport's counters are totalled).
    pub const KERNEL_DROPS: &str = wire::control::KERNEL_DROPS_COUNTER;
}

/// Switches for [`Transport::bind_with`]. The default is what
/// [`Transport::bind`] uses: no GSO, no GRO, multishot receive, datagrams up
/// to [`wire::MESSAGE_SIZE_MAX`], 4 MiB socket buffers. (The deployed runtime
/// turns GSO and GRO on: [`crate::deploy::transport_options`].)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Send runs of queued datagrams to one destination as UDP GSO sends
    /// (`UDP_SEGMENT`): up to [`GSO_SEGMENTS_MAX`] datagrams of one size (the
    /// last may be shorter), at most [`GSO_BYTES_MAX`] bytes, in one `sendmsg`.
    /// Datagrams to a destination keep their order; datagrams to different
    /// destinations may leave in another order than queued. Where the kernel
    /// or device refuses a GSO send, its datagrams are resent one by one (and
    /// GSO is turned off for good on `EIO`, "device cannot offload").
    pub gso: bool,
    /// Let the kernel coalesce received datagrams (`UDP_GRO`);
    /// [`Transport::recv`] splits them back into the datagrams that were sent.
    pub gro: bool,
    /// io_uring only: one multishot `recvmsg` into a ring of provided buffers,
    /// armed while blocked in [`Transport::wait`] (busy receives use
    /// `recvmmsg`). Off, or on kernels without it: one-shot `recvmsg`s,
    /// always armed, re-armed as they complete.
    pub multishot: bool,
    /// Largest datagram delivered; larger ones are dropped and counted under
    /// [`counter::OVERSIZED`]. `1..=wire::MESSAGE_SIZE_MAX`.
    pub datagram_size_max: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` to ask for (`SO_*BUFFORCE` if the plain
    /// option is capped and the process may override the cap).
    pub socket_buffer_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gso: false,
            gro: false,
            multishot: true,
            datagram_size_max: wire::MESSAGE_SIZE_MAX,
            socket_buffer_bytes: 4 << 20,
        }
    }
}

/// A UDP socket and the machinery to move datagrams through it in batches.
///
/// An io_uring transport belongs to the first thread that sends, flushes,
/// receives or waits on it (the ring is set up `SINGLE_ISSUER`): bind it
/// anywhere, move it to its thread, then use it only there. Calls from another
/// thread fail with an error (once they need the kernel), they are not
/// undefined behaviour.
pub struct Transport {
    inner: Inner,
    /// The emulated links' hold queue, when [`Transport::emulate`] asked for
    /// one: every send goes through it.
    hold: Option<Box<link::HoldQueue>>,
    /// Where [`Transport::send_with`] has a datagram written for the hold
    /// queue.
    held_write: Vec<u8>,
}

enum Inner {
    Uring(Box<uring::Uring>),
    Epoll(Box<epoll::Epoll>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("kind", &self.kind())
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds a UDP socket to `addr` (port 0: any free port) with large kernel
    /// buffers, on the transport `kind` asks for. `Auto` tries io_uring and
    /// falls back to epoll if the kernel refuses it; `kind()` says which won.
    pub fn bind(addr: SocketAddr, kind: TransportKind) -> io::Result<Transport> {
        Transport::bind_with(addr, kind, &Options::default())
    }

    /// [`Transport::bind`] with [`Options`].
    pub fn bind_with(
        addr: SocketAddr,
        kind: TransportKind,
        options: &Options,
    ) -> io::Result<Transport> {
        if !(1..=wire::MESSAGE_SIZE_MAX).contains(&options.datagram_size_max) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "datagram_size_max {} is not in 1..={}",
                    options.datagram_size_max,
                    wire::MESSAGE_SIZE_MAX
                ),
            ));
        }
        let mut counters = Counters::default();
        let (socket, config) = bind_socket(addr, options, &mut counters)?;
        let inner = match kind {
            TransportKind::IoUring => {
                let uring = uring::Uring::new(socket, config, counters).map_err(|(e, _)| {
                    io::Error::new(e.kind(), format!("io_uring transport on {addr}: {e}"))
                })?;
                Inner::Uring(Box::new(uring))
            }
            TransportKind::Epoll => {
                Inner::Epoll(Box::new(epoll::Epoll::new(socket, config, counters)?))
            }
            TransportKind::Auto => match uring::Uring::new(socket, config, counters) {
                Ok(uring) => Inner::Uring(Box::new(uring)),
                Err((_, (socket, counters))) => {
                    Inner::Epoll(Box::new(epoll::Epoll::new(socket, config, counters)?))
                }
            },
        };
        Ok(Transport {
            inner,
            hold: None,
            held_write: Vec::new(),
        })
    }

    /// Emulates `link` on everything this transport sends from now on (see
    /// [`link`]), its loss and jitter drawn from `seed`; a `link` that
    /// emulates nothing turns emulation off. Datagrams held under an earlier
    /// emulation are dropped: call it before the first send.
    pub fn emulate(&mut self, link: LinkEmulation, seed: u64) {
        self.hold = (!link.is_none()).then(|| Box::new(link::HoldQueue::new(link, seed)));
    }

    /// What this transport emulates (nothing: the default).
    pub fn emulated(&self) -> LinkEmulation {
        self.hold
            .as_ref()
            .map_or_else(LinkEmulation::default, |hold| *hold.link())
    }

    /// When the next held datagram is due to leave (emulated links only):
    /// a thread that blocks must come back by then and [`Transport::flush`].
    pub fn next_release(&self) -> Option<Instant> {
        self.hold.as_ref().and_then(|hold| hold.next_release())
    }

    /// Datagrams held by the emulated links.
    pub fn held(&self) -> usize {
        self.hold.as_ref().map_or(0, |hold| hold.len())
    }

    /// A second handle on this transport's socket, for a thread that only
    /// sends: what it sends leaves from the same address and port (peers
    /// check that replica messages come from the replica's address), on a
    /// backend of the same kind with the same options. It must never
    /// receive or wait: the socket's datagrams belong to this transport.
    pub fn sender(&self) -> io::Result<Transport> {
        let (socket, config) = match &self.inner {
            Inner::Uring(t) => (t.socket().try_clone()?, t.config),
            Inner::Epoll(t) => (t.socket().try_clone()?, t.config),
        };
        let counters = Counters::default();
        let inner = match self.kind() {
            TransportKind::IoUring => Inner::Uring(Box::new(
                uring::Uring::new(socket, config, counters).map_err(|(e, _)| e)?,
            )),
            _ => Inner::Epoll(Box::new(epoll::Epoll::new(socket, config, counters)?)),
        };
        // The same links emulated, with draws of its own.
        let hold = self.hold.as_ref().map(|hold| {
            static SENDERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let n = SENDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let seed = hold.link().seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            Box::new(link::HoldQueue::new(*hold.link(), seed))
        });
        Ok(Transport {
            inner,
            hold,
            held_write: Vec::new(),
        })
    }

    /// The transport in use: `IoUring` or `Epoll`, never `Auto`.
    pub fn kind(&self) -> TransportKind {
        match self.inner {
            Inner::Uring(_) => TransportKind::IoUring,
            Inner::Epoll(_) => TransportKind::Epoll,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Uring(t) => t.local_addr(),
            Inner::Epoll(t) => t.local_addr(),
        }
    }

    /// Hands every datagram that has arrived (up to [`RECV_BATCH_MAX`]) to
    /// `on_datagram`, without blocking. Returns how many. Datagrams larger
    /// than [`wire::MESSAGE_SIZE_MAX`] are dropped and counted.
    ///
    /// With GRO on, the bound is [`RECV_BATCH_MAX`] kernel buffers, each of
    /// which may carry up to 64 datagrams.
    pub fn recv(&mut self, mut on_datagram: impl FnMut(SocketAddr, &[u8])) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Uring(t) => t.recv(&mut on_datagram),
            Inner::Epoll(t) => t.recv(&mut on_datagram),
        }
    }

    /// Queues a datagram. Flushes when [`SEND_BATCH_MAX`] are queued. A
    /// datagram the kernel refuses (buffer full) is dropped and counted, not an
    /// error. With emulated links, the datagram goes to the hold queue
    /// instead, and to the socket on a flush once it is due.
    pub fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        if let Some(hold) = &mut self.hold {
            hold.push(Instant::now(), to, bytes);
            return Ok(());
        }
        self.send_now(to, bytes)
    }

    /// Queues the datagram `write` appends to the buffer it is handed, as
    /// [`Transport::send`] queues `bytes`, but written straight into the
    /// send batch (the buffer of the group it leaves in), not copied there;
    /// with emulated links, into a buffer of the transport's, then held. An
    /// `Err` from `write` (which must then leave the buffer as it was)
    /// queues nothing and is handed back.
    pub fn send_with<E>(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> io::Result<Result<(), E>> {
        if let Some(hold) = &mut self.hold {
            self.held_write.clear();
            if let Err(error) = write(&mut self.held_write) {
                return Ok(Err(error));
            }
            hold.push(Instant::now(), to, &self.held_write);
            return Ok(Ok(()));
        }
        match &mut self.inner {
            Inner::Uring(t) => t.send_with(to, write),
            Inner::Epoll(t) => t.send_with(to, write),
        }
    }

    fn send_now(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Uring(t) => t.send(to, bytes),
            Inner::Epoll(t) => t.send(to, bytes),
        }
    }

    /// Sends everything queued. Without anything queued, costs no system call.
    /// With emulated links, first queues the held datagrams that are due.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(mut hold) = self.hold.take() {
            let released = hold.release_due(Instant::now(), |to, bytes| self.send_now(to, bytes));
            self.hold = Some(hold);
            released?;
        }
        match &mut self.inner {
            Inner::Uring(t) => t.flush(),
            Inner::Epoll(t) => t.flush(),
        }
    }

    /// Blocks until a datagram may be ready to receive, `waker` is woken, or
    /// `timeout` passes. May return early, spuriously. Returns at once while
    /// a datagram waits: a thread that waits on a transport must also
    /// receive from it. With emulated links, returns by the next held
    /// datagram's release time too (then [`Transport::flush`] sends it).
    pub fn wait(&mut self, timeout: Duration, waker: &Waker) -> io::Result<()> {
        let timeout = match self.next_release() {
            Some(release) => timeout.min(release.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        match &mut self.inner {
            Inner::Uring(t) => t.wait(timeout, waker),
            Inner::Epoll(t) => t.wait(timeout, waker),
        }
    }

    /// [`Transport::counters`] and the kernel's receive drops
    /// ([`counter::KERNEL_DROPS`]), added to `into`: a transport's totals at
    /// the end of a run.
    pub fn add_totals(&self, into: &mut Counters) {
        into.merge(self.counters());
        if let Some(hold) = &self.hold {
            into.merge(hold.counters());
        }
        if let Some(drops) = self.kernel_drops().filter(|&d| d > 0) {
            into.add(counter::KERNEL_DROPS, drops);
        }
    }

    /// Datagrams sent and received, and dropped by reason (names in
    /// [`counter`]).
    pub fn counters(&self) -> &Counters {
        match &self.inner {
            Inner::Uring(t) => &t.counters,
            Inner::Epoll(t) => &t.counters,
        }
    }

    /// The emulated links' counters (names in [`link::counter`]); `None`
    /// without emulation. [`Transport::add_totals`] includes them.
    pub fn link_counters(&self) -> Option<&Counters> {
        self.hold.as_ref().map(|hold| hold.counters())
    }

    /// Whether GSO and GRO are in use (asked for, supported, and for GSO not
    /// turned off by a device that refused it).
    pub fn offloads(&self) -> (bool, bool) {
        match &self.inner {
            Inner::Uring(t) => (t.config.gso, t.config.gro),
            Inner::Epoll(t) => (t.config.gso, t.config.gro),
        }
    }

    #[cfg(test)]
    fn config(&self) -> &Config {
        match &self.inner {
            Inner::Uring(t) => &t.config,
            Inner::Epoll(t) => &t.config,
        }
    }

    /// Datagrams the kernel dropped at this socket because its receive buffer
    /// was full (`SO_MEMINFO`'s drop count): load the receiver could not keep
    /// up with, or a flood. `None` where the kernel does not say.
    pub fn kernel_drops(&self) -> Option<u64> {
        let socket = match &self.inner {
            Inner::Uring(t) => t.socket(),
            Inner::Epoll(t) => t.socket(),
        };
        epoll::socket_drops(socket)
    }

    #[cfg(test)]
    fn socket(&self) -> &UdpSocket {
        match &self.inner {
            Inner::Uring(t) => t.socket(),
            Inner::Epoll(t) => t.socket(),
        }
    }
}

/// What the backends need to know, resolved at bind against what the kernel
/// accepted.
#[derive(Clone, Copy, Debug)]
struct Config {
    gso: bool,
    gro: bool,
    multishot: bool,
    /// Largest datagram delivered.
    datagram_size_max: usize,
    /// GSO runs only of datagrams up to this size: lowered when the kernel
    /// refuses a segment size (larger than the path MTU allows).
    gso_segment_max: usize,
}

/// Where a GSO send of larger segments was refused, runs are kept to this
/// segment size: a 1500-byte MTU path, IPv6 headers (the usual reason for the
/// refusal is a segment larger than the path MTU allows).
const GSO_SEGMENT_AFTER_REFUSAL: usize = 1452;

impl Config {
    /// The kernel refused a GSO send of `segment_len`-byte segments: `EIO`
    /// (`disable`) means the device cannot offload at all; otherwise the
    /// segments were too large for the path.
    fn on_gso_refused(&mut self, segment_len: usize, disable: bool) {
        if disable {
            self.gso = false;
        } else {
            let max = GSO_SEGMENT_AFTER_REFUSAL.min(segment_len.saturating_sub(1));
            self.gso_segment_max = self.gso_segment_max.min(max);
        }
    }

    /// Room for one received payload: a datagram of the limit, or a GRO run.
    fn recv_payload_len(&self) -> usize {
        if self.gro {
            GRO_BUFFER_LEN
        } else {
            self.datagram_size_max
        }
    }
}

/// Binds the socket and sets its options; returns what the kernel accepted.
fn bind_socket(
    addr: SocketAddr,
    options: &Options,
    counters: &mut Counters,
) -> io::Result<(UdpSocket, Config)> {
    let socket = UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("bind UDP {addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    let bytes = options.socket_buffer_bytes;
    // The kernel keeps (and reports) twice what is asked, for its overhead,
    // capped at twice net.core.[rw]mem_max; the FORCE variants ignore the cap
    // (they need CAP_NET_ADMIN, and fail harmlessly without it).
    let reported = bytes.saturating_mul(2);
    let _ = setsockopt(&socket, sockopt::RcvBuf, &bytes);
    if getsockopt(&socket, sockopt::RcvBuf).unwrap_or(0) < reported {
        let _ = setsockopt(&socket, sockopt::RcvBufForce, &bytes);
    }
    let _ = setsockopt(&socket, sockopt::SndBuf, &bytes);
    if getsockopt(&socket, sockopt::SndBuf).unwrap_or(0) < reported {
        let _ = setsockopt(&socket, sockopt::SndBufForce, &bytes);
    }
    if getsockopt(&socket, sockopt::RcvBuf).unwrap_or(0) < reported
        || getsockopt(&socket, sockopt::SndBuf).unwrap_or(0) < reported
    {
        counters.add(counter::BUFFER_CAPPED, 1);
    }
    let mut config = Config {
        gso: options.gso,
        gro: options.gro,
        multishot: options.multishot,
        datagram_size_max: options.datagram_size_max,
        gso_segment_max: options.datagram_size_max,
    };
    // GSO needs no socket option (each send carries its segment size), but
    // reading the option tells whether the kernel knows it (4.18+).
    if config.gso && getsockopt(&socket, sockopt::UdpGsoSegment).is_err() {
        config.gso = false;
        counters.add(counter::OFFLOAD_UNAVAILABLE, 1);
    }
    if config.gro && setsockopt(&socket, sockopt::UdpGroSegment, &true).is_err() {
        config.gro = false;
        counters.add(counter::OFFLOAD_UNAVAILABLE, 1);
    }
    Ok((socket, config))
}

/// The address in a `sockaddr_in`/`sockaddr_in6` as the kernel wrote it.
fn sockaddr_parse(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::from((ip, port)))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope_id = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip.into(),
                port,
                flowinfo,
                scope_id,
            )))
        }
        _ => None,
    }
}

/// Layout of a control message header (`struct cmsghdr`): its length field
/// spans the header's first bytes, its level and type follow.
const CMSG_HDR_LEN: usize = size_of::<libc::cmsghdr>();
const CMSG_LEVEL_AT: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_level);
const CMSG_TYPE_AT: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_type);
const _: () = assert!(CMSG_HDR_LEN == 16 && CMSG_LEVEL_AT == 8 && CMSG_TYPE_AT == 12);

/// `CMSG_ALIGN`: control messages are padded to the size of `size_t`.
const fn cmsg_align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// Room for the `UDP_SEGMENT` control message of a GSO send: `CMSG_SPACE(2)`.
const GSO_CONTROL_LEN: usize = cmsg_align(CMSG_HDR_LEN + 2);
/// Room for received control messages: a `UDP_GRO` one takes
/// `CMSG_SPACE(4)` = 24 bytes; some slack for anything else the kernel adds.
const RECV_CONTROL_LEN: usize = 64;

/// A control message buffer, aligned as `struct cmsghdr` wants.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
struct GsoControl([u8; GSO_CONTROL_LEN]);

impl GsoControl {
    /// The `UDP_SEGMENT` control message that cuts a send into `segment`-byte
    /// datagrams.
    fn new(segment: u16) -> GsoControl {
        let mut bytes = [0u8; GSO_CONTROL_LEN];
        bytes[..size_of::<usize>()].copy_from_slice(&(CMSG_HDR_LEN + 2).to_ne_bytes());
        bytes[CMSG_LEVEL_AT..CMSG_LEVEL_AT + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        bytes[CMSG_TYPE_AT..CMSG_TYPE_AT + 4].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
        bytes[CMSG_HDR_LEN..CMSG_HDR_LEN + 2].copy_from_slice(&segment.to_ne_bytes());
        GsoControl(bytes)
    }
}

/// The segment size in a `UDP_GRO` control message among `control`, if any:
/// the size of every datagram in the buffer but the last.
fn gro_segment_len(control: &[u8]) -> Option<usize> {
    let mut rest = control;
    while rest.len() >= CMSG_HDR_LEN {
        let len = usize::from_ne_bytes(rest[..size_of::<usize>()].try_into().ok()?);
        let level = i32::from_ne_bytes(rest[CMSG_LEVEL_AT..CMSG_LEVEL_AT + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[CMSG_TYPE_AT..CMSG_TYPE_AT + 4].try_into().ok()?);
        if len < CMSG_HDR_LEN || len > rest.len() {
            return None;
        }
        if level == libc::SOL_UDP && kind == libc::UDP_GRO && len >= CMSG_HDR_LEN + 4 {
            let segment = i32::from_ne_bytes(rest[CMSG_HDR_LEN..CMSG_HDR_LEN + 4].try_into().ok()?);
            return usize::try_from(segment).ok().filter(|&s| s > 0);
        }
        rest = rest.get(cmsg_align(len)..)?;
    }
    None
}

/// The bytes of a received control buffer (kept as `u64`s, for `cmsghdr`
/// alignment).
fn control_bytes(control: &[u64; RECV_CONTROL_LEN / 8]) -> [u8; RECV_CONTROL_LEN] {
    let mut bytes = [0u8; RECV_CONTROL_LEN];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(control) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

/// Tallies of one `recv` call, added to the counters once at its end.
#[derive(Debug, Default)]
struct RecvTally {
    received: u64,
    oversized: u64,
    bad_source: u64,
    errors: u64,
    gro_runs: u64,
}

impl RecvTally {
    /// Hands the datagrams in one received buffer to `on_datagram`: the
    /// buffer, or with GRO the `segment`-byte datagrams it carries (the last
    /// may be shorter). Drops what is truncated, too large, or from an
    /// unreadable source.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        source: Option<SocketAddr>,
        payload: &[u8],
        truncated: bool,
        segment: Option<usize>,
        datagram_size_max: usize,
        on_datagram: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> usize {
        if truncated {
            self.oversized += 1;
            return 0;
        }
        let Some(source) = source else {
            self.bad_source += 1;
            return 0;
        };
        let segment = segment.unwrap_or(payload.len()).max(1);
        if segment > datagram_size_max {
            self.oversized += payload.len().div_ceil(segment).max(1) as u64;
            return 0;
        }
        if payload.is_empty() {
            on_datagram(source, payload);
            self.received += 1;
            return 1;
        }
        let mut delivered = 0;
        for datagram in payload.chunks(segment) {
            on_datagram(source, datagram);
            delivered += 1;
        }
        self.received += delivered as u64;
        if delivered > 1 {
            self.gro_runs += 1;
        }
        delivered
    }

    fn add_to(&mut self, counters: &mut Counters) {
        for (name, n) in [
            (counter::RECEIVED, self.received),
            (counter::OVERSIZED, self.oversized),
            (counter::BAD_SOURCE, self.bad_source),
            (counter::RECV_ERROR, self.errors),
            (counter::GRO_RUNS, self.gro_runs),
        ] {
            if n > 0 {
                counters.add(name, n);
            }
        }
        *self = RecvTally::default();
    }
}

/// Datagrams to one destination that leave in one `sendmsg`: one datagram, or
/// with GSO a run of up to [`GSO_SEGMENTS_MAX`] of `segment_len` bytes (the
/// last may be shorter, which ends the run).
#[derive(Debug)]
struct SendGroup {
    to: SocketAddr,
    addr: SockaddrStorage,
    segment_len: usize,
    segments: usize,
    /// A shorter datagram (or an empty one) ended the run.
    closed: bool,
    bytes: Vec<u8>,
}

impl SendGroup {
    fn new() -> SendGroup {
        let to = SocketAddr::from(([0, 0, 0, 0], 0));
        SendGroup {
            to,
            addr: SockaddrStorage::from(to),
            segment_len: 0,
            segments: 0,
            closed: true,
            bytes: Vec::new(),
        }
    }

    /// Starts the group afresh with one datagram; reuses the buffer.
    fn start(&mut self, to: SocketAddr, datagram: &[u8]) {
        let copied = self.start_with(to, |buf| {
            buf.extend_from_slice(datagram);
            Ok::<(), Infallible>(())
        });
        let Ok(()) = copied;
    }

    /// Starts the group afresh with the datagram `write` appends to its
    /// buffer (reused): written in place, not copied. On `Err` the group
    /// holds no datagram, and must not be sent.
    fn start_with<E>(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.to != to {
            self.to = to;
            self.addr = SockaddrStorage::from(to);
        }
        self.bytes.clear();
        write(&mut self.bytes)?;
        self.segment_len = self.bytes.len();
        self.segments = 1;
        self.closed = self.bytes.is_empty();
        Ok(())
    }

    /// Whether the run can take another datagram, whatever its length
    /// (which [`SendGroup::append_with`] checks once it is written).
    fn open(&self, segment_max: usize) -> bool {
        !self.closed && self.segments < GSO_SEGMENTS_MAX && self.segment_len <= segment_max
    }

    /// Writes a datagram at the end of the buffer with `write`, and keeps it
    /// in the run if GSO rules allow it ([`Appended::Joined`]); otherwise it
    /// is left at the end of the buffer, past the run, for the caller to
    /// move to a group of its own and cut off ([`Appended::Apart`]). On
    /// `Err` the group is as it was. Call only while the run is
    /// [`SendGroup::open`].
    fn append_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Appended, E> {
        let start = self.bytes.len();
        if let Err(error) = write(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(error);
        }
        let len = self.bytes.len() - start;
        if len == 0 || len > self.segment_len || self.bytes.len() > GSO_BYTES_MAX {
            return Ok(Appended::Apart(start));
        }
        self.segments += 1;
        self.closed = len < self.segment_len;
        Ok(Appended::Joined(len))
    }

    /// The datagrams of the group, one by one.
    fn datagrams(&self) -> std::slice::Chunks<'_, u8> {
        self.bytes.chunks(self.segment_len.max(1))
    }

    /// The `UDP_SEGMENT` control message, for a run of more than one.
    fn gso_control(&self) -> Option<GsoControl> {
        let segment = u16::try_from(self.segment_len).ok()?;
        (self.segments > 1).then(|| GsoControl::new(segment))
    }
}

/// Where [`SendGroup::append_with`] left the datagram it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Appended {
    /// In the run; this many bytes.
    Joined(usize),
    /// At the end of the buffer from this index on, not in the run.
    Apart(usize),
}

/// How a failed send of one group is accounted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendError {
    /// `EAGAIN`/`ENOBUFS`: the kernel has no room; drop.
    Full,
    /// The kernel refused the GSO send itself; resend one by one.
    Gso {
        /// `EIO`: the device cannot offload; GSO off for good.
        disable: bool,
    },
    /// Refused for this datagram (unreachable, too big, bad address); drop.
    Failed,
    /// The socket itself is broken (a bug): an error to the caller.
    Fatal,
}

fn classify_send_error(errno: i32, segments: usize) -> SendError {
    match errno {
        libc::EAGAIN | libc::ENOBUFS => SendError::Full,
        libc::EIO if segments > 1 => SendError::Gso { disable: true },
        libc::EINVAL | libc::EMSGSIZE if segments > 1 => SendError::Gso { disable: false },
        libc::EBADF | libc::ENOTSOCK | libc::EFAULT => SendError::Fatal,
        _ => SendError::Failed,
    }
}

/// Whether a receive error ends the transport (a bug: a broken descriptor)
/// rather than being counted and survived.
fn recv_error_is_fatal(errno: i32) -> bool {
    matches!(errno, libc::EBADF | libc::ENOTSOCK | libc::EFAULT)
}

/// Milliseconds for `epoll_wait`/`poll`, rounded up so that a short timeout
/// does not become a busy loop.
fn timeout_ms(timeout: Duration) -> i32 {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    const LOCALHOST: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    const DEADLINE: Duration = Duration::from_secs(5);

    /// Whether io_uring works here; io_uring tests are skipped (with a line
    /// on stderr) where it does not, e.g. in containers that filter it out.
    fn uring_works() -> bool {
        match Transport::bind(LOCALHOST, TransportKind::IoUring) {
            Ok(_) => true,
            Err(e) => {
                // Straight to stderr: cargo shows it even for a passing test.
                use std::io::Write as _;
                let _ = writeln!(
                    io::stderr(),
                    "io_uring unavailable, skipping its half of the test: {e}"
                );
                false
            }
        }
    }

    /// The backends to test, with `options`.
    fn kinds() -> Vec<TransportKind> {
        let mut kinds = vec![TransportKind::Epoll];
        if uring_works() {
            kinds.push(TransportKind::IoUring);
        }
        kinds
    }

    fn pair(kind: TransportKind, options: &Options) -> (Transport, Transport) {
        let a = Transport::bind_with(LOCALHOST, kind, options).unwrap();
        let b = Transport::bind_with(LOCALHOST, kind, options).unwrap();
        assert_eq!(a.kind(), kind);
        (a, b)
    }

    /// Receives on `t` until `want` datagrams arrived or the deadline passed.
    fn recv_until(t: &mut Transport, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let waker = Waker::new().unwrap();
        let deadline = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        while got.len() < want && Instant::now() < deadline {
            let n = t
                .recv(|from, bytes| got.push((from, bytes.to_vec())))
                .unwrap();
            if n == 0 {
                t.wait(Duration::from_millis(20), &waker).unwrap();
            }
        }
        got
    }

    /// The datagram of the batch test with index `i`: its length runs from 1
    /// byte to `MESSAGE_SIZE_MAX`, its bytes say which it is.
    fn datagram(i: usize, count: usize) -> Vec<u8> {
        let len = match i {
            0 => 1,
            i if i == count - 1 => wire::MESSAGE_SIZE_MAX,
            i => 1 + (i * 7919) % 4096 + if i % 50 == 0 { 30_000 } else { 0 },
        };
        (0..len)
            .map(|j| (i as u8).wrapping_mul(31) ^ (j as u8))
            .collect()
    }

    #[test]
    fn transport_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Transport>();
    }

    #[test]
    fn round_trip_both_backends() {
        for kind in kinds() {
            let (mut a, mut b) = pair(kind, &Options::default());
            a.send(b.local_addr(), b"ping").unwrap();
            a.flush().unwrap();
            let got = recv_until(&mut b, 1);
            assert_eq!(got, vec![(a.local_addr(), b"ping".to_vec())], "{kind:?}");
            b.send(a.local_addr(), b"pong").unwrap();
            b.send(a.local_addr(), b"").unwrap();
            b.flush().unwrap();
            let got = recv_until(&mut a, 2);
            assert_eq!(
                got,
                vec![
                    (b.local_addr(), b"pong".to_vec()),
                    (b.local_addr(), Vec::new())
                ],
                "{kind:?}"
            );
            assert_eq!(a.counters().get(counter::SENT), 1);
            assert_eq!(a.counters().get(counter::RECEIVED), 2);
            assert_eq!(b.counters().get(counter::SENT), 2);
        }
    }

    /// 1,000 datagrams of 1 byte to `MESSAGE_SIZE_MAX` all arrive intact, for
    /// each backend with and without GSO/GRO and for io_uring's one-shot
    /// receive. Sent in bursts the receiver keeps up with: UDP may drop
    /// otherwise, and this test is about integrity, not flow control.
    #[test]
    fn batch_of_varying_sizes_arrives_intact() {
        const COUNT: usize = 1000;
        let variants = [
            Options::default(),
            Options {
                gso: true,
                gro: true,
                ..Options::default()
            },
            Options {
                multishot: false,
                ..Options::default()
            },
        ];
        for kind in kinds() {
            for options in &variants {
                let (mut a, mut b) = pair(kind, options);
                let to = b.local_addr();
                let mut got = Vec::new();
                for burst in (0..COUNT).collect::<Vec<_>>().chunks(50) {
                    for &i in burst {
                        a.send(to, &datagram(i, COUNT)).unwrap();
                    }
                    a.flush().unwrap();
                    got.extend(recv_until(&mut b, burst.len()));
                }
                assert_eq!(got.len(), COUNT, "{kind:?} {options:?}: {:?}", b.counters());
                for (i, (from, bytes)) in got.iter().enumerate() {
                    assert_eq!(*from, a.local_addr());
                    assert!(
                        *bytes == datagram(i, COUNT),
                        "{kind:?} {options:?}: datagram {i}"
                    );
                }
                assert_eq!(a.counters().get(counter::SENT), COUNT as u64);
                assert_eq!(b.counters().get(counter::RECEIVED), COUNT as u64);
            }
        }
    }

    /// A datagram above the limit is counted, not delivered, and the ones
    /// around it are. Over IPv4 nothing above `MESSAGE_SIZE_MAX` can be sent,
    /// so the limit is lowered: the same path (a receive buffer of the limit,
    /// `MSG_TRUNC`) handles both.
    #[test]
    fn oversized_datagram_is_counted_not_delivered() {
        for kind in kinds() {
            for multishot in [true, false] {
                let options = Options {
                    datagram_size_max: 1000,
                    multishot,
                    ..Options::default()
                };
                let mut b = Transport::bind_with(LOCALHOST, kind, &options).unwrap();
                let plain = UdpSocket::bind(LOCALHOST).unwrap();
                let to = b.local_addr();
                plain.send_to(&[1; 1000], to).unwrap();
                plain.send_to(&[2; 1001], to).unwrap();
                plain.send_to(&[3; 60_000], to).unwrap();
                plain.send_to(&[4; 10], to).unwrap();
                let got = recv_until(&mut b, 2);
                let sizes: Vec<usize> = got.iter().map(|(_, bytes)| bytes.len()).collect();
                assert_eq!(sizes, vec![1000, 10], "{kind:?} multishot {multishot}");
                assert_eq!(b.counters().get(counter::OVERSIZED), 2);
                assert_eq!(b.counters().get(counter::RECEIVED), 2);
            }
        }
    }

    #[test]
    fn send_above_message_size_max_is_counted() {
        for kind in kinds() {
            let (mut a, b) = pair(kind, &Options::default());
            a.send(b.local_addr(), &vec![0; wire::MESSAGE_SIZE_MAX + 1])
                .unwrap();
            a.flush().unwrap();
            assert_eq!(a.counters().get(counter::SEND_TOO_LARGE), 1);
            assert_eq!(a.counters().get(counter::SENT), 0);
        }
    }

    /// Sending to an address the socket cannot reach (an IPv6 destination
    /// from an IPv4 socket) is a counted drop, not an error.
    #[test]
    fn send_refused_by_kernel_is_counted() {
        for kind in kinds() {
            let (mut a, b) = pair(kind, &Options::default());
            a.send("[::1]:9".parse().unwrap(), b"x").unwrap();
            a.send(b.local_addr(), b"y").unwrap();
            a.flush().unwrap();
            assert_eq!(a.counters().get(counter::SEND_FAILED), 1, "{kind:?}");
            assert_eq!(a.counters().get(counter::SENT), 1, "{kind:?}");
        }
    }

    #[test]
    fn wait_returns_on_data() {
        for kind in kinds() {
            let (mut a, mut b) = pair(kind, &Options::default());
            let to = b.local_addr();
            let waker = Waker::new().unwrap();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                a.send(to, b"wake").unwrap();
                a.flush().unwrap();
            });
            let started = Instant::now();
            let mut got = 0;
            while got == 0 && started.elapsed() < DEADLINE {
                b.wait(DEADLINE, &waker).unwrap();
                got += b.recv(|_, _| {}).unwrap();
            }
            sender.join().unwrap();
            assert_eq!(got, 1, "{kind:?}");
            assert!(started.elapsed() < DEADLINE, "{kind:?}");
        }
    }

    /// `wait` returns on a wake-up from another thread. It may also return
    /// spuriously (an io_uring dropped on this thread interrupts it with
    /// task work some milliseconds later): the loop tells the two apart,
    /// and a lost wake-up would run it into the deadline.
    #[test]
    fn wait_returns_on_wake_from_another_thread() {
        use std::sync::atomic::{AtomicBool, Ordering};
        for kind in kinds() {
            let mut t = Transport::bind(LOCALHOST, kind).unwrap();
            let waker = Arc::new(Waker::new().unwrap());
            let woken = Arc::new(AtomicBool::new(false));
            let waking = {
                let waker = Arc::clone(&waker);
                let woken = Arc::clone(&woken);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    woken.store(true, Ordering::SeqCst);
                    waker.wake();
                })
            };
            let started = Instant::now();
            while started.elapsed() < DEADLINE {
                waker.prepare_sleep();
                if woken.load(Ordering::SeqCst) {
                    waker.cancel_sleep();
                    break;
                }
                t.wait(DEADLINE, &waker).unwrap();
                waker.cancel_sleep();
            }
            waking.join().unwrap();
            assert!(
                started.elapsed() < DEADLINE,
                "{kind:?}: slept through the wake-up"
            );
        }
    }

    /// Emulated links: a datagram waits its delay in the hold queue, `wait`
    /// returns by its release time (not the caller's much longer timeout),
    /// and the flush after it sends the datagram; a send-only handle
    /// emulates the same links.
    #[test]
    fn emulated_links_hold_until_due_and_wait_wakes_for_the_release() {
        let link = LinkEmulation {
            delay_us: 20_000,
            ..LinkEmulation::default()
        };
        for kind in kinds() {
            let (mut a, mut b) = pair(kind, &Options::default());
            a.emulate(link, 1);
            assert_eq!(a.emulated(), link);
            assert_eq!(a.sender().unwrap().emulated(), link);
            let waker = Waker::new().unwrap();
            let started = Instant::now();
            a.send(b.local_addr(), b"x").unwrap();
            a.flush().unwrap();
            assert_eq!(a.held(), 1, "{kind:?}");
            assert!(a.next_release().unwrap() >= started + Duration::from_millis(20));
            while a.held() > 0 && started.elapsed() < DEADLINE {
                a.wait(DEADLINE, &waker).unwrap();
                a.flush().unwrap();
            }
            let elapsed = started.elapsed();
            assert!(
                elapsed >= Duration::from_millis(20),
                "{kind:?}: {elapsed:?}"
            );
            assert!(elapsed < DEADLINE / 2, "{kind:?}: slept past the release");
            let got = recv_until(&mut b, 1);
            assert_eq!(got, vec![(a.local_addr(), b"x".to_vec())], "{kind:?}");
            let mut totals = Counters::default();
            a.add_totals(&mut totals);
            assert_eq!(totals.get(link::counter::HELD), 1);
            assert_eq!(totals.get(counter::SENT), 1);
            a.emulate(LinkEmulation::default(), 0);
            assert_eq!(a.next_release(), None);
        }
    }

    #[test]
    fn wait_returns_on_timeout() {
        for kind in kinds() {
            let mut t = Transport::bind(LOCALHOST, kind).unwrap();
            let waker = Waker::new().unwrap();
            let started = Instant::now();
            t.wait(Duration::from_millis(10), &waker).unwrap();
            t.wait(Duration::ZERO, &waker).unwrap();
            assert!(started.elapsed() < DEADLINE, "{kind:?}");
        }
    }

    /// A transport bound on one thread works on the thread it is moved to
    /// (the io_uring is tied to a thread at first use, not at bind); an
    /// io_uring transport then refuses, with an error, to be used elsewhere.
    #[test]
    fn transport_moves_to_its_thread_before_first_use() {
        for kind in kinds() {
            let (mut a, b) = pair(kind, &Options::default());
            let to = b.local_addr();
            let receiver = std::thread::spawn(move || {
                let mut b = b;
                let got = recv_until(&mut b, 1);
                (b, got)
            });
            a.send(to, b"x").unwrap();
            a.flush().unwrap();
            let (mut b, got) = receiver.join().unwrap();
            assert_eq!(got.len(), 1, "{kind:?}");
            // Back on this thread: io_uring refuses as soon as it needs the
            // ring (a send; a busy receive reads the socket with `recvmmsg`
            // and does not); epoll does not care.
            a.send(to, b"y").unwrap();
            a.flush().unwrap();
            let deadline = Instant::now() + DEADLINE;
            let result = loop {
                match b.recv(|_, _| {}) {
                    Ok(0) if Instant::now() < deadline => continue,
                    result => break result,
                }
            };
            assert_eq!(result.unwrap(), 1, "{kind:?}");
            b.send(a.local_addr(), b"z").unwrap();
            let result = b.flush();
            match kind {
                TransportKind::IoUring => assert!(result.is_err()),
                _ => assert!(result.is_ok(), "{kind:?}"),
            }
        }
    }

    #[test]
    fn auto_picks_io_uring_where_it_works_and_epoll_can_be_forced() {
        let auto = Transport::bind(LOCALHOST, TransportKind::Auto).unwrap();
        let expected = if uring_works() {
            TransportKind::IoUring
        } else {
            TransportKind::Epoll
        };
        assert_eq!(auto.kind(), expected);
        let epoll = Transport::bind(LOCALHOST, TransportKind::Epoll).unwrap();
        assert_eq!(epoll.kind(), TransportKind::Epoll);
    }

    /// GSO on the sender and GRO on the receiver, across backends: runs of
    /// equal-size datagrams (with a shorter last one), interleaved
    /// destinations, and a receiver without GRO that gets them one by one.
    #[test]
    fn gso_gro_round_trip() {
        let offload = Options {
            gso: true,
            gro: true,
            ..Options::default()
        };
        for kind in kinds() {
            let mut a = Transport::bind_with(LOCALHOST, kind, &offload).unwrap();
            assert_eq!(a.offloads(), (true, true), "{kind:?}");
            let mut b = Transport::bind_with(LOCALHOST, kind, &offload).unwrap();
            let mut c = Transport::bind(LOCALHOST, kind).unwrap();
            let mut sent_b = Vec::new();
            let mut sent_c = Vec::new();
            for i in 0..150u32 {
                let len = if i % 40 == 39 { 17 } else { 100 };
                let bytes: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                let (to, sent) = if i % 3 == 0 {
                    (c.local_addr(), &mut sent_c)
                } else {
                    (b.local_addr(), &mut sent_b)
                };
                a.send(to, &bytes).unwrap();
                sent.push(bytes);
            }
            a.flush().unwrap();
            let got_b: Vec<Vec<u8>> = recv_until(&mut b, sent_b.len())
                .into_iter()
                .map(|(_, bytes)| bytes)
                .collect();
            let got_c: Vec<Vec<u8>> = recv_until(&mut c, sent_c.len())
                .into_iter()
                .map(|(_, bytes)| bytes)
                .collect();
            assert_eq!(got_b, sent_b, "{kind:?}");
            assert_eq!(got_c, sent_c, "{kind:?}");
            assert_eq!(a.counters().get(counter::SENT), 150);
            assert_eq!(a.counters().get(counter::GSO_FALLBACK), 0);
            assert!(
                a.counters().get(counter::GSO_SENDS) > 0,
                "{kind:?}: GSO used"
            );
            assert!(
                b.counters().get(counter::GRO_RUNS) > 0,
                "{kind:?}: GRO used"
            );
            assert_eq!(
                c.counters().get(counter::GRO_RUNS),
                0,
                "{kind:?}: no GRO asked"
            );
        }
    }

    /// 4 MiB buffers, even above net.core.rmem_max when the process may
    /// force them (root here); otherwise the cap is counted.
    #[test]
    fn socket_buffers_are_large() {
        let mut counters = Counters::default();
        let options = Options::default();
        let (socket, _) = bind_socket(LOCALHOST, &options, &mut counters).unwrap();
        let rcvbuf = getsockopt(&socket, sockopt::RcvBuf).unwrap();
        let sndbuf = getsockopt(&socket, sockopt::SndBuf).unwrap();
        if counters.get(counter::BUFFER_CAPPED) == 0 {
            assert!(rcvbuf >= 2 * options.socket_buffer_bytes, "{rcvbuf}");
            assert!(sndbuf >= 2 * options.socket_buffer_bytes, "{sndbuf}");
        } else {
            eprintln!("socket buffers capped: SO_RCVBUF {rcvbuf}, SO_SNDBUF {sndbuf}");
        }
        // Above rmem_max (4 MiB here): only SO_RCVBUFFORCE gets there.
        let big = Options {
            socket_buffer_bytes: 16 << 20,
            ..Options::default()
        };
        let mut counters = Counters::default();
        let (socket, _) = bind_socket(LOCALHOST, &big, &mut counters).unwrap();
        let rcvbuf = getsockopt(&socket, sockopt::RcvBuf).unwrap();
        assert!(
            rcvbuf >= 32 << 20 || counters.get(counter::BUFFER_CAPPED) == 1,
            "{rcvbuf}"
        );
    }

    /// A receiver that does not keep up loses datagrams in the kernel; the
    /// transport reports how many (a flood that overflows a replica's socket
    /// shows in its counters), and a send-only handle on the same socket
    /// sends from the same address.
    #[test]
    fn kernel_receive_drops_are_counted_and_a_sender_shares_the_address() {
        for kind in kinds() {
            let small = Options {
                socket_buffer_bytes: 4096,
                ..Options::default()
            };
            let receiver = Transport::bind_with(LOCALHOST, kind, &small).unwrap();
            let flood = UdpSocket::bind(LOCALHOST).unwrap();
            for _ in 0..2_000 {
                let _ = flood.send_to(&[7; 1000], receiver.local_addr());
            }
            let drops = receiver.kernel_drops().expect("the kernel says");
            assert!(drops > 1_000, "{kind:?}: {drops} drops");
            let mut totals = Counters::default();
            receiver.add_totals(&mut totals);
            assert_eq!(totals.get(counter::KERNEL_DROPS), drops);

            let mut sender = receiver.sender().unwrap();
            assert_eq!(sender.local_addr(), receiver.local_addr());
            let probe = UdpSocket::bind(LOCALHOST).unwrap();
            sender.send(probe.local_addr().unwrap(), b"hi").unwrap();
            sender.flush().unwrap();
            let mut buf = [0; 16];
            probe
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let (len, from) = probe.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..len], from), (&b"hi"[..], receiver.local_addr()));
        }
    }

    #[test]
    fn send_errors_are_classified() {
        assert_eq!(classify_send_error(libc::EAGAIN, 1), SendError::Full);
        assert_eq!(classify_send_error(libc::ENOBUFS, 64), SendError::Full);
        assert_eq!(
            classify_send_error(libc::EIO, 2),
            SendError::Gso { disable: true }
        );
        assert_eq!(
            classify_send_error(libc::EINVAL, 2),
            SendError::Gso { disable: false }
        );
        assert_eq!(classify_send_error(libc::EINVAL, 1), SendError::Failed);
        assert_eq!(classify_send_error(libc::EMSGSIZE, 1), SendError::Failed);
        assert_eq!(classify_send_error(libc::ENETUNREACH, 1), SendError::Failed);
        assert_eq!(classify_send_error(libc::EBADF, 1), SendError::Fatal);
    }

    /// A GSO send the kernel refuses is resent one datagram at a time, and
    /// runs are then kept below the refused segment size. The refusal is
    /// real: with `SO_NO_CHECK` (no UDP checksum) the kernel rejects every
    /// GSO send with `EINVAL`, as it does segments above the path MTU.
    #[test]
    fn refused_gso_send_falls_back_to_one_by_one() {
        let gso = Options {
            gso: true,
            ..Options::default()
        };
        for kind in kinds() {
            let mut a = Transport::bind_with(LOCALHOST, kind, &gso).unwrap();
            let mut b = Transport::bind(LOCALHOST, kind).unwrap();
            epoll::set_no_check_tx(a.socket());
            let sent: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 2000]).collect();
            for bytes in &sent {
                a.send(b.local_addr(), bytes).unwrap();
            }
            a.flush().unwrap();
            let got: Vec<Vec<u8>> = recv_until(&mut b, sent.len())
                .into_iter()
                .map(|(_, bytes)| bytes)
                .collect();
            assert_eq!(got, sent, "{kind:?}");
            assert_eq!(a.counters().get(counter::GSO_FALLBACK), 1, "{kind:?}");
            assert_eq!(a.counters().get(counter::SENT), 10, "{kind:?}");
            assert_eq!(a.config().gso_segment_max, 1452, "{kind:?}");
            // Datagrams above the lowered limit now go one per send: no
            // further refusal.
            for _ in 0..3 {
                a.send(b.local_addr(), &[1; 2000]).unwrap();
            }
            a.flush().unwrap();
            assert_eq!(a.counters().get(counter::GSO_FALLBACK), 1, "{kind:?}");
            assert_eq!(recv_until(&mut b, 3).len(), 3, "{kind:?}");
        }
    }

    /// Appends `datagram` to `g`'s run as the transports do: written in
    /// place if the run is open, cut off again if it does not fit.
    fn try_append(g: &mut SendGroup, datagram: &[u8], segment_max: usize) -> bool {
        if !g.open(segment_max) {
            return false;
        }
        let appended = g.append_with(|buf| {
            buf.extend_from_slice(datagram);
            Ok::<(), Infallible>(())
        });
        match appended {
            Ok(Appended::Joined(len)) => len == datagram.len(),
            Ok(Appended::Apart(start)) => {
                assert_eq!(&g.bytes[start..], datagram);
                g.bytes.truncate(start);
                false
            }
        }
    }

    /// Datagrams written in place arrive as written, in order, whether they
    /// joined a GSO run, ended one or went alone; a write that fails sends
    /// nothing.
    #[test]
    fn datagrams_written_in_place_arrive_intact() {
        let offloads = Options {
            gso: true,
            gro: true,
            ..Options::default()
        };
        let sizes = [100, 100, 100, 50, 100, 200, 0, 100, 100];
        for kind in kinds() {
            let (mut a, mut b) = pair(kind, &offloads);
            for (i, &len) in sizes.iter().enumerate() {
                let written = a.send_with(b.local_addr(), |buf| {
                    buf.resize(buf.len() + len, i as u8);
                    Ok::<(), ()>(())
                });
                assert_eq!(written.unwrap(), Ok(()));
                assert_eq!(a.send_with(b.local_addr(), |_| Err(())).unwrap(), Err(()));
            }
            a.flush().unwrap();
            let want: Vec<_> = (sizes.iter().enumerate())
                .map(|(i, &len)| (a.local_addr(), vec![i as u8; len]))
                .collect();
            assert_eq!(recv_until(&mut b, sizes.len()), want, "{kind:?}");
            assert_eq!(a.counters().get(counter::SENT), sizes.len() as u64);
        }
    }

    /// A datagram written in place that fails to encode leaves the group as
    /// it was.
    #[test]
    fn a_failed_write_leaves_the_group_as_it_was() {
        let to = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut g = SendGroup::new();
        g.start(to, &[1; 10]);
        let failed = g.append_with(|buf| {
            buf.extend_from_slice(&[2; 5]);
            Err("encode failed")
        });
        assert_eq!(failed, Err("encode failed"));
        assert_eq!((g.bytes.len(), g.segments), (10, 1));
        assert!(try_append(&mut g, &[3; 10], 65_507));
    }

    #[test]
    fn send_group_follows_gso_rules() {
        let to = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut g = SendGroup::new();
        g.start(to, &[1; 100]);
        assert!(try_append(&mut g, &[2; 100], 65_507));
        assert!(
            !try_append(&mut g, &[3; 101], 65_507),
            "larger than the segment"
        );
        assert!(try_append(&mut g, &[4; 50], 65_507), "a shorter last one");
        assert!(
            !try_append(&mut g, &[5; 50], 65_507),
            "nothing after the shorter one"
        );
        assert_eq!(g.segments, 3);
        let sizes: Vec<usize> = g.datagrams().map(<[u8]>::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);

        g.start(to, &[1; 10]);
        for _ in 1..GSO_SEGMENTS_MAX {
            assert!(try_append(&mut g, &[1; 10], 65_507));
        }
        assert!(!try_append(&mut g, &[1; 10], 65_507), "64 segments at most");

        g.start(to, &[1; 30_000]);
        assert!(try_append(&mut g, &[1; 30_000], 65_507));
        assert!(!try_append(&mut g, &[1; 30_000], 65_507), "64 KiB at most");

        g.start(to, &[]);
        assert!(!try_append(&mut g, &[], 65_507), "empty datagrams go alone");
        g.start(to, &[1; 2000]);
        assert!(
            !try_append(&mut g, &[1; 2000], 1472),
            "above the segment limit"
        );
    }

    #[test]
    fn control_messages_round_trip() {
        let gso = GsoControl::new(1200);
        assert_eq!(gso.0.len(), 24);
        // A UDP_GRO message has the same layout with a 4-byte value.
        let mut control = [0u8; 48];
        control[..8].copy_from_slice(&20usize.to_ne_bytes());
        control[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        control[24..32].copy_from_slice(&20usize.to_ne_bytes());
        control[32..36].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        control[36..40].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        control[40..44].copy_from_slice(&1400i32.to_ne_bytes());
        assert_eq!(gro_segment_len(&control), Some(1400));
        assert_eq!(gro_segment_len(&control[..24]), None);
        assert_eq!(gro_segment_len(&[0xff; 40]), None, "garbage is ignored");
    }

    #[test]
    fn sockaddr_parse_reads_what_the_kernel_writes() {
        // struct sockaddr_in: family (host order), port (network order), address.
        let mut v4 = Vec::new();
        v4.extend((libc::AF_INET as u16).to_ne_bytes());
        v4.extend(4242u16.to_be_bytes());
        v4.extend([127, 0, 0, 1]);
        v4.extend([0; 8]);
        assert_eq!(sockaddr_parse(&v4), Some("127.0.0.1:4242".parse().unwrap()));
        // struct sockaddr_in6: family, port, flow info, address, scope id.
        let mut v6 = Vec::new();
        v6.extend((libc::AF_INET6 as u16).to_ne_bytes());
        v6.extend(7u16.to_be_bytes());
        v6.extend(0u32.to_be_bytes());
        v6.extend("fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend(2u32.to_ne_bytes());
        assert_eq!(sockaddr_parse(&v6), Some("[fe80::1%2]:7".parse().unwrap()));
        assert_eq!(sockaddr_parse(&v6[..27]), None, "short");
        assert_eq!(sockaddr_parse(&[0; 3]), None);
        assert_eq!(sockaddr_parse(&[0; 32]), None, "AF_UNSPEC");
    }
}
