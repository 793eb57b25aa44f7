//! Encode and decode of a client request as it goes on the wire, through our
//! codec (bincode 2's native `Encode`/`Decode` derives) and through bincode 2's
//! serde layer with the same configuration.
//!
//! This is the evidence for the choice documented in `wire/src/codec.rs`. Both
//! paths produce the same bytes for `Request`, so the comparison is like for
//! like; for `Signed<Request>` the serde path writes one byte more (the
//! signature goes through `serde_bytes`, which adds a length prefix, where the
//! native derive writes the fixed-size array as is).
//!
//! Run with `cargo bench -p benches --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use wire::client::Request;
use wire::{ClientId, MESSAGE_SIZE_MAX, SecretKey, Signed, Signer};

/// The serde path's configuration: the same as the codec's (`wire::codec`
/// keeps its own private).
const SERDE_CONFIG: Configuration<LittleEndian, Varint, Limit<MESSAGE_SIZE_MAX>> =
    bincode::config::standard().with_limit::<MESSAGE_SIZE_MAX>();

/// Operation sizes measured, in bytes.
const OP_SIZES: [usize; 2] = [16, 256];

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    for op_size in OP_SIZES {
        bench_message(&mut group, &format!("op{op_size}"), &request(op_size), 0);
    }

    // A signed request of the smaller size: the envelope a client signs and a
    // replica verifies in the Byzantine protocols.
    let signer = Signer::new(&SecretKey::from_seed(b"client 1")).expect("seeded key is valid");
    let signed = Signed::sign(request(16), &signer).expect("request encodes");
    bench_message(&mut group, "signed_op16", &signed, 1);

    group.finish();
}

/// Benchmarks encode and decode of `msg` through both paths, under
/// `{encode,decode}/{native,serde}/{name}`. The serde encoding is expected to
/// be `serde_extra_bytes` longer than the native one, and identical if zero.
fn bench_message<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    msg: &T,
    serde_extra_bytes: usize,
) where
    T: bincode::Encode
        + bincode::Decode<()>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug,
{
    // Check that both paths round-trip, and what they write, before timing.
    let native_bytes = wire::codec::encode_to_vec(msg).expect("encodes");
    let mut serde_encoded = Vec::new();
    bincode::serde::encode_into_std_write(msg, &mut serde_encoded, SERDE_CONFIG).expect("encodes");
    assert_eq!(
        serde_encoded.len(),
        native_bytes.len() + serde_extra_bytes,
        "{name}"
    );
    if serde_extra_bytes == 0 {
        assert_eq!(serde_encoded, native_bytes, "{name}");
    }
    assert_eq!(
        &wire::codec::decode::<T>(&native_bytes).expect("decodes"),
        msg
    );
    let (decoded, read) =
        bincode::serde::decode_from_slice::<T, _>(&serde_encoded, SERDE_CONFIG).expect("decodes");
    assert_eq!((&decoded, read), (msg, serde_encoded.len()));

    let mut buf = Vec::with_capacity(MESSAGE_SIZE_MAX);
    group.bench_function(format!("encode/native/{name}"), |b| {
        b.iter(|| {
            buf.clear();
            wire::codec::encode(black_box(msg), &mut buf).expect("encodes");
            black_box(&buf);
        })
    });
    group.bench_function(format!("encode/serde/{name}"), |b| {
        b.iter(|| {
            buf.clear();
            bincode::serde::encode_into_std_write(black_box(msg), &mut buf, SERDE_CONFIG)
                .expect("encodes");
            black_box(&buf);
        })
    });
    group.bench_function(format!("decode/native/{name}"), |b| {
        b.iter(|| wire::codec::decode::<T>(black_box(&native_bytes)).expect("decodes"))
    });
    group.bench_function(format!("decode/serde/{name}"), |b| {
        b.iter(|| {
            bincode::serde::decode_from_slice::<T, _>(black_box(&serde_encoded), SERDE_CONFIG)
                .expect("decodes")
        })
    });
}

fn request(op_size: usize) -> Request {
    Request {
        client_id: ClientId(1_000_001),
        request_num: 123_456,
        op: (0..op_size).map(|i| i as u8).collect(),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = codec
}
criterion_main!(benches);
