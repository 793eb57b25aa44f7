//! What PBFT's codec costs per message, on the paths a benchmark run takes
//! (n = 4): the client authenticating a request (four MACs), a replica
//! checking one, a backup decoding a full pre-prepare (one signature, the
//! batch digest, one MAC per request), signing and verifying a prepare, and
//! a reply's MAC both ways. With the batch size a run reaches (the runner's
//! `batch` column), these give the crypto share of a committed operation:
//! about 8 signatures and 24 verifications per batch, 8 MACs per request.
//!
//! `cargo bench -p benches --bench pbft`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use protocols::pbft::{BATCH_SIZE_MAX, Codec, Inbound, Outbound};
use runtime::{SharedState, Source};
use wire::client::Request;
use wire::pbft::{AuthRequest, Message, PrePrepare, Prepare, Reply};
use wire::{ClientId, ReplicaId};

const N: usize = 4;
const PRIMARY: Source = Source::Replica(ReplicaId(0));
const BACKUP: Source = Source::Replica(ReplicaId(1));

fn request(client: u64) -> Request {
    Request {
        client_id: ClientId(client),
        request_num: 1,
        op: vec![0; 16],
    }
}

fn pbft(c: &mut Criterion) {
    let keys = protocols::simulate::pbft::keys(1, N);
    let config = protocols::simulate::pbft::config(&keys);
    let primary = Codec::replica(Arc::clone(&config), ReplicaId(0), &keys[0]).unwrap();
    let backup = Codec::replica(Arc::clone(&config), ReplicaId(1), &keys[1]).unwrap();
    let clients = Codec::client(Arc::clone(&config), b"bench pbft clients");

    // A full batch from distinct clients, as the primary proposes it; the
    // backup learns every client's key (one ECDH each) before the timing.
    let reply_keys = clients.register_client(ClientId(1));
    let batch: Vec<AuthRequest> = (1..=BATCH_SIZE_MAX as u64)
        .map(|id| {
            clients.register_client(ClientId(id));
            let mut bytes = Vec::new();
            clients
                .encode(&Outbound::Request(1, request(id)), &mut bytes)
                .unwrap();
            match wire::decode::<Message>(&bytes).unwrap() {
                Message::Request(request) => request,
                other => panic!("not a request: {other:?}"),
            }
        })
        .collect();
    let header = PrePrepare {
        view: 0,
        seq: 1,
        digest: protocols::pbft::batch_digest(&batch).unwrap(),
    };
    let mut pre_prepare = Vec::new();
    primary
        .encode(
            &Outbound::PrePrepare(header, batch.clone()),
            &mut pre_prepare,
        )
        .unwrap();
    backup.decode(PRIMARY, &pre_prepare).unwrap();

    let mut request_bytes = Vec::new();
    clients
        .encode(&Outbound::Request(1, request(1)), &mut request_bytes)
        .unwrap();
    let prepare = Prepare {
        view: 0,
        seq: 1,
        digest: header.digest,
        replica: ReplicaId(1),
    };
    let mut prepare_bytes = Vec::new();
    backup
        .encode(&Outbound::Prepare(prepare), &mut prepare_bytes)
        .unwrap();
    let reply = Reply {
        view: 0,
        replica: ReplicaId(1),
        client_id: ClientId(1),
        request_num: 1,
        result: Vec::new(),
    };
    let mut reply_bytes = Vec::new();
    backup
        .encode(&Outbound::Reply(reply.clone()), &mut reply_bytes)
        .unwrap();

    let mut group = c.benchmark_group("pbft");
    group.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(wire::MESSAGE_SIZE_MAX);
    group.bench_function("client/authenticate_request", |b| {
        b.iter(|| {
            buf.clear();
            clients
                .encode(black_box(&Outbound::Request(1, request(1))), &mut buf)
                .unwrap();
        })
    });
    group.bench_function("replica/check_request", |b| {
        b.iter(|| {
            primary
                .decode(Source::Other, black_box(&request_bytes))
                .unwrap()
        })
    });
    group.bench_function("replica/sign_prepare", |b| {
        b.iter(|| {
            buf.clear();
            backup
                .encode(black_box(&Outbound::Prepare(prepare)), &mut buf)
                .unwrap();
        })
    });
    group.bench_function("replica/verify_prepare", |b| {
        b.iter(|| backup.decode(BACKUP, black_box(&prepare_bytes)).unwrap())
    });
    group.bench_function("replica/mac_reply", |b| {
        b.iter(|| {
            buf.clear();
            backup
                .encode(black_box(&Outbound::Reply(reply.clone())), &mut buf)
                .unwrap();
        })
    });
    // Decoding and checking one reply (a client checks f + 1 per
    // operation: those that make its quorum).
    group.bench_function("client/check_reply", |b| {
        b.iter(|| {
            let (_, msg) = clients.decode(BACKUP, black_box(&reply_bytes)).unwrap();
            let Inbound::Message(Message::Reply(reply)) = msg else {
                panic!("not a reply");
            };
            reply_keys.check(&reply.reply, &reply.mac).unwrap();
        })
    });
    // Per request of the batch: the signature and digest spread over it.
    group.throughput(Throughput::Elements(BATCH_SIZE_MAX as u64));
    group.bench_function("backup/decode_full_pre_prepare", |b| {
        b.iter(|| backup.decode(PRIMARY, black_box(&pre_prepare)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = pbft
}
criterion_main!(benches);
