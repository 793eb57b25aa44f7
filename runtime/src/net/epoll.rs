//! The epoll backend: a non-blocking socket, `recvmmsg`/`sendmmsg` in batches,
//! `epoll_wait` on the socket and the waker's eventfd.
//!
//! `unsafe` here is the system calls `recvmmsg`, `sendmmsg` and one
//! `epoll_ctl`, which take raw pointers; the headers are built on the stack
//! for each call, so every pointer in them is to memory borrowed for the
//! call's whole duration.

#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll as EpollFd, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::SockaddrLike;

use super::{
    Config, GsoControl, RECV_BATCH_MAX, RECV_CONTROL_LEN, RecvTally, SEND_BATCH_MAX,
    SEND_QUEUE_BYTES_MAX, SendError, SendGroup, Waker, classify_send_error, control_bytes, counter,
    gro_segment_len, recv_error_is_fatal, sockaddr_parse, timeout_ms,
};
use crate::actor::Counters;

/// Room for a source address: `sockaddr_in6` is 28 bytes.
const NAME_LEN: usize = 32;
const TOKEN_SOCKET: u64 = 0;
const TOKEN_WAKER: u64 = 1;
/// How many of the latest send groups `send` looks through for one to the
/// same destination (GSO): enough for "a few" destinations, bounded work.
const GSO_LOOKBACK: usize = 8;

pub(super) struct Epoll {
    socket: UdpSocket,
    epoll: EpollFd,
    /// The waker whose eventfd is in the epoll set: its id and descriptor.
    waker: Option<(u64, RawFd)>,
    pub(super) config: Config,
    pub(super) counters: Counters,
    /// Receive buffers, `RECV_BATCH_MAX` of `buf_len` bytes. Allocated zeroed
    /// (untouched pages cost no memory until a datagram lands in them).
    bufs: Box<[u8]>,
    buf_len: usize,
    /// Queued groups are `groups[..queued]`; the rest are spare, kept for
    /// their buffers.
    groups: Vec<SendGroup>,
    queued: usize,
    queued_datagrams: usize,
    queued_bytes: usize,
}

impl Epoll {
    pub(super) fn new(socket: UdpSocket, config: Config, counters: Counters) -> io::Result<Epoll> {
        let epoll = EpollFd::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        let event = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SOCKET);
        epoll.add(socket.as_fd(), event).map_err(io::Error::from)?;
        let buf_len = config.recv_payload_len();
        Ok(Epoll {
            socket,
            epoll,
            waker: None,
            config,
            counters,
            bufs: vec![0u8; RECV_BATCH_MAX * buf_len].into_boxed_slice(),
            buf_len,
            groups: Vec::new(),
            queued: 0,
            queued_datagrams: 0,
            queued_bytes: 0,
        })
    }

    #[cfg(test)]
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
        let gro = self.config.gro;
        let mut names = [[0u8; NAME_LEN]; RECV_BATCH_MAX];
        let mut controls = [[0u64; RECV_CONTROL_LEN / 8]; RECV_BATCH_MAX];
        let mut iovs: [libc::iovec; RECV_BATCH_MAX] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        for (iov, buf) in iovs
            .iter_mut()
            .zip(self.bufs.chunks_exact_mut(self.buf_len))
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
        }
        let mut hdrs: [libc::mmsghdr; RECV_BATCH_MAX] = std::array::from_fn(|_| empty_mmsghdr());
        for (i, hdr) in hdrs.iter_mut().enumerate() {
            let msg = &mut hdr.msg_hdr;
            msg.msg_name = names[i].as_mut_ptr().cast();
            msg.msg_namelen = NAME_LEN as libc::socklen_t;
            msg.msg_iov = &mut iovs[i];
            msg.msg_iovlen = 1;
            if gro {
                msg.msg_control = controls[i].as_mut_ptr().cast();
                msg.msg_controllen = RECV_CONTROL_LEN;
            }
        }
        // SAFETY: `hdrs` holds RECV_BATCH_MAX initialised headers, and that
        // is the length passed. Each points to a name buffer of `msg_namelen`
        // bytes, one iovec and (with GRO) a control buffer of
        // `msg_controllen` bytes, all locals of this function that outlive the
        // call; each iovec points to a distinct `buf_len`-byte chunk of
        // `self.bufs`, taken through `chunks_exact_mut` above and not
        // otherwise used until the call returns. The kernel writes only
        // within those bounds. The socket is non-blocking and no timeout is
        // passed: the call returns at once.
        let received = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                RECV_BATCH_MAX as libc::c_uint,
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
            self.counters.add(counter::RECV_ERROR, 1);
            return Ok(0);
        };
        let mut tally = RecvTally::default();
        let mut delivered = 0;
        for (i, hdr) in hdrs.iter().enumerate().take(received) {
            let msg = &hdr.msg_hdr;
            let len = (hdr.msg_len as usize).min(self.buf_len);
            let payload = &self.bufs[i * self.buf_len..][..len];
            let name_len = (msg.msg_namelen as usize).min(NAME_LEN);
            let source = sockaddr_parse(&names[i][..name_len]);
            let segment = if gro {
                let control_len = msg.msg_controllen.min(RECV_CONTROL_LEN);
                gro_segment_len(&control_bytes(&controls[i])[..control_len])
            } else {
                None
            };
            let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
            delivered += tally.deliver(
                source,
                payload,
                truncated,
                segment,
                self.config.datagram_size_max,
                on_datagram,
            );
        }
        tally.add_to(&mut self.counters);
        Ok(delivered)
    }

    pub(super) fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > wire::MESSAGE_SIZE_MAX {
            self.counters.add(counter::SEND_TOO_LARGE, 1);
            return Ok(());
        }
        let segment_max = self.config.gso_segment_max;
        let appended = self.config.gso
            && self.groups[..self.queued]
                .iter_mut()
                .rev()
                .take(GSO_LOOKBACK)
                .find(|g| g.to == to)
                .is_some_and(|g| g.try_append(bytes, segment_max));
        if !appended {
            if self.queued == self.groups.len() {
                self.groups.push(SendGroup::new());
            }
            self.groups[self.queued].start(to, bytes);
            self.queued += 1;
        }
        self.queued_datagrams += 1;
        self.queued_bytes += bytes.len();
        if self.queued_datagrams >= SEND_BATCH_MAX || self.queued_bytes >= SEND_QUEUE_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
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

    pub(super) fn wait(&mut self, timeout: Duration, waker: &Waker) -> io::Result<()> {
        if self.waker.map(|(id, _)| id) != Some(waker.id()) {
            if let Some((_, fd)) = self.waker.take() {
                // The previous waker's eventfd leaves the set. If it was
                // closed, the kernel removed it already, and its number is
                // now another file's or none: the call fails harmlessly
                // (ENOENT, EBADF). It cannot be the socket's, which was open
                // all along.
                // SAFETY: EPOLL_CTL_DEL reads no event (a null pointer is
                // allowed since Linux 2.6.9); no memory is passed.
                let _ = unsafe {
                    libc::epoll_ctl(
                        self.epoll.0.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        fd,
                        std::ptr::null_mut(),
                    )
                };
            }
            let event = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKER);
            match self.epoll.add(waker.borrowed_fd(), event) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("epoll add waker: {e}"),
                    ));
                }
            }
            self.waker = Some((waker.id(), waker.fd()));
        }
        let timeout = EpollTimeout::try_from(timeout_ms(timeout)).unwrap_or(EpollTimeout::MAX);
        let mut events = [EpollEvent::empty(); 2];
        // EINTR is a spurious return, which callers tolerate. (It happens:
        // an io_uring dropped on this thread signals it with task work
        // some milliseconds later, as its teardown runs.)
        match self.epoll.wait(&mut events, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("epoll_wait: {e}"),
            )),
        }
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
