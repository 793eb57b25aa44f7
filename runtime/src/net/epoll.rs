//! The epoll backend (named for the usual readiness API; it blocks in
//! `poll(2)`): a non-blocking socket, `recvmmsg`/`sendmmsg` in batches, and a
//! `poll` on the socket and the waker's eventfd only when the thread blocks.
//!
//! `unsafe` here is the system calls `recvmmsg` and `sendmmsg`, which take
//! raw pointers; the send headers are built on the stack for each call, so
//! every pointer in them is to memory borrowed for the call's whole duration.

#![allow(unsafe_code)]

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::SockaddrLike;

use super::{
    Appended, Config, GsoControl, RECV_BATCH_MAX, RECV_CONTROL_LEN, RecvTally, SEND_BATCH_MAX,
    SEND_QUEUE_BYTES_MAX, SendError, SendGroup, Waker, classify_send_error, control_bytes, counter,
    gro_segment_len, recv_error_is_fatal, sockaddr_parse, timeout_ms,
};
use crate::actor::Counters;

/// Room for a source address: `sockaddr_in6` is 28 bytes.
const NAME_LEN: usize = 32;
/// How many of the latest send groups `send` looks through for one to the
/// same destination (GSO): enough for "a few" destinations, bounded work.
const GSO_LOOKBACK: usize = 8;

pub(super) struct Epoll {
    socket: UdpSocket,
    pub(super) config: Config,
    pub(super) counters: Counters,
    /// The `recvmmsg` headers and everything they point to, built once.
    recv: RecvBatch,
    /// Queued groups are `groups[..queued]`; the rest are spare, kept for
    /// their buffers.
    groups: Vec<SendGroup>,
    queued: usize,
    queued_datagrams: usize,
    queued_bytes: usize,
}

impl Epoll {
    pub(super) fn new(socket: UdpSocket, config: Config, counters: Counters) -> io::Result<Epoll> {
        let recv = RecvBatch::new(config.recv_payload_len(), config.gro);
        Ok(Epoll {
            socket,
            config,
            counters,
            recv,
            groups: Vec::new(),
            queued: 0,
            queued_datagrams: 0,
            queued_bytes: 0,
        })
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
        self.recv.recv(
            &self.socket,
            RECV_BATCH_MAX,
            &self.config,
            &mut self.counters,
            on_datagram,
        )
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
    /// buffer of the send group it goes out in, so it is written in place.
    pub(super) fn send_with<E>(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> io::Result<Result<(), E>> {
        let segment_max = self.config.gso_segment_max;
        // The latest group to `to`, if the datagram may join its run.
        let run = if self.config.gso {
            (0..self.queued)
                .rev()
                .take(GSO_LOOKBACK)
                .find(|&i| self.groups[i].to == to)
                .filter(|&i| self.groups[i].open(segment_max))
        } else {
            None
        };
        if self.queued == self.groups.len() {
            self.groups.push(SendGroup::new());
        }
        let (queued, spare) = self.groups.split_at_mut(self.queued);
        let fresh = &mut spare[0];
        let len = match run.map(|i| &mut queued[i]) {
            Some(run) => match run.append_with(write) {
                Err(error) => return Ok(Err(error)),
                Ok(Appended::Joined(len)) => len,
                Ok(Appended::Apart(start)) => {
                    fresh.start(to, &run.bytes[start..]);
                    run.bytes.truncate(start);
                    self.queued += 1;
                    fresh.bytes.len()
                }
            },
            None => {
                if let Err(error) = fresh.start_with(to, write) {
                    return Ok(Err(error));
                }
                self.queued += 1;
                fresh.bytes.len()
            }
        };
        if len > wire::MESSAGE_SIZE_MAX {
            // Only a datagram that went to a group of its own can be this
            // long: a run's segments are no longer than its first.
            self.queued -= 1;
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

    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queued);
        self.queued_datagrams = 0;
        self.queued_bytes = 0;
        let (mut sent, mut full, mut failed, mut gso_sends) = (0u64, 0u64, 0u64, 0u64);
        let mut result = Ok(());
        let mut start = 0;
        while start < queued {
            let batch = &self.groups[start..queued];
            let errno = match send_groups(&self.socket, batch) {
                Ok(n) => {
                    sent += segments(&batch[..n]);
                    gso_sends += batch[..n].iter().filter(|g| g.segments > 1).count() as u64;
                    start += n;
                    continue;
                }
                Err(errno) => errno,
            };
            let group = &batch[0];
            match classify_send_error(errno, group.segments) {
                SendError::Full => {
                    // The socket's buffer is full: the rest of the batch would
                    // meet the same fate within microseconds.
                    full += segments(batch);
                    break;
                }
                SendError::Gso { disable } => {
                    self.counters.add(counter::GSO_FALLBACK, 1);
                    self.config.on_gso_refused(group.segment_len, disable);
                    let (s, f, x) = send_one_by_one(&self.socket, group);
                    sent += s;
                    full += f;
                    failed += x;
                }
                SendError::Failed => failed += group.segments as u64,
                SendError::Fatal => {
                    failed += segments(batch);
                    result = Err(io::Error::from_raw_os_error(errno));
                    break;
                }
            }
            start += 1;
        }
        for (name, n) in [
            (counter::SENT, sent),
            (counter::SEND_BUFFER_FULL, full),
            (counter::SEND_FAILED, failed),
            (counter::GSO_SENDS, gso_sends),
        ] {
            if n > 0 {
                self.counters.add(name, n);
            }
        }
        result
    }

    /// Blocks in `poll(2)` on the socket and the waker's eventfd. The socket
    /// sits on no wait queue while the thread is busy: an epoll set that held
    /// it for good would run its callback on every datagram that arrives (and
    /// every send's wake-up), about 0.4 µs a datagram on each side.
    pub(super) fn wait(&mut self, timeout: Duration, waker: &Waker) -> io::Result<()> {
        let timeout = PollTimeout::try_from(timeout_ms(timeout)).unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(waker.borrowed_fd(), PollFlags::POLLIN),
        ];
        // EINTR is a spurious return, which callers tolerate. (It happens:
        // an io_uring dropped on this thread signals it with task work
        // some milliseconds later, as its teardown runs.)
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("poll on socket and waker: {e}"),
            )),
        }
    }
}

/// The receive side of `recvmmsg`: headers, iovecs, name and control buffers
/// and payload buffers, allocated once and pointing into each other. Each
/// lives in its own heap allocation, so the pointers stay valid when the
/// struct moves. A call resets only the header fields the kernel wrote in the
/// previous call (`msg_namelen`, `msg_controllen`, `msg_flags`, `msg_len`),
/// in the entries it used.
pub(super) struct RecvBatch {
    hdrs: Box<[libc::mmsghdr]>,
    /// Kept alive for the headers, which point to them.
    _iovs: Box<[libc::iovec]>,
    names: Box<[[u8; NAME_LEN]]>,
    controls: Box<[[u64; RECV_CONTROL_LEN / 8]]>,
    /// `RECV_BATCH_MAX` payload buffers of `buf_len` bytes, allocated zeroed
    /// (untouched pages cost no memory until a datagram lands in them), and
    /// reached only through `bufs_ptr` once the iovecs point into them.
    _bufs: Box<[u8]>,
    bufs_ptr: *mut u8,
    buf_len: usize,
    /// Entries the last call filled (their fields need a reset).
    used: usize,
    gro: bool,
}

// SAFETY: the raw pointers point into heap allocations the struct owns;
// moving it to another thread moves none of them, and they are used only
// through `&mut self` (or `&self` for reading what the kernel wrote).
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(super) fn new(buf_len: usize, gro: bool) -> RecvBatch {
        let mut bufs = vec![0u8; RECV_BATCH_MAX * buf_len].into_boxed_slice();
        let bufs_ptr = bufs.as_mut_ptr();
        let mut names = vec![[0u8; NAME_LEN]; RECV_BATCH_MAX].into_boxed_slice();
        let mut controls = vec![[0u64; RECV_CONTROL_LEN / 8]; RECV_BATCH_MAX].into_boxed_slice();
        let mut iovs: Box<[libc::iovec]> = (0..RECV_BATCH_MAX)
            .map(|i| libc::iovec {
                // SAFETY: chunk `i` lies within the allocation of
                // RECV_BATCH_MAX * buf_len bytes.
                iov_base: unsafe { bufs_ptr.add(i * buf_len) }.cast(),
                iov_len: buf_len,
            })
            .collect();
        let mut hdrs: Box<[libc::mmsghdr]> = (0..RECV_BATCH_MAX).map(|_| empty_mmsghdr()).collect();
        for (i, hdr) in hdrs.iter_mut().enumerate() {
            let msg = &mut hdr.msg_hdr;
            msg.msg_name = names[i].as_mut_ptr().cast();
            msg.msg_iov = &mut iovs[i];
            msg.msg_iovlen = 1;
            if gro {
                msg.msg_control = controls[i].as_mut_ptr().cast();
            }
        }
        let mut batch = RecvBatch {
            hdrs,
            _iovs: iovs,
            names,
            controls,
            _bufs: bufs,
            bufs_ptr,
            buf_len,
            used: RECV_BATCH_MAX,
            gro,
        };
        batch.reset();
        batch
    }

    /// One `recvmmsg` of up to `max` (at most RECV_BATCH_MAX) buffers from
    /// `socket`, their datagrams handed to `on_datagram`: how many.
    pub(super) fn recv(
        &mut self,
        socket: &UdpSocket,
        max: usize,
        config: &Config,
        counters: &mut Counters,
        on_datagram: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let max = max.min(RECV_BATCH_MAX);
        if max == 0 {
            return Ok(0);
        }
        self.reset();
        // SAFETY: `self.hdrs` holds RECV_BATCH_MAX initialised headers, and
        // at most that is the length passed. Each points (see
        // `RecvBatch::new`) to its own name buffer of `msg_namelen` bytes, its
        // own iovec over a distinct `buf_len`-byte payload buffer and, with
        // GRO, its own control buffer of `msg_controllen` bytes: heap memory
        // `self` owns, which no reference covers while the kernel writes it.
        // The kernel writes only within those bounds. The socket is
        // non-blocking and no timeout is passed: the call returns at once.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let Ok(received) = usize::try_from(received) else {
            let errno = Errno::last_raw();
            if errno == libc::EAGAIN || errno == libc::EINTR {
                return Ok(0);
            }
            if recv_error_is_fatal(errno) {
                return Err(io::Error::from_raw_os_error(errno));
            }
            counters.add(counter::RECV_ERROR, 1);
            return Ok(0);
        };
        let mut tally = RecvTally::default();
        let mut delivered = 0;
        let received = received.min(max);
        self.used = received;
        for i in 0..received {
            let hdr = &self.hdrs[i];
            let msg = &hdr.msg_hdr;
            let len = (hdr.msg_len as usize).min(self.buf_len);
            // SAFETY: buffer `i` lies within the allocation and is
            // initialised (allocated zeroed, then written by the kernel); the
            // kernel is done with it until the next `recvmmsg`, and nothing
            // else writes it.
            let payload = unsafe { std::slice::from_raw_parts(self.buf(i).cast_const(), len) };
            let name_len = (msg.msg_namelen as usize).min(NAME_LEN);
            let source = sockaddr_parse(&self.names[i][..name_len]);
            let segment = if self.gro {
                let control_len = msg.msg_controllen.min(RECV_CONTROL_LEN);
                gro_segment_len(&control_bytes(&self.controls[i])[..control_len])
            } else {
                None
            };
            let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
            delivered += tally.deliver(
                source,
                payload,
                truncated,
                segment,
                config.datagram_size_max,
                on_datagram,
            );
        }
        tally.add_to(counters);
        Ok(delivered)
    }

    /// Restores the lengths the kernel overwrote in the last call (and one
    /// more entry, in case a failed one was touched).
    fn reset(&mut self) {
        let controllen = if self.gro { RECV_CONTROL_LEN } else { 0 };
        for hdr in &mut self.hdrs[..(self.used + 1).min(RECV_BATCH_MAX)] {
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
            hdr.msg_hdr.msg_controllen = controllen;
            hdr.msg_hdr.msg_flags = 0;
        }
        self.used = 0;
    }

    /// Payload buffer `i`.
    fn buf(&self, i: usize) -> *mut u8 {
        assert!(i < RECV_BATCH_MAX);
        // SAFETY: in bounds of the allocation of RECV_BATCH_MAX * buf_len.
        unsafe { self.bufs_ptr.add(i * self.buf_len) }
    }
}

fn segments(groups: &[SendGroup]) -> u64 {
    groups.iter().map(|g| g.segments as u64).sum()
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for
    // which all-zero bytes are a valid value (null pointers, zero lengths).
    unsafe { std::mem::zeroed() }
}

/// One `sendmmsg` of the first SEND_BATCH_MAX `groups`: how many left, or
/// the errno of the first, which did not.
fn send_groups(socket: &UdpSocket, groups: &[SendGroup]) -> Result<usize, i32> {
    let n = groups.len().min(SEND_BATCH_MAX);
    let mut iovs: [libc::iovec; SEND_BATCH_MAX] = std::array::from_fn(|_| libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    });
    let mut controls: [Option<GsoControl>; SEND_BATCH_MAX] = [None; SEND_BATCH_MAX];
    let mut hdrs: [libc::mmsghdr; SEND_BATCH_MAX] = std::array::from_fn(|_| empty_mmsghdr());
    for (i, group) in groups[..n].iter().enumerate() {
        iovs[i].iov_base = group.bytes.as_ptr().cast_mut().cast();
        iovs[i].iov_len = group.bytes.len();
        controls[i] = group.gso_control();
        let msg = &mut hdrs[i].msg_hdr;
        msg.msg_name = group.addr.as_ptr().cast_mut().cast();
        msg.msg_namelen = group.addr.len();
        msg.msg_iov = &mut iovs[i];
        msg.msg_iovlen = 1;
        if let Some(control) = &mut controls[i] {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control.0.len();
        }
    }
    sendmmsg(socket, &mut hdrs[..n])
}

/// The datagrams of a group the kernel refused as one GSO send, one by one:
/// `(sent, dropped as buffer full, dropped as failed)`. Rare: allocates.
fn send_one_by_one(socket: &UdpSocket, group: &SendGroup) -> (u64, u64, u64) {
    let (mut sent, mut full, mut failed) = (0, 0, 0);
    let mut iovs: Vec<libc::iovec> = group
        .datagrams()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr().cast_mut().cast(),
            iov_len: d.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs.iter().map(|_| empty_mmsghdr()).collect();
    for (hdr, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        hdr.msg_hdr.msg_name = group.addr.as_ptr().cast_mut().cast();
        hdr.msg_hdr.msg_namelen = group.addr.len();
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    let mut start = 0;
    while start < hdrs.len() {
        match sendmmsg(socket, &mut hdrs[start..]) {
            Ok(n) => {
                sent += n as u64;
                start += n;
            }
            Err(errno) if classify_send_error(errno, 1) == SendError::Full => {
                full += (hdrs.len() - start) as u64;
                break;
            }
            Err(_) => {
                failed += 1;
                start += 1;
            }
        }
    }
    (sent, full, failed)
}

/// `sendmmsg` of `hdrs`, retried on `EINTR`: how many left (at least one),
/// or the errno of the first, which did not.
fn sendmmsg(socket: &UdpSocket, hdrs: &mut [libc::mmsghdr]) -> Result<usize, i32> {
    if hdrs.is_empty() {
        return Ok(0);
    }
    loop {
        // SAFETY: `hdrs` is a slice of initialised headers and its length is
        // passed (at most SEND_BATCH_MAX or GSO_SEGMENTS_MAX, below
        // UIO_MAXIOV). The callers built each header to point to a socket
        // address of `msg_namelen` bytes, one iovec over bytes of a datagram
        // and optionally a control message of `msg_controllen` bytes, all
        // borrowed by the caller for longer than this call. The kernel reads
        // through them and writes only `msg_len` in the headers.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(n) {
            Ok(0) => return Err(libc::EAGAIN),
            Ok(n) => return Ok(n),
            Err(_) => match Errno::last_raw() {
                libc::EINTR => continue,
                errno => return Err(errno),
            },
        }
    }
}

/// How many datagrams the kernel dropped at `socket` for a full receive
/// buffer: `SO_MEMINFO`'s `SK_MEMINFO_DROPS`. `None` if the kernel does not
/// report it.
pub(super) fn socket_drops(socket: &UdpSocket) -> Option<u64> {
    let mut info = [0u32; 16];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a live buffer of `len` bytes that the kernel writes
    // at most `len` bytes into, and `len` is a live `socklen_t` it updates.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (result == 0 && len as usize >= (drops + 1) * size_of::<u32>()).then(|| u64::from(info[drops]))
}

/// Turns UDP checksums off on `socket` (`SO_NO_CHECK`): the kernel then
/// refuses GSO sends, which lets tests exercise the fallback.
#[cfg(test)]
pub(super) fn set_no_check_tx(socket: &UdpSocket) {
    let on: libc::c_int = 1;
    // SAFETY: the option value is a live `c_int` and its exact size is
    // passed; the kernel only reads it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "SO_NO_CHECK: {}", io::Error::last_os_error());
}
