//! The durable baseline at its bounds, driven by hand through the driver
//! core: a snapshot larger than one durable value.

use protocols::app::NullApp;
use protocols::unreplicated::{SERVER, Server};
use runtime::driver::Driver;
use runtime::durable::Stored;
use runtime::{Addr, ClientId, Rng, Time};
use wire::unreplicated::{Message, Request};

fn request(driver: &mut Driver<Server>, stored: &mut Stored, client: u64, num: u64, op: Vec<u8>) {
    let msg = Message::Request(Request {
        client_id: ClientId(client),
        request_num: num,
        op: op.into(),
    });
    driver.on_message(Time::ZERO, Addr::Client(ClientId(client)), msg);
    driver.drain(|_, _| Ok(()));
    let mut writes = Vec::new();
    driver.take_writes(&mut writes);
    stored.apply(writes).expect("within the bounds");
    driver.release(|_, _| Ok(()));
}

/// 8,192 clients (any datagram names any client id: the baseline trusts
/// the network) each asking the null app for a 32 KiB reply fill the
/// client table's result budget (256 MiB); the snapshot then holds the
/// table and its per-entry overhead, more than the runtime's 256 MiB bound
/// on a durable value. It goes in chunks, and a server recovers from them.
#[test]
fn a_snapshot_larger_than_a_durable_value_goes_in_chunks() {
    let interval = 16_384;
    let mut driver = Driver::new(
        SERVER,
        Server::durable(Box::new(NullApp), interval),
        Rng::new(1),
    );
    let mut stored = Stored::default();
    driver.start(Time::ZERO);
    let op = wire::control::null_op(8, wire::control::REPLY_SIZE_MAX as u32);
    let mut n = 0;
    for round in 1..=2 {
        for client in 0..8_192u64 {
            n += 1;
            request(&mut driver, &mut stored, client, round, op.clone());
        }
    }
    assert_eq!(n, interval);
    assert!(stored.get(b"snapshot").is_some());
    let chunks = stored.prefixed(b"snapshot/").count();
    assert!(chunks > 4, "{chunks} chunks");
    assert!(stored.bytes() > runtime::durable::VALUE_BYTES_MAX);
    assert_eq!(
        stored.prefixed(b"log/").count(),
        0,
        "the snapshot cut the log"
    );

    // A new server recovers the table: every client's last request is a
    // duplicate, answered from the table, and a new one executes.
    let mut recovered = Driver::new(
        SERVER,
        Server::durable(Box::new(NullApp), interval),
        Rng::new(2),
    );
    recovered.recover(Time::ZERO, &stored);
    let before = recovered.counters().get("request: resent cached reply");
    request(&mut recovered, &mut stored, 5, 2, op.clone());
    assert_eq!(
        recovered.counters().get("request: resent cached reply"),
        before + 1
    );
    request(&mut recovered, &mut stored, 5, 3, op);
    assert_eq!(
        recovered.counters().get("request: resent cached reply"),
        before + 1,
        "a new request executes"
    );
}
