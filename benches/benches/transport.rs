//! UDP packet rate on loopback: 64-byte datagrams from a sender thread to a
//! receiver thread, delivered datagrams per second, for plain std sockets and
//! for each transport backend, with and without GSO/GRO.
//!
//! `*_mixed_sizes`: datagrams of 64 to 71 bytes, which GSO can hardly ever
//! coalesce (equal sizes only), to show its cost where it does not help.
//!
//! The sender sends as fast as it can, for the whole measurement (datagrams
//! the receiver's socket has no room for are dropped by the kernel); the
//! receiver is the bench thread and times how long it takes to be handed a
//! number of datagrams. The transports' receivers spin on `recv` (busy
//! polling, a core each), their senders queue 64 datagrams and flush. The
//! reference figures for this kind of machine are in docs/MACHINE.md (loopback, 64 B).
//!
//! `transport/hold_queue_64B`: what the user-space WAN emulation
//! (`runtime::net::link`) costs the sending thread. The same sends (64-byte
//! datagrams, 64 per flush, GSO on as deployed, to a socket nobody reads)
//! without emulation, through the hold queue with nothing to wait for (a
//! rate limit too high to pace: every datagram is held, paced and released
//! on the next flush), and with a 2 ms delay (the queue holds a few
//! thousand datagrams in steady state). Time per datagram sent, release
//! included; the figures are in docs/ARCHITECTURE.md.
//!
//! Run with `cargo bench -p benches --bench transport`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use runtime::net::{Options, SEND_BATCH_MAX, Transport};
use wire::control::{LINK_RATE_BPS_MAX, LinkEmulation, TransportKind};

const DATAGRAM_LEN: usize = 64;
/// Datagrams received per timed iteration.
const CHUNK: u64 = 10_000;
/// A receiver that gets nothing for this long means a broken set-up: the
/// bench panics rather than hang.
const STALL_MAX: Duration = Duration::from_secs(2);
const LOCALHOST: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

#[derive(Clone, Debug)]
enum Mode {
    /// `send_to` in a loop; blocking `recv_from`.
    Std,
    /// A transport on each side; the receiver's options may differ (no GRO
    /// on a GSO sender's receiver, to see GSO alone).
    Transport {
        kind: TransportKind,
        sender: Options,
        receiver: Options,
        /// Datagrams of 64 to 71 bytes, growing: GSO can (almost) never
        /// coalesce them, which shows what GSO costs when it does not help.
        mixed_sizes: bool,
    },
}

fn modes() -> Vec<(&'static str, Mode)> {
    let plain = Options::default();
    let gso = Options {
        gso: true,
        ..Options::default()
    };
    let gro = Options {
        gro: true,
        ..Options::default()
    };
    let one_shot = Options {
        multishot: false,
        ..Options::default()
    };
    let transport = |kind, sender: &Options, receiver: &Options| Mode::Transport {
        kind,
        sender: sender.clone(),
        receiver: receiver.clone(),
        mixed_sizes: false,
    };
    let mixed = |kind, sender: &Options, receiver: &Options| Mode::Transport {
        kind,
        sender: sender.clone(),
        receiver: receiver.clone(),
        mixed_sizes: true,
    };
    use TransportKind::{Epoll, IoUring};
    vec![
        ("std_send_to_recv_from", Mode::Std),
        ("epoll", transport(Epoll, &plain, &plain)),
        ("io_uring", transport(IoUring, &plain, &plain)),
        (
            "io_uring_one_shot_recv",
            transport(IoUring, &plain, &one_shot),
        ),
        ("epoll_mixed_sizes", mixed(Epoll, &plain, &plain)),
        ("epoll_gso_mixed_sizes", mixed(Epoll, &gso, &gro)),
        ("epoll_gso", transport(Epoll, &gso, &plain)),
        ("epoll_gso_gro", transport(Epoll, &gso, &gro)),
        ("io_uring_gso", transport(IoUring, &gso, &plain)),
        ("io_uring_gso_gro", transport(IoUring, &gso, &gro)),
    ]
}

/// The sending thread, stopped and joined on drop.
struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    fn spawn(mode: &Mode, to: SocketAddr) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let mode = mode.clone();
        let thread = std::thread::spawn(move || {
            let payload = [7u8; DATAGRAM_LEN];
            match mode {
                Mode::Std => {
                    let socket = UdpSocket::bind(LOCALHOST).unwrap();
                    while !stopping.load(Ordering::Relaxed) {
                        for _ in 0..SEND_BATCH_MAX {
                            let _ = socket.send_to(&payload, to);
                        }
                    }
                }
                Mode::Transport {
                    kind,
                    sender,
                    mixed_sizes,
                    ..
                } => {
                    let mut t = Transport::bind_with(LOCALHOST, kind, &sender).unwrap();
                    let payload = [7u8; DATAGRAM_LEN + 8];
                    while !stopping.load(Ordering::Relaxed) {
                        for i in 0..SEND_BATCH_MAX {
                            let len = DATAGRAM_LEN + if mixed_sizes { i % 8 } else { 0 };
                            t.send(to, &payload[..len]).unwrap();
                        }
                        t.flush().unwrap();
                    }
                }
            }
        });
        Sender {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

enum Receiver {
    Std(UdpSocket),
    Transport(Transport),
}

impl Receiver {
    fn bind(mode: &Mode) -> Receiver {
        match mode {
            Mode::Std => {
                let socket = UdpSocket::bind(LOCALHOST).unwrap();
                socket.set_read_timeout(Some(STALL_MAX)).unwrap();
                Receiver::Std(socket)
            }
            Mode::Transport { kind, receiver, .. } => {
                let t = Transport::bind_with(LOCALHOST, *kind, receiver).unwrap();
                assert_eq!(t.kind(), *kind);
                Receiver::Transport(t)
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Receiver::Std(socket) => socket.local_addr().unwrap(),
            Receiver::Transport(t) => t.local_addr(),
        }
    }

    /// Receives until `n` datagrams were handed over.
    fn receive(&mut self, n: u64) {
        let mut got = 0;
        match self {
            Receiver::Std(socket) => {
                let mut buf = [0u8; 2048];
                while got < n {
                    socket
                        .recv_from(&mut buf)
                        .expect("a datagram within the stall limit");
                    got += 1;
                }
            }
            Receiver::Transport(t) => {
                let mut last = Instant::now();
                while got < n {
                    let received = t.recv(|_, bytes| debug_assert!(bytes.len() >= DATAGRAM_LEN));
                    let received = received.unwrap() as u64;
                    if received > 0 {
                        got += received;
                        last = Instant::now();
                    } else {
                        assert!(last.elapsed() < STALL_MAX, "receiver stalled");
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

fn transport(c: &mut Criterion) {
    let mut group = c.benchmark_group("transport/loopback_64B");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(15)
        .throughput(Throughput::Elements(CHUNK));
    for (name, mode) in modes() {
        let mut receiver = Receiver::bind(&mode);
        let sender = Sender::spawn(&mode, receiver.local_addr());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                receiver.receive(iters * CHUNK);
                started.elapsed()
            })
        });
        drop(sender);
        if let Receiver::Transport(t) = &receiver {
            eprintln!("{name}: receiver counters {:?}", t.counters());
        }
    }
    group.finish();
}

/// The sending thread's cost with and without the hold queue (see the
/// module docs).
fn hold_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("transport/hold_queue_64B");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(15)
        .throughput(Throughput::Elements(CHUNK));
    let cases = [
        ("no_emulation", LinkEmulation::default()),
        (
            "held_zero_delay",
            LinkEmulation {
                rate_bps: Some(LINK_RATE_BPS_MAX),
                ..LinkEmulation::default()
            },
        ),
        (
            "held_2ms_delay",
            LinkEmulation {
                delay_us: 2_000,
                ..LinkEmulation::default()
            },
        ),
    ];
    let sink = UdpSocket::bind(LOCALHOST).unwrap();
    let to = sink.local_addr().unwrap();
    let options = Options {
        gso: true,
        ..Options::default()
    };
    let payload = [7u8; DATAGRAM_LEN];
    for (name, link) in cases {
        let mut t = Transport::bind_with(LOCALHOST, TransportKind::Auto, &options).unwrap();
        t.emulate(link, 1);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters * CHUNK / SEND_BATCH_MAX as u64 {
                    for _ in 0..SEND_BATCH_MAX {
                        t.send(to, &payload).unwrap();
                    }
                    t.flush().unwrap();
                }
                started.elapsed()
            })
        });
        let mut totals = runtime::actor::Counters::default();
        t.add_totals(&mut totals);
        eprintln!(
            "{name}: {:?} held at the end; counters {totals:?}",
            t.held()
        );
    }
    group.finish();
}

criterion_group!(benches, transport, hold_queue);
criterion_main!(benches);
