//! Heap allocations per operation on the real runtime's hot path, counted by
//! a global allocator that wraps the system's.
//!
//! The unreplicated server (one thread) and a thread of closed-loop
//! benchmark clients run in this process over loopback, on the real
//! transport: first on io_uring (the default, `TransportKind::Auto`, where
//! the kernel allows it; skipped with a line saying so where it does not),
//! then on epoll. After a warm-up, in which every buffer, table and queue
//! grows to the size the load needs, the test counts the allocations every
//! thread of the process makes over a window of at least `WINDOW_OPS_MIN`
//! operations (on a machine too busy for that within `WINDOW_MAX`, at least
//! `CHECKED_OPS_MIN`) and asserts that they number at most
//! `WINDOW_ALLOCATIONS_MAX` in the whole window: the steady state allocates
//! nothing per operation. The bound is not zero because a few allocations
//! come with time, not with operations: a client thread's completion bins
//! (one per 10 ms) grow by doubling their vector, and one-off work of the
//! standard library or of a thread's first wake-up may land in the window.
//! One allocation per operation, or per hundred, breaks the bound within the
//! first few thousand operations of the window.
//!
//! Then two runs whose allocations per operation are printed, not asserted:
//! the unreplicated server with its stages on three threads (receive and
//! verify, protocol, send), where a receive buffer still held by datagrams
//! in the verify stage's queue when it fills is replaced by a new one (one
//! allocation per buffer's worth of datagrams, `runtime::deploy::ARENA_BYTES`),
//! and PBFT with n = 4 (each replica on one thread, the same clients, the
//! default transport), whose replicas build batches, certificates and logs
//! as the protocol goes, and whose messages copy what they carry out of the
//! datagram (see `wire::payload`): the figure to watch; HotStuff with n = 4
//! the same way; and VR with n = 3, whose requests are decoded out of each
//! datagram as PBFT's are, but carry no authenticator.
//!
//! Everything runs with spin-then-block idling, so it works with more
//! threads than cores (two cores run PBFT's five threads here). With
//! `ALLOC_BACKTRACES=N` set, the test also prints the `N` call stacks that
//! allocated most in each window (it is slower then, and asserts nothing),
//! to find what allocates.
//!
//! Run it with `cargo test --release -p protocols --test alloc_per_op`.
//!
//! A plain binary (`harness = false`): no test harness threads allocate
//! beside the ones measured. Arguments are ignored.

// Its key-value workload is not used here.
#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocols::app::NullApp;
use runtime::deploy::{
    ClientsSetup, OpFactory, ReplicaSetup, Running, spawn_clients, spawn_replica,
};
use runtime::net::Transport;
use runtime::{ClientId, ReplicaId, Rng};
use wire::control::{Idle, Load, Stage, ThreadMap, ThreadSpec, TransportKind};

use common::{LOCALHOST, free_addrs};

/// Closed-loop clients, on one thread: enough for batches of several
/// datagrams per system call each way.
const CLIENTS: u32 = 64;
const OP_SIZE: usize = 16;
/// Long enough that a retransmission means a lost datagram, not a slow one.
const RESEND: Duration = Duration::from_secs(1);
const IDLE: Idle = Idle::SpinThenBlock { spin_us: 50 };
/// The warm-up lasts at least this long and as many operations as the
/// window, at most `WINDOW_MAX`.
const WARMUP_MIN: Duration = Duration::from_millis(300);
/// The window lasts at least this long and until a system's operations
/// (`WINDOW_OPS_MIN` for the unreplicated one, `PBFT_WINDOW_OPS` for PBFT)
/// completed, unless it reaches `WINDOW_MAX` first.
const WINDOW_MIN: Duration = Duration::from_millis(500);
const WINDOW_OPS_MIN: u64 = 20_000;
const PBFT_WINDOW_OPS: u64 = 5_000;
const WINDOW_MAX: Duration = Duration::from_secs(10);
/// Operations the unreplicated window must have for its bound to be
/// checked: past this, a per-operation allocation cannot hide under it.
const CHECKED_OPS_MIN: u64 = 2_000;
/// The unreplicated run's allocations in the whole window at most (see the
/// module docs).
const WINDOW_ALLOCATIONS_MAX: u64 = 16;

fn main() {
    let backtraces = std::env::var("ALLOC_BACKTRACES")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    let mut kinds = Vec::new();
    match Transport::bind(SocketAddr::new(LOCALHOST, 0), TransportKind::IoUring) {
        Ok(_) => kinds.push(TransportKind::IoUring),
        Err(error) => println!("io_uring unavailable ({error}): epoll only"),
    }
    kinds.push(TransportKind::Epoll);

    for &kind in &kinds {
        let name = format!("unreplicated, {kind:?}");
        let window = measure(&name, WINDOW_OPS_MIN, backtraces, || {
            unreplicated(kind, ThreadMap::single(None))
        });
        if backtraces.is_none() {
            assert!(
                window.ops >= CHECKED_OPS_MIN,
                "{name}: only {} operations in {:?}",
                window.ops,
                window.elapsed
            );
            assert!(
                window.allocations <= WINDOW_ALLOCATIONS_MAX,
                "{name}: {} allocations in a window of {} operations (at most \
                 {WINDOW_ALLOCATIONS_MAX}); ALLOC_BACKTRACES=10 says where",
                window.allocations,
                window.ops
            );
        }
    }
    measure(
        "unreplicated, pipelined server, Auto",
        WINDOW_OPS_MIN,
        backtraces,
        || unreplicated(TransportKind::Auto, pipeline()),
    );
    measure("pbft n = 4, Auto", PBFT_WINDOW_OPS, backtraces, pbft);
    measure(
        "hotstuff n = 4, Auto",
        PBFT_WINDOW_OPS,
        backtraces,
        hotstuff,
    );
    measure("vr n = 3, Auto", WINDOW_OPS_MIN, backtraces, vr);
}

/// What one window counted.
#[derive(Debug)]
struct Window {
    ops: u64,
    allocations: u64,
    elapsed: Duration,
}

/// Starts a system, warms it up, counts a window of at least `ops_min`
/// operations (see the module docs) and prints it.
fn measure(
    name: &str,
    ops_min: u64,
    backtraces: Option<usize>,
    start: impl FnOnce() -> System,
) -> Window {
    let system = start();
    let clients = &system.clients;
    let started = Instant::now();
    let mut warm = 0;
    while (warm < ops_min || started.elapsed() < WARMUP_MIN) && started.elapsed() < WINDOW_MAX {
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !system.failed(),
            "{name}: a thread stopped during the warm-up"
        );
        warm += clients.metrics().ops;
    }

    if backtraces.is_some() {
        counting::trace(true);
    }
    let before = counting::allocations();
    let window_start = Instant::now();
    let mut ops = 0;
    while (ops < ops_min || window_start.elapsed() < WINDOW_MIN)
        && window_start.elapsed() < WINDOW_MAX
    {
        std::thread::sleep(Duration::from_millis(20));
        ops += clients.metrics().ops;
    }
    let window = Window {
        ops,
        allocations: counting::allocations() - before,
        elapsed: window_start.elapsed(),
    };
    counting::trace(false);
    assert!(
        !system.failed(),
        "{name}: a thread stopped during the window"
    );
    system.stop();
    println!(
        "{name}: {} allocations over {} operations in {:.2} s: {:.4} per operation",
        window.allocations,
        window.ops,
        window.elapsed.as_secs_f64(),
        window.allocations as f64 / window.ops.max(1) as f64
    );
    if let Some(top) = backtraces {
        counting::print_traces(top);
    }
    window
}

/// A running system: its clients and its replicas.
struct System {
    clients: Running,
    replicas: Vec<Running>,
}

impl System {
    fn failed(&self) -> bool {
        self.clients.has_failed() || self.replicas.iter().any(Running::has_failed)
    }

    /// Clients first: replicas stopped first would leave them retransmitting.
    fn stop(self) {
        self.clients.stop().expect("the clients stop cleanly");
        for replica in self.replicas {
            replica.stop().expect("a replica stops cleanly");
        }
    }
}

/// Null operations of `OP_SIZE` zero bytes, as the runner's null workload.
fn null_ops() -> OpFactory {
    Arc::new(|_thread| Box::new(|_: &mut Rng, op: &mut Vec<u8>| op.resize(OP_SIZE, 0)))
}

fn clients_setup(replicas: Vec<SocketAddr>, transport: TransportKind) -> ClientsSetup {
    ClientsSetup {
        first_id: ClientId(1),
        count: CLIENTS,
        threads: 1,
        cores: Vec::new(),
        bind: LOCALHOST,
        replicas,
        load: Load::Closed,
        idle: IDLE,
        transport,
        warmup: Duration::ZERO,
        measure: None,
        link: Default::default(),
    }
}

/// The replica's stages on three threads: receive and verify, protocol,
/// send.
fn pipeline() -> ThreadMap {
    let thread = |stages: &[Stage]| ThreadSpec {
        stages: stages.to_vec(),
        core: None,
    };
    ThreadMap {
        threads: vec![
            thread(&[Stage::Receive, Stage::Verify]),
            thread(&[Stage::Protocol]),
            thread(&[Stage::Send]),
        ],
    }
}

fn unreplicated(transport: TransportKind, threads: ThreadMap) -> System {
    use protocols::unreplicated::{Client, Codec, Server};
    let server = spawn_replica(
        Server::new(Box::new(NullApp)),
        Arc::new(Codec),
        ReplicaSetup {
            id: ReplicaId(0),
            // Port 0: the kernel picks; `local_addrs` says which.
            replicas: vec![SocketAddr::new(LOCALHOST, 0)],
            threads,
            idle: IDLE,
            transport,
            link: Default::default(),
        },
    )
    .expect("the server starts");
    if transport != TransportKind::Auto {
        assert_eq!(server.transport(), transport);
    }
    let clients = spawn_clients(
        Arc::new(|id| Client::new(id, RESEND)),
        Arc::new(Codec),
        null_ops(),
        clients_setup(server.local_addrs(), transport),
    )
    .expect("the clients start");
    System {
        clients,
        replicas: vec![server],
    }
}

/// One of a group's replicas, on one thread, spinning then blocking.
fn group_setup(id: ReplicaId, addrs: &[SocketAddr]) -> ReplicaSetup {
    ReplicaSetup {
        id,
        replicas: addrs.to_vec(),
        threads: ThreadMap::single(None),
        idle: IDLE,
        transport: TransportKind::Auto,
        link: Default::default(),
    }
}

/// Four replicas of a protocol whose clients authenticate with MACs (its
/// module, with `Client`, `Codec` and `Replica` as PBFT's and HotStuff's
/// are), keys from its seeded `simulate` module, and the clients.
macro_rules! mac_group {
    ($protocol:path, $simulate:path) => {{
        use $protocol::{Client, Codec, Replica};
        use $simulate as simulate;
        let keys = simulate::keys(1, 4);
        let config = simulate::config(&keys);
        let addrs = free_addrs(keys.len());
        let replicas = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let id = ReplicaId(i as u8);
                let codec =
                    Arc::new(Codec::replica(Arc::clone(&config), id, key).expect("a codec"));
                let replica = Replica::new(id, Arc::clone(&codec), Box::new(NullApp));
                spawn_replica(replica, codec, group_setup(id, &addrs)).expect("a replica starts")
            })
            .collect();
        let codec = Arc::new(Codec::client(Arc::clone(&config), b"alloc per op clients"));
        let client_codec = Arc::clone(&codec);
        let clients = spawn_clients(
            Arc::new(move |id| Client::new(id, &client_codec, RESEND)),
            codec,
            null_ops(),
            clients_setup(addrs, TransportKind::Auto),
        )
        .expect("the clients start");
        System { clients, replicas }
    }};
}

fn pbft() -> System {
    mac_group!(protocols::pbft, protocols::simulate::pbft)
}

fn hotstuff() -> System {
    mac_group!(protocols::hotstuff, protocols::hotstuff::simulate)
}

fn vr() -> System {
    use protocols::vr::{Client, Codec, Config, Replica};
    const N: usize = 3;
    let group = Config::new(N);
    let addrs = free_addrs(N);
    let replicas = (0..N)
        .map(|i| {
            let id = ReplicaId(i as u8);
            let replica = Replica::new(id, group, Box::new(NullApp));
            spawn_replica(replica, Arc::new(Codec), group_setup(id, &addrs))
                .expect("a replica starts")
        })
        .collect();
    let clients = spawn_clients(
        Arc::new(move |id| Client::new(id, group, RESEND)),
        Arc::new(Codec),
        null_ops(),
        clients_setup(addrs, TransportKind::Auto),
    )
    .expect("the clients start");
    System { clients, replicas }
}

/// The counting allocator.
mod counting {
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::backtrace::Backtrace;
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Calls to `alloc`, `alloc_zeroed` and `realloc`, every thread.
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    static TRACING: AtomicBool = AtomicBool::new(false);
    /// Call stacks of allocations while tracing, at most `TRACES_MAX`.
    static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());
    const TRACES_MAX: usize = 2_000;
    /// Frames of each call stack printed.
    const FRAMES_SHOWN: usize = 8;

    thread_local! {
        /// Set while this thread records a call stack: the allocations that
        /// recording makes are neither counted nor recorded.
        static RECORDING: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn allocations() -> u64 {
        ALLOCATIONS.load(Ordering::SeqCst)
    }

    /// Starts or stops recording a call stack with every allocation.
    pub(super) fn trace(on: bool) {
        TRACING.store(on, Ordering::SeqCst);
    }

    /// Prints the `top` call stacks recorded most often, and forgets them.
    pub(super) fn print_traces(top: usize) {
        let traces = std::mem::take(&mut *TRACES.lock().unwrap());
        let mut counts: HashMap<String, usize> = HashMap::new();
        let recorded = traces.len();
        for trace in traces {
            // The frames outside the standard library (its allocation
            // paths), each with where it is.
            let text = trace.to_string();
            let mut frames = Vec::new();
            let mut lines = text.lines().map(str::trim).peekable();
            while let Some(line) = lines.next() {
                let name = line.split_once(": ").map_or(line, |(_, name)| name);
                let Some(at) = lines.next_if(|l| l.starts_with("at ")) else {
                    continue;
                };
                if !at.contains("/rustc/") && !at.contains("alloc_per_op.rs") {
                    frames.push(format!("{name} {at}"));
                }
            }
            frames.truncate(FRAMES_SHOWN);
            *counts.entry(frames.join("\n    ")).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        println!("  {recorded} call stacks recorded; the most frequent:");
        for (stack, n) in counts.into_iter().take(top) {
            println!("  {n}x\n    {stack}");
        }
    }

    fn count() {
        if RECORDING.get() {
            return;
        }
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if TRACING.load(Ordering::Relaxed) {
            RECORDING.set(true);
            let trace = Backtrace::force_capture();
            let mut traces = TRACES.lock().unwrap();
            if traces.len() < TRACES_MAX {
                traces.push(trace);
            }
            drop(traces);
            RECORDING.set(false);
        }
    }

    /// The system allocator, counted.
    struct Counting;

    // SAFETY: every call is passed to `System` unchanged, which upholds the
    // `GlobalAlloc` contract; the counting touches atomics and a
    // thread-local flag, and the call stacks it records allocate through
    // this allocator with the flag set, which only forwards them.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: the caller's guarantees about `layout` are `System`'s.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: as `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` through this allocator with
            // this `layout`, as the caller guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: as `dealloc` for `ptr` and `layout`; `new_size` is the
            // caller's to check, as for `System`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}
