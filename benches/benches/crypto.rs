//! secp256k1 ECDSA over SHA-256 digests, as `wire::crypto` uses it.
//!
//! - `crypto/sign/signer` against `crypto/sign/rerandomized`: `Signer`, which
//!   holds a long-lived context randomised once, against signing with a
//!   context re-randomised before every signature, which is what secp256k1
//!   0.33's context-free `ecdsa::sign` does (and why the project stays on
//!   0.31).
//! - `crypto/sign/rerandomize_only`: that re-randomisation alone.
//! - `crypto/verify/verify_digest`: one verification with a parsed key.
//! - `crypto/signed/{sign,verify}/op16`: the `Signed` envelope end to end
//!   (encode the request, hash, sign or verify).
//! - `crypto/digest/sha256_256B`: `Digest::of` over 256 bytes.
//! - `crypto/mac/proposal_authenticator_n4` and
//!   `crypto/mac/proposal_check`: what a HotStuff leader spends to
//!   authenticate a proposal's header for four replicas (HMAC-SHA256 under
//!   each shared key), and what a replica spends to check its entry, against
//!   the signature and the check per replica it replaces.
//!
//! Run with `cargo bench -p benches --bench crypto`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wire::client::Request;
use wire::crypto::verify_digest;
use wire::hotstuff::Proposed;
use wire::{ClientId, Digest, MacKey, ReplicaId, SecretKey, Signature, Signed, Signer};

fn crypto(c: &mut Criterion) {
    let key = SecretKey::from_seed(b"replica 0");
    let signer = Signer::new(&key).expect("seeded key is valid");
    let verifying_key = signer.public_key().parse().expect("own public key parses");
    let library_key = secp256k1::SecretKey::from_byte_array(key.0).expect("seeded key is valid");
    let mut context = secp256k1::Secp256k1::signing_only();
    let digest = Digest::of(b"a request to be ordered");

    // Both signing paths use RFC 6979 nonces: same key and digest, same
    // signature. Check it, and that it verifies, before timing.
    let signature = signer.sign_digest(&digest);
    let library_signature =
        context.sign_ecdsa(secp256k1::Message::from_digest(digest.0), &library_key);
    assert_eq!(Signature(library_signature.serialize_compact()), signature);
    verify_digest(&digest, &signature, &verifying_key).expect("signature verifies");

    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Elements(1));

    group.bench_function("sign/signer", |b| {
        b.iter(|| signer.sign_digest(black_box(&digest)))
    });
    group.bench_function("sign/rerandomized", |b| {
        b.iter(|| {
            context.seeded_randomize(black_box(&key.0));
            context.sign_ecdsa(
                secp256k1::Message::from_digest(black_box(digest.0)),
                &library_key,
            )
        })
    });
    group.bench_function("sign/rerandomize_only", |b| {
        b.iter(|| context.seeded_randomize(black_box(&key.0)))
    });
    group.bench_function("verify/verify_digest", |b| {
        b.iter(|| {
            verify_digest(black_box(&digest), black_box(&signature), &verifying_key)
                .expect("signature verifies")
        })
    });

    let request = Request {
        client_id: ClientId(1_000_001),
        request_num: 123_456,
        op: vec![0xAB; 16],
    };
    let signed = Signed::sign(request.clone(), &signer).expect("request encodes");
    group.bench_function("signed/sign/op16", |b| {
        // `sign` takes the payload by value: clone it outside the timing.
        b.iter_batched(
            || request.clone(),
            |request| Signed::sign(request, &signer).expect("request encodes"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("signed/verify/op16", |b| {
        b.iter(|| {
            black_box(&signed)
                .verify(&verifying_key)
                .expect("signature verifies")
        })
    });

    let bytes = [0x5Au8; 256];
    group.bench_function("digest/sha256_256B", |b| {
        b.iter(|| Digest::of(black_box(&bytes)))
    });

    let peers: Vec<MacKey> = (0..4u8)
        .map(|i| {
            let peer = Signer::new(&SecretKey::from_seed(&[b'r', i])).expect("seeded key");
            let public = peer.public_key().parse().expect("own public key parses");
            MacKey::agree(&public, &key).expect("keys agree")
        })
        .collect();
    let header = Proposed {
        view: 1_000_001,
        block: digest,
        leader: ReplicaId(0),
    };
    let auth = header.authenticate(&peers);
    peers[1]
        .verify_encoded(&header, &auth[1])
        .expect("own MAC checks");
    group.bench_function("mac/proposal_authenticator_n4", |b| {
        b.iter(|| black_box(&header).authenticate(&peers))
    });
    group.bench_function("mac/proposal_check", |b| {
        b.iter(|| {
            peers[1]
                .verify_encoded(black_box(&header), &auth[1])
                .expect("MAC checks")
        })
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = crypto
}
criterion_main!(benches);
