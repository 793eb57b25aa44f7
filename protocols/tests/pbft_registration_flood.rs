//! A faulty primary that ignores one client's registration, while a
//! Byzantine client floods the backups with valid registrations of fresh
//! ids, more than their announcement sets hold, just before each copy of
//! the victim's: the victim still registers (the backups relay its
//! registration and time it, and the primary is replaced).

mod pbft_support;

use std::rc::Rc;
use std::time::Duration;

use protocols::simulate::pbft::{System, add_client, censor, client_key_seed, system};
use runtime::sim::{Network, Tamper};
use runtime::{Addr, ClientId, Rng, SharedState, Time};

use pbft_support::{replica, total};

const VICTIM: u64 = 1;
/// One more than the backups' announcement set holds.
const FLOOD: u64 = 4097;

/// Valid registrations of `FLOOD` fresh client ids, each correctly
/// authenticated (any key may claim a new id).
fn flood(config: &std::sync::Arc<protocols::pbft::Config>) -> Rc<Vec<Vec<u8>>> {
    let codec =
        protocols::pbft::Codec::client(std::sync::Arc::clone(config), &client_key_seed(config));
    Rc::new(
        (100_000..100_000 + FLOOD)
            .map(|id| {
                codec.register_client(ClientId(id));
                let request = wire::client::Request {
                    client_id: ClientId(id),
                    request_num: 0,
                    op: Vec::new(),
                };
                let mut bytes = Vec::new();
                codec
                    .encode(&protocols::pbft::Outbound::Request(0, request), &mut bytes)
                    .unwrap();
                bytes
            })
            .collect(),
    )
}

/// A reliable network with one fixed delay: datagrams arrive in the order
/// they were sent (an attacker on a real network times its flood to the
/// same effect by sending it continuously).
fn fifo() -> Network {
    let mut network = Network::reliable();
    network.delay_max = network.delay_min;
    network
}

fn run(with_flood: bool) -> (bool, u64, u64) {
    let System {
        mut sim,
        log,
        config,
        ..
    } = system(77, fifo(), 4, 0, 0);
    add_client(&mut sim, &config, VICTIM, 1);
    log.exclude(runtime::ReplicaId(0));
    // The primary of view 0 drops everything of the victim's.
    sim.set_byzantine(replica(0), censor(ClientId(VICTIM)));
    if with_flood {
        // Stands for a Byzantine client flooding the backups with
        // registrations of fresh ids at a rate of at least 4096 per
        // retransmission interval of the victim (CLIENT_RESEND_MAX = 500 ms:
        // ~8,200 datagrams a second per backup): here, the flood is timed
        // to come just before each copy the victim sends a backup.
        let datagrams = flood(&config);
        let tamper: Box<dyn Tamper> = Box::new(
            move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                if to != replica(0) {
                    for d in datagrams.iter() {
                        out.push((to, d.clone()));
                    }
                }
                out.push((to, bytes));
            },
        );
        sim.set_byzantine(Addr::Client(ClientId(VICTIM)), tamper);
    }
    sim.run_until(Time::ZERO + Duration::from_secs(6));
    (
        sim.ops_completed() == 1,
        total(&sim, "request: registration announced"),
        total(&sim, "view change: a request waited too long"),
    )
}

#[test]
fn without_the_flood_a_censored_registration_gets_through() {
    let (done, announced, timeouts) = run(false);
    assert!(done);
    assert!(announced > 0 && timeouts > 0, "{announced} {timeouts}");
}

#[test]
fn a_flood_of_registrations_does_not_keep_a_censored_client_unregistered() {
    let (done, _, timeouts) = run(true);
    assert!(
        done,
        "the victim never registered: the backups took every copy for an announcement"
    );
    assert!(timeouts > 0, "the backups timed the victim's registration");
}
