//! What the real-runtime tests share: loopback addresses and a key-value
//! workload.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use runtime::Rng;
use runtime::deploy::OpFactory;
use wire::kv::Op;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `n` free UDP ports on loopback (bound together, then released).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind((LOCALHOST, 0)).unwrap())
        .collect();
    sockets.iter().map(|s| s.local_addr().unwrap()).collect()
}

/// Gets and puts, half each, on 100 keys.
pub fn kv_ops() -> OpFactory {
    Arc::new(|_seed| {
        Box::new(|rng: &mut Rng| {
            let key = format!("k{}", rng.below(100)).into_bytes();
            let op = if rng.chance(0.5) {
                Op::Get { key }
            } else {
                Op::Put {
                    key,
                    value: b"value".to_vec(),
                }
            };
            wire::codec::encode_to_vec(&op).unwrap()
        })
    })
}
