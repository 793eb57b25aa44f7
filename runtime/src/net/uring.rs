//! The io_uring backend.
//!
//! Set-up: `SINGLE_ISSUER | DEFER_TASKRUN`, created disabled (`R_DISABLED`)
//! and enabled by the first call that uses it, so the thread the transport is
//! moved to, not the one that bound it, becomes the ring's single issuer.
//! Kernels that refuse those flags get `COOP_TASKRUN`, then a plain ring.
//!
//! Receive: while busy, `recvmmsg` straight from the socket (the epoll
//! backend's `RecvBatch`). Only [`Uring::wait`] arms one multishot `recvmsg`
//! into a ring of provided buffers (each big enough for the largest datagram,
//! or a GRO run), so that a datagram ends the sleep; once awake it cancels it:
//! an armed receive keeps an entry on the socket's wait queue and takes each
//! datagram through poll task work, which costs more than the `recvmmsg`.
//! What the multishot took is delivered before the next `recvmmsg`, so
//! datagrams keep their order. Where the kernel lacks buffer rings or
//! multishot `recvmsg`, [`RECV_SLOTS`] one-shot `recvmsg`s stay armed, each
//! re-armed once its datagram is delivered. Completions are reaped into
//! `ready` and delivered from there; a buffer goes back to the kernel once its
//! datagrams are handed over.
//!
//! Send: the socket is registered as fixed file 0 where the kernel allows (no
//! descriptor lookup per send). Each queued datagram (or GSO run) sits in a
//! send slot that holds its bytes, destination, `iovec`, control message and
//! `msghdr`; `flush` pushes a `sendmsg` SQE per slot and enters the kernel
//! once. The slot is the kernel's until its completion is reaped; sends carry
//! `MSG_DONTWAIT`, so a full socket buffer completes at once with `EAGAIN`
//! (dropped and counted) rather than parking the send in the kernel.
//!
//! `recv` and `flush` enter the kernel with `GETEVENTS` and
//! `min_complete = 0`: with `DEFER_TASKRUN`, completion work runs only then,
//! on this thread, instead of interrupting it (docs/MACHINE.md: spinning on
//! the CQ without it is 3.6x slower). With `TASKRUN_FLAG` the kernel also
//! flags pending completion work in the SQ ring, and `recv` skips the system
//! call when there is none and nothing to submit. `wait` blocks in one
//! `io_uring_enter` with a timeout, with a poll on the waker's eventfd armed.
//!
//! # Memory shared with the kernel
//!
//! Everything the kernel reads or writes after a submission returns — receive
//! buffers, the buffer ring, `msghdr`s, `iovec`s, addresses, control messages,
//! send bytes — lives in heap allocations owned through [`Shared`] and
//! [`SharedSlice`]: raw pointers, never a Rust reference while the kernel may
//! touch the memory. Who owns what at any time:
//!
//! - a receive buffer is the kernel's while it is in the buffer ring (or
//!   named by an armed one-shot `recvmsg`), ours from the completion that
//!   names it until we give it back;
//! - a send slot is ours while free or queued, the kernel's from its SQE's
//!   push until its completion is reaped;
//! - the multishot `msghdr` template is never written after set-up.
//!
//! The allocations are freed only once nothing is in flight: `Drop` cancels
//! every request and waits (bounded) for their completions; if it cannot
//! prove that, it leaks the memory instead.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull, addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{EnterFlags, IoUring, cqueue, opcode, types};
use nix::sys::socket::SockaddrLike;

use super::epoll::RecvBatch;
use super::{
    Appended, Config, GsoControl, RECV_BATCH_MAX, RECV_CONTROL_LEN, RecvTally, SEND_BATCH_MAX,
    SEND_QUEUE_BYTES_MAX, SendError, SendGroup, Waker, classify_send_error, control_bytes, counter,
    gro_segment_len, recv_error_is_fatal, sockaddr_parse,
};
use crate::actor::Counters;

const SQ_ENTRIES: u32 = 256;
/// Room for every completion that can be outstanding at once (sends, one per
/// receive buffer, wakers) with slack: the CQ never overflows.
const CQ_ENTRIES: u32 = 1024;
/// Send slots: a full batch queued while the previous one is still in flight.
const SEND_SLOTS: usize = 2 * SEND_BATCH_MAX;
/// Provided receive buffers (a power of two, as the buffer ring wants).
const RECV_BUFFERS: usize = 128;
/// One-shot `recvmsg`s kept armed where multishot is not available; they use
/// the first receive buffers.
const RECV_SLOTS: usize = 32;
/// Room for a source address: `sockaddr_in6` is 28 bytes.
const NAME_LEN: usize = 32;
/// `struct io_uring_recvmsg_out`, which a multishot `recvmsg` writes at the
/// start of each buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// The buffer group id of the receive buffers.
const BUFFER_GROUP: u16 = 0;
/// How many of the latest queued slots `send` looks through for one to the
/// same destination (GSO).
const GSO_LOOKBACK: usize = 8;
/// How long `Drop` waits for cancelled requests to complete before it gives
/// up and leaks their memory.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a completion is for: the top byte of its `user_data`; the rest is an
/// index (a slot, a waker id).
const KIND_SHIFT: u32 = 56;
const KIND_SEND: u64 = 1;
const KIND_RECV_MULTI: u64 = 2;
const KIND_RECV_ONE: u64 = 3;
const KIND_WAKER: u64 = 4;
const KIND_CANCEL: u64 = 5;

fn user_data(kind: u64, index: u64) -> u64 {
    debug_assert!(index < 1 << KIND_SHIFT);
    kind << KIND_SHIFT | index
}

fn kind_of(user_data: u64) -> u64 {
    user_data >> KIND_SHIFT
}

fn index_of(user_data: u64) -> usize {
    (user_data & ((1 << KIND_SHIFT) - 1)) as usize
}

pub(super) struct Uring {
    /// Declared first: dropped (ring closed) before the memory below is freed.
    ring: IoUring,
    socket: UdpSocket,
    pub(super) config: Config,
    pub(super) counters: Counters,
    /// Created `R_DISABLED`: enabled by the first call that uses it.
    disabled: bool,
    /// The kernel flags pending completion work (`IORING_SQ_TASKRUN`).
    taskrun_flag: bool,
    /// The socket is registered as fixed file 0: sends name it by index, and
    /// the kernel skips looking up (and reference-counting) the descriptor
    /// for each one.
    fixed_file: bool,
    /// SQEs pushed whose last completion has not been reaped.
    inflight: usize,
    /// Reused vector the completion queue is drained into.
    reaped: Vec<Completion>,
    send_tally: SendTally,

    // Receive.
    /// `None`: one-shot `recvmsg`s.
    buf_ring: Option<BufRing>,
    multishot_armed: bool,
    /// A cancel of the armed multishot is in flight (see `wait`).
    multishot_cancelling: bool,
    /// Multishot mode, while busy: `recvmmsg` straight from the socket.
    batch: RecvBatch,
    /// A multishot receive has delivered something: an error after that is
    /// not "unsupported".
    multishot_worked: bool,
    /// One-shot slots not armed (their datagram waits in `ready`, or an arm
    /// failed).
    recv_idle: Vec<usize>,
    /// Receive completions reaped, not yet delivered; the buffers they name
    /// are ours until then.
    ready: VecDeque<Completion>,
    /// Bytes per receive buffer, and the payload room a one-shot gets.
    buf_len: usize,
    payload_len: usize,
    /// `msg_namelen`/`msg_controllen` of the multishot template, kept apart
    /// to parse its output without reading the shared template.
    multishot_hdr: libc::msghdr,
    bufs: SharedSlice<u8>,
    multishot_template: Shared<libc::msghdr>,
    recv_slots: SharedSlice<RecvSlot>,

    // Send.
    slots: SharedSlice<SendSlot>,
    free: Vec<usize>,
    queued: Vec<usize>,
    queued_datagrams: usize,
    queued_bytes: usize,

    /// The wakers whose eventfd has a poll armed, by id: one, unless the
    /// owner waits with several wakers in turn.
    waker_polls: Vec<u64>,
}

// SAFETY: the raw pointers inside (`Shared`, `SharedSlice`, the `msghdr`s)
// point into heap allocations this struct owns; moving the struct to another
// thread moves none of them, and nothing in it is tied to a thread by Rust's
// rules. The kernel ties the ring to its first user (`SINGLE_ISSUER`); a call
// from another thread then fails with `EEXIST`, an error, not unsoundness.
unsafe impl Send for Uring {}

#[derive(Clone, Copy, Debug)]
struct Completion {
    user_data: u64,
    result: i32,
    flags: u32,
}

#[derive(Debug, Default)]
struct SendTally {
    sent: u64,
    gso_sends: u64,
    full: u64,
    failed: u64,
    queue_full: u64,
    gso_fallbacks: u64,
}

/// A datagram (or GSO run) and everything its `sendmsg` points to.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    control: GsoControl,
    group: SendGroup,
}

/// A one-shot `recvmsg`: its header, and where the kernel writes the source
/// address and control messages. The payload goes to receive buffer `i`.
struct RecvSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: [u8; NAME_LEN],
    /// `u64`s: aligned for `cmsghdr`.
    control: [u64; RECV_CONTROL_LEN / 8],
}

/// `struct io_uring_buf`: one entry of a buffer ring.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// In entry 0, the ring's tail (`struct io_uring_buf_ring`).
    resv: u16,
}

/// The buffer ring: a page of entries, page-aligned as the kernel requires.
#[repr(C, align(4096))]
struct BufRingPage([BufEntry; RECV_BUFFERS]);

const _: () = assert!(size_of::<BufEntry>() == 16);
const _: () = assert!(RECV_BUFFERS.is_power_of_two() && RECV_BUFFERS <= 1 << 15);
const _: () = assert!(size_of::<BufRingPage>() == 4096);
const _: () = assert!(RECV_SLOTS <= RECV_BUFFERS && SEND_SLOTS < 1 << 16);

/// The provided-buffer ring: we add entries at `tail` and publish it; the
/// kernel takes them from its own head.
struct BufRing {
    page: Shared<BufRingPage>,
    /// Entries written; published to the kernel by [`BufRing::publish`].
    tail: u16,
}

impl BufRing {
    /// Writes an entry that gives buffer `bid` (at `addr`, `len` bytes) to
    /// the kernel, once published.
    fn push(&mut self, bid: u16, addr: u64, len: u32) {
        let index = usize::from(self.tail) & (RECV_BUFFERS - 1);
        let page = self.page.as_ptr();
        // SAFETY: `index` is in bounds. The entry at the tail is not the
        // kernel's: it reads entries from its head up to the published tail,
        // and the ring holds at most RECV_BUFFERS entries, all buffers we
        // gave and it has not handed back; we give back only buffers it
        // handed us, so the position at the tail has been consumed. Fields
        // are written through raw pointers, and `resv` (the tail, in entry 0)
        // is not touched here: the kernel may read it at any time.
        unsafe {
            let entry = addr_of_mut!((*page).0[index]);
            addr_of_mut!((*entry).addr).write(addr);
            addr_of_mut!((*entry).len).write(len);
            addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Hands every entry pushed so far to the kernel.
    fn publish(&self) {
        let page = self.page.as_ptr();
        // SAFETY: the tail is the `resv` field of entry 0 (offset 14, aligned
        // for u16, and `AtomicU16` has the layout of `u16`); the page lives
        // as long as `self`. The kernel reads it with acquire semantics, we
        // only ever access it through this atomic; the release store makes
        // the entries written before it visible to the kernel.
        let tail = unsafe { &*addr_of!((*page).0[0].resv).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Uring {
    /// Sets up the ring for `socket`; on failure hands the socket and
    /// counters back, for the epoll fallback.
    #[allow(clippy::result_large_err)]
    pub(super) fn new(
        socket: UdpSocket,
        config: Config,
        counters: Counters,
    ) -> Result<Uring, (io::Error, (UdpSocket, Counters))> {
        let setup = match setup_ring() {
            Ok(setup) => setup,
            Err(e) => return Err((e, (socket, counters))),
        };
        if !setup.ring.params().is_feature_ext_arg() {
            let e = io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel lacks IORING_FEAT_EXT_ARG (timed waits)",
            );
            return Err((e, (socket, counters)));
        }
        Ok(Uring::with_ring(setup, socket, config, counters))
    }

    fn with_ring(
        RingSetup {
            ring,
            disabled,
            taskrun_flag,
        }: RingSetup,
        socket: UdpSocket,
        config: Config,
        counters: Counters,
    ) -> Uring {
        let payload_len = config.recv_payload_len();
        let control_len = if config.gro { RECV_CONTROL_LEN } else { 0 };
        let buf_len = (RECVMSG_OUT_LEN + NAME_LEN + control_len + payload_len).next_multiple_of(64);
        // SAFETY (of the zeroed values): `msghdr` is a C struct of integers
        // and raw pointers; all-zero is a valid value of it.
        let mut template: libc::msghdr = unsafe { std::mem::zeroed() };
        template.msg_namelen = NAME_LEN as libc::socklen_t;
        template.msg_controllen = control_len;
        let mut uring = Uring {
            ring,
            socket,
            config,
            counters,
            disabled,
            taskrun_flag,
            fixed_file: false,
            inflight: 0,
            reaped: Vec::with_capacity(CQ_ENTRIES as usize),
            send_tally: SendTally::default(),
            buf_ring: None,
            multishot_armed: false,
            multishot_cancelling: false,
            batch: RecvBatch::new(payload_len, config.gro),
            multishot_worked: false,
            recv_idle: (0..RECV_SLOTS).collect(),
            ready: VecDeque::with_capacity(2 * RECV_BUFFERS),
            buf_len,
            payload_len,
            multishot_hdr: template,
            // Zeroed and large: the pages cost memory only once written.
            bufs: SharedSlice::new(vec![0u8; RECV_BUFFERS * buf_len].into_boxed_slice()),
            multishot_template: Shared::new(Box::new(template)),
            recv_slots: SharedSlice::new((0..RECV_SLOTS).map(|_| RecvSlot::new()).collect()),
            slots: SharedSlice::new((0..SEND_SLOTS).map(|_| SendSlot::new()).collect()),
            free: (0..SEND_SLOTS).rev().collect(),
            queued: Vec::with_capacity(SEND_SLOTS),
            queued_datagrams: 0,
            queued_bytes: 0,
            waker_polls: Vec::with_capacity(1),
        };
        uring.fixed_file = uring
            .ring
            .submitter()
            .register_files(&[uring.socket.as_raw_fd()])
            .is_ok();
        if uring.config.multishot {
            uring.buf_ring = uring.register_buf_ring();
            uring.config.multishot = uring.buf_ring.is_some();
        }
        uring
    }

    /// The buffer ring, filled with every receive buffer and registered; `None`
    /// where the kernel refuses (before 5.19).
    fn register_buf_ring(&mut self) -> Option<BufRing> {
        let mut buf_ring = BufRing {
            page: Shared::new(Box::new(BufRingPage(std::array::from_fn(|_| BufEntry {
                addr: 0,
                len: 0,
                bid: 0,
                resv: 0,
            })))),
            tail: 0,
        };
        for bid in 0..RECV_BUFFERS {
            buf_ring.push(bid as u16, self.buf_addr(bid), self.buf_len as u32);
        }
        buf_ring.publish();
        let ring_addr = buf_ring.page.as_ptr() as u64;
        // SAFETY: the ring is one page-aligned page of RECV_BUFFERS entries,
        // owned by `buf_ring`, which lives in `self` until `Drop`, and `Drop`
        // frees it only after every request is complete (or leaks it). Each
        // entry names a distinct `buf_len`-byte buffer inside `self.bufs`,
        // which the kernel may write while the entry is in the ring.
        let registered = unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                ring_addr,
                RECV_BUFFERS as u16,
                BUFFER_GROUP,
                0,
            )
        };
        registered.ok().map(|()| buf_ring)
    }

    pub(super) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound UDP socket has a local address")
    }

    pub(super) fn recv(
        &mut self,
        on_datagram: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        self.enable()?;
        let multishot = self.config.multishot;
        if !multishot {
            self.arm_recv();
        }
        if self.ready.len() < RECV_BATCH_MAX && self.kernel_has_work() {
            self.enter()?;
        }
        self.reap();
        let mut tally = RecvTally::default();
        let mut delivered = 0;
        let mut returned = false;
        let mut buffers = 0;
        // RECV_BATCH_MAX receive buffers (with GRO, each may carry many
        // datagrams), as `recvmmsg` does for the epoll backend.
        for _ in 0..RECV_BATCH_MAX {
            let Some(completion) = self.ready.pop_front() else {
                break;
            };
            match kind_of(completion.user_data) {
                KIND_RECV_MULTI => {
                    delivered += self.deliver_multishot(completion, &mut tally, on_datagram);
                    returned = true;
                    buffers += 1;
                }
                KIND_RECV_ONE => {
                    delivered += self.deliver_one_shot(completion, &mut tally, on_datagram)?;
                }
                _ => unreachable!("only receive completions are ready"),
            }
        }
        if returned && let Some(buf_ring) = &self.buf_ring {
            buf_ring.publish();
        }
        tally.add_to(&mut self.counters);
        if !multishot {
            // Re-armed now, submitted by the next enter.
            self.arm_recv();
        } else if self.ready.is_empty() {
            // Busy: straight from the socket. What the multishot took (it is
            // armed only around blocking, see `wait`) was delivered first, so
            // datagrams keep their order.
            delivered += self.batch.recv(
                &self.socket,
                RECV_BATCH_MAX - buffers,
                &self.config,
                &mut self.counters,
                on_datagram,
            )?;
        }
        Ok(delivered)
    }

    pub(super) fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > wire::MESSAGE_SIZE_MAX {
            self.counters.add(counter::SEND_TOO_LARGE, 1);
            return Ok(());
        }
        let Ok(()) = self.send_with(to, |buf| {
            buf.extend_from_slice(bytes);
            Ok::<(), Infallible>(())
        })?;
        Ok(())
    }

    /// Queues the datagram `write` appends to the buffer it is handed: the
    /// buffer of the send slot's group it goes out in, so it is written in
    /// place. Without a free slot, `write` is not called and the datagram is
    /// dropped and counted.
    pub(super) fn send_with<E>(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> io::Result<Result<(), E>> {
        let segment_max = self.config.gso_segment_max;
        // The latest slot to `to`, if the datagram may join its run.
        let run = if self.config.gso {
            let slots = &self.slots;
            // SAFETY: queued slots are ours (not in flight); no other
            // reference to them is alive.
            let group = |i: usize| &unsafe { &*slots.get(i) }.group;
            self.queued
                .iter()
                .rev()
                .take(GSO_LOOKBACK)
                .copied()
                .find(|&i| group(i).to == to)
                .filter(|&i| group(i).open(segment_max))
        } else {
            None
        };
        let len = match run {
            Some(run) => {
                // SAFETY: as above.
                let appended = unsafe { &mut *self.slots.get(run) }
                    .group
                    .append_with(write);
                match appended {
                    Err(error) => return Ok(Err(error)),
                    Ok(Appended::Joined(len)) => len,
                    Ok(Appended::Apart(start)) => {
                        let fresh = self.free_slot()?;
                        // SAFETY: `run` is queued and `fresh` was free: two
                        // distinct slots, both ours, no other reference to
                        // either alive.
                        let run = &mut unsafe { &mut *self.slots.get(run) }.group;
                        let moved = fresh.map(|i| {
                            let fresh = &mut unsafe { &mut *self.slots.get(i) }.group;
                            fresh.start(to, &run.bytes[start..]);
                            self.queued.push(i);
                            fresh.bytes.len()
                        });
                        run.bytes.truncate(start);
                        let Some(len) = moved else {
                            return Ok(Ok(())); // No slot: counted.
                        };
                        len
                    }
                }
            }
            None => {
                let Some(i) = self.free_slot()? else {
                    return Ok(Ok(())); // Counted.
                };
                // SAFETY: a free slot is ours; no other reference to it is
                // alive.
                let group = &mut unsafe { &mut *self.slots.get(i) }.group;
                if let Err(error) = group.start_with(to, write) {
                    self.free.push(i);
                    return Ok(Err(error));
                }
                self.queued.push(i);
                group.bytes.len()
            }
        };
        if len > wire::MESSAGE_SIZE_MAX {
            // Only a datagram that went to a slot of its own can be this
            // long (a run's segments are no longer than its first): the
            // last queued.
            let i = self.queued.pop().expect("just queued");
            self.free.push(i);
            self.counters.add(counter::SEND_TOO_LARGE, 1);
            return Ok(Ok(()));
        }
        self.queued_datagrams += 1;
        self.queued_bytes += len;
        if self.queued_datagrams >= SEND_BATCH_MAX || self.queued_bytes >= SEND_QUEUE_BYTES_MAX {
            self.flush()?;
        }
        Ok(Ok(()))
    }

    /// A free send slot, reaping the sends that completed if none is
    /// (sends complete at once, `MSG_DONTWAIT`); `None`, counted, if there
    /// is still none.
    fn free_slot(&mut self) -> io::Result<Option<usize>> {
        if self.free.is_empty() {
            self.enable()?;
            self.enter()?;
            self.reap();
        }
        let slot = self.free.pop();
        if slot.is_none() {
            self.counters.add(counter::SEND_QUEUE_FULL, 1);
        }
        Ok(slot)
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        self.enable()?;
        self.push_queued()?;
        self.enter()?;
        self.reap();
        if !self.queued.is_empty() {
            // Datagrams of GSO sends the kernel refused, queued one by one.
            self.push_queued()?;
            self.enter()?;
            self.reap();
        }
        Ok(())
    }

    pub(super) fn wait(&mut self, timeout: Duration, waker: &Waker) -> io::Result<()> {
        self.enable()?;
        if self.multishot_cancelling {
            // The multishot of the last wait is not gone yet: it cannot be
            // re-armed until it is. Return (spuriously) rather than block
            // with nothing watching the socket.
            self.enter()?;
            self.reap();
            if self.multishot_cancelling {
                return Ok(());
            }
        }
        self.arm_recv();
        self.reap();
        if !self.ready.is_empty() {
            return Ok(());
        }
        if !self.waker_polls.contains(&waker.id()) {
            let poll = opcode::PollAdd::new(types::Fd(waker.fd()), libc::POLLIN as u32)
                .build()
                .user_data(user_data(KIND_WAKER, waker.id()));
            // SAFETY: a poll points to no memory. The eventfd is open (the
            // waker is borrowed until the submission below), and the ring
            // holds its own reference to it from then on.
            if unsafe { self.push(&poll) }? {
                self.waker_polls.push(waker.id());
            }
        }
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        if let Err(e) = self.ring.submitter().submit_with_args(1, &args) {
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                Some(libc::EEXIST) => return Err(wrong_thread()),
                _ => return Err(e),
            }
        }
        self.reap();
        if self.config.multishot && self.multishot_armed {
            // Awake, so busy again: `recv` reads the socket with `recvmmsg`.
            // An armed multishot would keep a wait-queue entry on the socket
            // and take each datagram through poll task work (about 0.65 µs
            // a datagram), so it goes until the next wait.
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(user_data(
                KIND_RECV_MULTI,
                0,
            )))
            .build()
            .user_data(user_data(KIND_CANCEL, 0));
            // SAFETY: a cancel points to no memory.
            if let Ok(true) = unsafe { self.push(&cancel) } {
                self.multishot_cancelling = true;
                self.enter()?;
                self.reap();
            }
        }
        Ok(())
    }

    /// The address of receive buffer `bid`.
    fn buf_addr(&self, bid: usize) -> u64 {
        self.bufs.get(bid * self.buf_len) as u64
    }

    /// Enables a ring created disabled: the calling thread becomes its single
    /// issuer.
    fn enable(&mut self) -> io::Result<()> {
        if self.disabled {
            self.ring
                .submitter()
                .register_enable_rings()
                .map_err(|e| io::Error::new(e.kind(), format!("io_uring enable: {e}")))?;
            self.disabled = false;
        }
        Ok(())
    }

    /// Whether an enter would do anything: submit, run deferred completion
    /// work, or flush an overflowed CQ. Without `TASKRUN_FLAG` there is no
    /// telling, so yes.
    fn kernel_has_work(&mut self) -> bool {
        if !self.taskrun_flag {
            return true;
        }
        let sq = self.ring.submission();
        !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
    }

    /// Submits what is pushed and runs completion work, without waiting.
    fn enter(&mut self) -> io::Result<()> {
        let to_submit = self.ring.submission().len() as u32;
        // SAFETY: no argument is passed (null, and no EXT_ARG flag, so the
        // kernel reads no signal mask); the SQEs submitted were pushed with
        // their own safety arguments.
        let entered = unsafe {
            self.ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                0,
                EnterFlags::GETEVENTS.bits(),
                None,
            )
        };
        match entered {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // Interrupted, or the kernel is short of memory or CQ room:
                // the next call tries again.
                Some(libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                Some(libc::EEXIST) => Err(wrong_thread()),
                _ => Err(e),
            },
        }
    }

    /// Pushes an SQE, submitting first if the queue is full. `Ok(false)`: no
    /// room even then (the caller drops or retries later).
    ///
    /// # Safety
    ///
    /// Whatever `entry` points to must stay valid, and not be accessed in a
    /// way that conflicts with the operation, until its last completion is
    /// reaped.
    unsafe fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<bool> {
        for attempt in 0..2 {
            // SAFETY: passed on to our caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.inflight += 1;
                return Ok(true);
            }
            if attempt == 0 {
                self.enter()?;
                self.reap();
            }
        }
        Ok(false)
    }

    /// Pushes a `sendmsg` for every queued slot.
    fn push_queued(&mut self) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let queued = std::mem::take(&mut self.queued);
        for &i in &queued {
            let slot = self.slots.get(i);
            // SAFETY: a queued slot is ours until its SQE is pushed below, and
            // no other reference to it is alive. The pointers stored in the
            // header are to the slot's own fields and to its group's byte
            // buffer, which neither moves nor changes until the completion.
            unsafe {
                let s = &mut *slot;
                s.iov = libc::iovec {
                    iov_base: s.group.bytes.as_ptr().cast_mut().cast(),
                    iov_len: s.group.bytes.len(),
                };
                s.hdr = std::mem::zeroed();
                s.hdr.msg_name = s.group.addr.as_ptr().cast_mut().cast();
                s.hdr.msg_namelen = s.group.addr.len();
                s.hdr.msg_iov = addr_of_mut!(s.iov);
                s.hdr.msg_iovlen = 1;
                if let Some(control) = s.group.gso_control() {
                    s.control = control;
                    s.hdr.msg_control = addr_of_mut!(s.control).cast();
                    s.hdr.msg_controllen = size_of::<GsoControl>();
                }
            }
            // SAFETY: `slot` is in bounds (from `get`); no reference is made.
            let hdr = unsafe { addr_of!((*slot).hdr) };
            let entry = if self.fixed_file {
                opcode::SendMsg::new(types::Fixed(0), hdr)
                    .flags(libc::MSG_DONTWAIT as u32)
                    .build()
            } else {
                opcode::SendMsg::new(types::Fd(fd), hdr)
                    .flags(libc::MSG_DONTWAIT as u32)
                    .build()
            }
            .user_data(user_data(KIND_SEND, i as u64));
            // SAFETY: the slot (header, iovec, control, address, bytes) is
            // the kernel's from here until `on_send_done` reaps the
            // completion; nothing touches it meanwhile (it is in neither
            // `free` nor `queued`), and it is freed only when nothing is in
            // flight.
            if !unsafe { self.push(&entry) }? {
                // SAFETY: not pushed, so still ours.
                let segments = unsafe { &*slot }.group.segments as u64;
                self.send_tally.queue_full += segments;
                self.free.push(i);
            }
        }
        // Reaping (when the SQ was full) may have queued datagrams of refused
        // GSO sends meanwhile: they stay queued, for the next push.
        let mut queued = queued;
        queued.clear();
        let requeued = std::mem::replace(&mut self.queued, queued);
        self.queued.extend(requeued);
        self.queued_datagrams = self.queued.len();
        self.queued_bytes = 0;
        Ok(())
    }

    /// Arms the receive if it is not: the multishot (when a buffer is in the
    /// ring for it), or every idle one-shot slot.
    fn arm_recv(&mut self) {
        let fd = self.socket.as_raw_fd();
        if self.config.multishot {
            let held = self.ready.len();
            if self.multishot_armed || held >= RECV_BUFFERS {
                return;
            }
            let entry = opcode::RecvMsgMulti::new(
                types::Fd(fd),
                self.multishot_template.as_ptr(),
                BUFFER_GROUP,
            )
            .build()
            .user_data(user_data(KIND_RECV_MULTI, 0));
            // SAFETY: the template lives until nothing is in flight and is
            // never written after set-up; the buffers it receives into are
            // the buffer ring's (see `register_buf_ring`).
            if let Ok(true) = unsafe { self.push(&entry) } {
                self.multishot_armed = true;
            }
            return;
        }
        while let Some(i) = self.recv_idle.pop() {
            let slot = self.recv_slots.get(i);
            let buf = self.bufs.get(i * self.buf_len);
            let control_len = if self.config.gro { RECV_CONTROL_LEN } else { 0 };
            // SAFETY: an idle slot is ours; no reference to it is alive. Its
            // header points to its own fields and to receive buffer `i`
            // (`payload_len` <= `buf_len` bytes), which no one else uses in
            // one-shot mode.
            unsafe {
                let s = &mut *slot;
                s.iov = libc::iovec {
                    iov_base: buf.cast(),
                    iov_len: self.payload_len,
                };
                s.hdr = std::mem::zeroed();
                s.hdr.msg_name = addr_of_mut!(s.name).cast();
                s.hdr.msg_namelen = NAME_LEN as libc::socklen_t;
                s.hdr.msg_iov = addr_of_mut!(s.iov);
                s.hdr.msg_iovlen = 1;
                if control_len > 0 {
                    s.hdr.msg_control = addr_of_mut!(s.control).cast();
                    s.hdr.msg_controllen = control_len;
                }
            }
            // MSG_TRUNC: the result is the datagram's real length, so an
            // oversized one is seen as such.
            // SAFETY: `slot` is in bounds (from `get`); no reference is made.
            let hdr = unsafe { addr_of_mut!((*slot).hdr) };
            let entry = opcode::RecvMsg::new(types::Fd(fd), hdr)
                .flags(libc::MSG_TRUNC as u32)
                .build()
                .user_data(user_data(KIND_RECV_ONE, i as u64));
            // SAFETY: the slot and its buffer are the kernel's until the
            // completion is delivered (`deliver_one_shot`), which alone puts
            // the slot back in `recv_idle`.
            if !matches!(unsafe { self.push(&entry) }, Ok(true)) {
                self.recv_idle.push(i);
                return;
            }
        }
    }

    /// Drains the completion queue: finishes sends and wakers, sets receive
    /// completions aside in `ready`.
    fn reap(&mut self) {
        let mut reaped = std::mem::take(&mut self.reaped);
        reaped.extend(self.ring.completion().map(|cqe| Completion {
            user_data: cqe.user_data(),
            result: cqe.result(),
            flags: cqe.flags(),
        }));
        for &completion in &reaped {
            self.on_completion(completion);
        }
        reaped.clear();
        self.reaped = reaped;
        let tally = std::mem::take(&mut self.send_tally);
        for (name, n) in [
            (counter::SENT, tally.sent),
            (counter::SEND_BUFFER_FULL, tally.full),
            (counter::SEND_FAILED, tally.failed),
            (counter::SEND_QUEUE_FULL, tally.queue_full),
            (counter::GSO_FALLBACK, tally.gso_fallbacks),
            (counter::GSO_SENDS, tally.gso_sends),
        ] {
            if n > 0 {
                self.counters.add(name, n);
            }
        }
    }

    fn on_completion(&mut self, c: Completion) {
        match kind_of(c.user_data) {
            KIND_SEND => {
                self.inflight -= 1;
                self.on_send_done(index_of(c.user_data), c.result);
            }
            KIND_RECV_MULTI => {
                if !cqueue::more(c.flags) {
                    self.inflight -= 1;
                    self.multishot_armed = false;
                    self.multishot_cancelling = false;
                }
                if cqueue::buffer_select(c.flags).is_some() {
                    self.ready.push_back(c);
                } else if c.result < 0 {
                    self.on_multishot_error(-c.result);
                }
            }
            KIND_RECV_ONE => {
                self.inflight -= 1;
                self.ready.push_back(c);
            }
            KIND_WAKER => {
                self.inflight -= 1;
                let id = index_of(c.user_data) as u64;
                self.waker_polls.retain(|&armed| armed != id);
            }
            KIND_CANCEL => self.inflight -= 1,
            kind => unreachable!("completion of unknown kind {kind}"),
        }
    }

    fn on_multishot_error(&mut self, errno: i32) {
        match errno {
            // The buffer ring ran dry: the datagrams wait in the socket until
            // buffers come back and the receive is re-armed.
            libc::ENOBUFS => {}
            // Cancelled by `Drop`.
            libc::ECANCELED => {}
            // A kernel with buffer rings but without multishot `recvmsg`
            // (5.19): fall back to one-shot receives. Nothing was received
            // into the ring, so none of its buffers is ours; unregistered, it
            // hands none out again, and the one-shot slots may use them.
            libc::EINVAL | libc::EOPNOTSUPP if !self.multishot_worked => {
                let submitter = self.ring.submitter();
                match submitter.unregister_buf_ring(BUFFER_GROUP) {
                    Ok(()) => self.config.multishot = false,
                    Err(_) => self.counters.add(counter::RECV_ERROR, 1),
                }
            }
            _ => self.counters.add(counter::RECV_ERROR, 1),
        }
    }

    fn on_send_done(&mut self, i: usize, result: i32) {
        let slot = self.slots.get(i);
        // SAFETY: this is the slot's completion: the kernel is done with it,
        // and it is in neither `free` nor `queued`, so no other reference to
        // it exists.
        let s = unsafe { &*slot };
        let segments = s.group.segments as u64;
        if result >= 0 {
            self.send_tally.sent += segments;
            self.send_tally.gso_sends += u64::from(segments > 1);
        } else {
            match classify_send_error(-result, s.group.segments) {
                SendError::Full => self.send_tally.full += segments,
                SendError::Failed | SendError::Fatal => self.send_tally.failed += segments,
                SendError::Gso { disable } => {
                    self.send_tally.gso_fallbacks += 1;
                    self.config.on_gso_refused(s.group.segment_len, disable);
                    for datagram in s.group.datagrams() {
                        let Some(j) = self.free.pop() else {
                            self.send_tally.queue_full += 1;
                            continue;
                        };
                        // SAFETY: `j` was free, so ours, and it is not `i`
                        // (which is not in `free`): the two references do
                        // not overlap.
                        unsafe { &mut *self.slots.get(j) }
                            .group
                            .start(s.group.to, datagram);
                        self.queued.push(j);
                    }
                }
            }
        }
        self.free.push(i);
    }

    /// Hands over the datagrams of a multishot completion and gives its
    /// buffer back to the ring (published by the caller).
    fn deliver_multishot(
        &mut self,
        c: Completion,
        tally: &mut RecvTally,
        on_datagram: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> usize {
        let Some(bid) = cqueue::buffer_select(c.flags) else {
            return 0;
        };
        let bid = usize::from(bid);
        if bid >= RECV_BUFFERS {
            tally.errors += 1;
            return 0;
        }
        self.multishot_worked = true;
        let mut delivered = 0;
        match usize::try_from(c.result) {
            Err(_) => tally.errors += 1,
            Ok(len) => {
                let len = len.min(self.buf_len);
                // SAFETY: buffer `bid` is ours from this completion until it
                // is pushed back to the ring below; the kernel wrote its first
                // `len` bytes (the rest is zeroed or older data: initialised),
                // and it lies within `self.bufs`.
                let buf = unsafe {
                    std::slice::from_raw_parts(self.bufs.get(bid * self.buf_len).cast_const(), len)
                };
                match types::RecvMsgOut::parse(buf, &self.multishot_hdr) {
                    Err(()) => tally.errors += 1,
                    Ok(out) => {
                        let source = if out.is_name_data_truncated() {
                            None
                        } else {
                            sockaddr_parse(out.name_data())
                        };
                        let segment = if self.config.gro {
                            gro_segment_len(out.control_data())
                        } else {
                            None
                        };
                        let truncated = out.is_payload_truncated()
                            || out.incoming_payload_len() as usize > out.payload_data().len();
                        delivered = tally.deliver(
                            source,
                            out.payload_data(),
                            truncated,
                            segment,
                            self.config.datagram_size_max,
                            on_datagram,
                        );
                    }
                }
            }
        }
        let addr = self.buf_addr(bid);
        let len = self.buf_len as u32;
        if let Some(buf_ring) = &mut self.buf_ring {
            buf_ring.push(bid as u16, addr, len);
        }
        delivered
    }

    /// Hands over the datagram of a one-shot completion and re-arms its slot.
    fn deliver_one_shot(
        &mut self,
        c: Completion,
        tally: &mut RecvTally,
        on_datagram: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let i = index_of(c.user_data);
        self.recv_idle.push(i);
        let len = match usize::try_from(c.result) {
            Ok(len) => len,
            Err(_) => {
                let errno = -c.result;
                if recv_error_is_fatal(errno) {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                if errno != libc::ECANCELED && errno != libc::EAGAIN {
                    tally.errors += 1;
                }
                return Ok(0);
            }
        };
        // SAFETY: this is the slot's completion: the kernel is done with the
        // slot and its buffer `i`, which stay untouched until it is re-armed
        // (after this function). The buffer lies within `self.bufs`, and
        // `payload_len` <= `buf_len`.
        let (s, buf) = unsafe {
            (
                &*self.recv_slots.get(i),
                std::slice::from_raw_parts(
                    self.bufs.get(i * self.buf_len).cast_const(),
                    len.min(self.payload_len),
                ),
            )
        };
        let name_len = (s.hdr.msg_namelen as usize).min(NAME_LEN);
        let source = sockaddr_parse(&s.name[..name_len]);
        let segment = if self.config.gro {
            let control = control_bytes(&s.control);
            gro_segment_len(&control[..s.hdr.msg_controllen.min(RECV_CONTROL_LEN)])
        } else {
            None
        };
        let truncated = len > self.payload_len || s.hdr.msg_flags & libc::MSG_TRUNC != 0;
        Ok(tally.deliver(
            source,
            buf,
            truncated,
            segment,
            self.config.datagram_size_max,
            on_datagram,
        ))
    }

    /// Cancels everything in flight and waits, bounded, for the last
    /// completions. True when nothing is in flight any more.
    fn quiesce(&mut self) -> bool {
        if self.inflight == 0 {
            return true;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data(KIND_CANCEL, 0));
        // SAFETY: a cancel points to no memory.
        if !matches!(unsafe { self.push(&cancel) }, Ok(true)) {
            return false;
        }
        let deadline = Instant::now() + QUIESCE_TIMEOUT;
        while self.inflight > 0 && Instant::now() < deadline {
            let timespec = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&timespec);
            if let Err(e) = self.ring.submitter().submit_with_args(1, &args)
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                )
            {
                return false;
            }
            self.reap();
        }
        self.inflight == 0
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.quiesce() {
            if self.buf_ring.is_some() {
                let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
            }
        } else {
            // Requests may still be in flight (the ring was used from another
            // thread, or cancelling failed): the kernel may still write to or
            // read from this memory, so it must never be freed.
            self.bufs.leak();
            self.multishot_template.leak();
            self.recv_slots.leak();
            self.slots.leak();
            if let Some(buf_ring) = &mut self.buf_ring {
                buf_ring.page.leak();
            }
        }
    }
}

/// A ring, and how it was set up.
struct RingSetup {
    ring: IoUring,
    /// Created `R_DISABLED` (with `SINGLE_ISSUER | DEFER_TASKRUN`).
    disabled: bool,
    /// `TASKRUN_FLAG` took: the kernel flags pending completion work in the
    /// SQ ring, so an idle `recv` can skip the system call.
    taskrun_flag: bool,
}

/// The best ring the kernel accepts: `SINGLE_ISSUER | DEFER_TASKRUN` (6.1+),
/// else `COOP_TASKRUN` (5.19+), else plain; `TASKRUN_FLAG` with the first two
/// where accepted.
fn setup_ring() -> io::Result<RingSetup> {
    for taskrun_flag in [true, false] {
        let mut builder = IoUring::builder();
        builder
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .setup_cqsize(CQ_ENTRIES);
        if taskrun_flag {
            builder.setup_taskrun_flag();
        }
        if let Ok(ring) = builder.build(SQ_ENTRIES) {
            return Ok(RingSetup {
                ring,
                disabled: true,
                taskrun_flag,
            });
        }
    }
    for taskrun_flag in [true, false] {
        let mut builder = IoUring::builder();
        builder.setup_coop_taskrun().setup_cqsize(CQ_ENTRIES);
        if taskrun_flag {
            builder.setup_taskrun_flag();
        }
        if let Ok(ring) = builder.build(SQ_ENTRIES) {
            return Ok(RingSetup {
                ring,
                disabled: false,
                taskrun_flag,
            });
        }
    }
    let ring = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)?;
    Ok(RingSetup {
        ring,
        disabled: false,
        taskrun_flag: false,
    })
}

fn wrong_thread() -> io::Error {
    io::Error::other(
        "io_uring transport used from a thread other than the first one that used it \
         (the ring is SINGLE_ISSUER)",
    )
}

impl SendSlot {
    fn new() -> SendSlot {
        SendSlot {
            // SAFETY: all-zero is a valid `msghdr` (integers, null pointers).
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: ptr::null_mut(),
                iov_len: 0,
            },
            control: GsoControl::new(0),
            group: SendGroup::new(),
        }
    }
}

impl RecvSlot {
    fn new() -> RecvSlot {
        RecvSlot {
            // SAFETY: all-zero is a valid `msghdr` (integers, null pointers).
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: ptr::null_mut(),
                iov_len: 0,
            },
            name: [0; NAME_LEN],
            control: [0; RECV_CONTROL_LEN / 8],
        }
    }
}

/// A heap value shared with the kernel: owned here, reached only through a
/// raw pointer, freed on drop unless leaked.
struct Shared<T> {
    ptr: NonNull<T>,
    leaked: bool,
}

impl<T> Shared<T> {
    fn new(value: Box<T>) -> Shared<T> {
        Shared {
            ptr: NonNull::from(Box::leak(value)),
            leaked: false,
        }
    }

    fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Never frees the value: the kernel may still use it.
    fn leak(&mut self) {
        self.leaked = true;
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: `ptr` came from `Box::leak` in `new` and is freed once,
            // here; the owner drops this only when the kernel is done with it.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
    }
}

/// A heap slice shared with the kernel, like [`Shared`].
struct SharedSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    leaked: bool,
}

impl<T> SharedSlice<T> {
    fn new(values: Box<[T]>) -> SharedSlice<T> {
        let len = values.len();
        let ptr = NonNull::from(Box::leak(values)).cast::<T>();
        SharedSlice {
            ptr,
            len,
            leaked: false,
        }
    }

    /// A pointer to element `i`; panics if out of bounds (a bug).
    fn get(&self, i: usize) -> *mut T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        // SAFETY: in bounds of the allocation of `len` elements.
        unsafe { self.ptr.as_ptr().add(i) }
    }

    fn leak(&mut self) {
        self.leaked = true;
    }
}

impl<T> Drop for SharedSlice<T> {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: `ptr` and `len` came from `Box::leak` of a boxed slice
            // in `new`, freed once, here, when the kernel is done with it.
            drop(unsafe {
                Box::from_raw(ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::net::Options;

    fn bind(options: &Options) -> Option<Uring> {
        let mut counters = Counters::default();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let (socket, config) = super::super::bind_socket(addr, options, &mut counters).unwrap();
        Uring::new(socket, config, counters).ok()
    }

    /// On a kernel that has them (this machine's), the ring gets
    /// `DEFER_TASKRUN` and the multishot receive; forcing one-shot works.
    #[test]
    fn uses_deferred_taskrun_and_multishot_where_available() {
        let Some(uring) = bind(&Options::default()) else {
            // Straight to stderr: cargo shows it even for a passing test.
            use std::io::Write as _;
            let _ = writeln!(io::stderr(), "io_uring unavailable, skipped");
            return;
        };
        assert!(
            uring.disabled,
            "created R_DISABLED, so SINGLE_ISSUER|DEFER_TASKRUN took"
        );
        assert!(uring.config.multishot && uring.buf_ring.is_some());
        let one_shot = bind(&Options {
            multishot: false,
            ..Options::default()
        })
        .unwrap();
        assert!(!one_shot.config.multishot && one_shot.buf_ring.is_none());
    }

    /// With `TASKRUN_FLAG`, a datagram's arrival raises the flag, so an idle
    /// `recv` may skip the system call without missing it. (One-shot receives:
    /// they stay armed while busy; the multishot is armed only around waits.)
    #[test]
    fn taskrun_flag_signals_pending_work() {
        let Some(mut uring) = bind(&Options {
            multishot: false,
            ..Options::default()
        }) else {
            return;
        };
        assert!(uring.taskrun_flag);
        assert_eq!(uring.recv(&mut |_, _| {}).unwrap(), 0);
        assert_eq!(uring.recv(&mut |_, _| {}).unwrap(), 0);
        assert!(!uring.kernel_has_work(), "armed, nothing arrived");
        let plain = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        plain.send_to(b"x", uring.local_addr()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !uring.kernel_has_work() {
            assert!(Instant::now() < deadline, "flag never raised");
            std::hint::spin_loop();
        }
        let mut got = 0;
        while got == 0 && Instant::now() < deadline {
            got += uring.recv(&mut |_, _| {}).unwrap();
        }
        assert_eq!(got, 1);
    }

    /// UDP sends complete during the flush's own enter: every slot is free
    /// again when `flush` returns, so the slots never run out.
    #[test]
    fn sends_complete_at_flush() {
        let Some(mut uring) = bind(&Options::default()) else {
            return;
        };
        let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = sink.local_addr().unwrap();
        for round in 0..3 {
            for _ in 0..SEND_BATCH_MAX - 1 {
                uring.send(to, &[round; 100]).unwrap();
            }
            uring.flush().unwrap();
            assert_eq!(uring.free.len(), SEND_SLOTS);
            assert_eq!(uring.inflight, 0);
        }
        assert_eq!(
            uring.counters.get(counter::SENT),
            3 * (SEND_BATCH_MAX as u64 - 1)
        );
    }

    /// Dropping a used transport cancels its armed receive and poll and
    /// frees its memory (nothing left in flight).
    #[test]
    fn drop_quiesces() {
        let Some(mut uring) = bind(&Options {
            multishot: false,
            ..Options::default()
        }) else {
            return;
        };
        let waker = Waker::new().unwrap();
        uring.wait(Duration::from_millis(1), &waker).unwrap();
        assert!(uring.inflight >= 2, "receive and waker poll armed");
        assert!(uring.quiesce());
        assert_eq!(uring.inflight, 0);
    }

    /// The multishot receive is armed only while blocked: a wait arms it
    /// (and returns at once for a datagram already waiting), waking cancels
    /// it, and busy receives read the socket directly, in order.
    #[test]
    fn multishot_is_armed_only_around_waits() {
        let Some(mut uring) = bind(&Options::default()) else {
            return;
        };
        let waker = Waker::new().unwrap();
        let plain = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = uring.local_addr();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        for round in 0u8..4 {
            uring.wait(Duration::from_millis(1), &waker).unwrap();
            while uring.multishot_armed {
                assert!(Instant::now() < deadline, "multishot never cancelled");
                uring.wait(Duration::ZERO, &waker).unwrap();
            }
            for i in 0..10u8 {
                plain.send_to(&[round, i], to).unwrap();
            }
            // Some rounds block first: the wait must see the datagrams.
            if round % 2 == 1 {
                let started = Instant::now();
                uring.wait(Duration::from_secs(5), &waker).unwrap();
                assert!(
                    started.elapsed() < Duration::from_secs(4),
                    "slept past data"
                );
            }
            while got.len() < usize::from(round + 1) * 10 {
                assert!(Instant::now() < deadline, "lost datagrams: {got:?}");
                uring
                    .recv(&mut |_, bytes: &[u8]| got.push(bytes.to_vec()))
                    .unwrap();
            }
        }
        let want: Vec<Vec<u8>> = (0u8..4)
            .flat_map(|r| (0..10u8).map(move |i| vec![r, i]))
            .collect();
        assert_eq!(got, want);
    }
}
