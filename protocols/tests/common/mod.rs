//! What the real-runtime tests share: loopback addresses and a key-value
//! workload.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use runtime::Rng;
use runtime::deploy::OpFactory;
use wire::kv::Op;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `n` free UDP ports on loopback, never the same twice in one process.
///
/// Ports come from below the kernel's ephemeral range (which starts at
/// 32768 by default), from a counter that starts at a place the process id
/// picks: a port the kernel hands out for `bind(0)` (another test's, say)
/// is never one of these, so tests running in parallel cannot be given each
/// other's ports between this check and the bind that uses it.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id().wrapping_mul(7919)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..SPAN {
        if addrs.len() == n {
            break;
        }
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        let addr = SocketAddr::new(LOCALHOST, port);
        if UdpSocket::bind(addr).is_ok() {
            addrs.push(addr);
        }
    }
    assert_eq!(
        addrs.len(),
        n,
        "no free ports left below the ephemeral range"
    );
    addrs
}

/// Gets and puts, half each, on 100 keys.
pub fn kv_ops() -> OpFactory {
    Arc::new(|_seed| {
        Box::new(|rng: &mut Rng, out: &mut Vec<u8>| {
            let key = format!("k{}", rng.below(100)).into_bytes();
            let op = if rng.chance(0.5) {
                Op::Get { key }
            } else {
                Op::Put {
                    key,
                    value: b"value".to_vec(),
                }
            };
            wire::codec::encode(&op, out).unwrap();
        })
    })
}
