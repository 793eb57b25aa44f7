//! Criterion microbenchmarks of what every protocol pays for on each message;
//! this library itself is empty, the benchmarks live in `benches/`. `codec`
//! encodes and decodes a client request (ops of 16 and 256 bytes, and a signed
//! request) through our codec (bincode 2's native derives) and through bincode
//! 2's serde layer with the same configuration, the evidence for the choice
//! documented in `wire::codec` (`cargo bench -p benches --bench codec`).
//! `crypto` measures secp256k1 signing through `wire::Signer`'s long-lived
//! context against the library's context-free `ecdsa::sign`, verification, the
//! `Signed` envelope end to end, and SHA-256 of 256 bytes
//! (`cargo bench -p benches --bench crypto`). `sim` is the simulator's bench
//! (`cargo bench -p benches --bench sim`). Each reports messages or operations
//! per second; a filter runs part of one
//! (`cargo bench -p benches --bench codec -- decode/native`), and
//! `cargo test -p benches --benches` runs every benchmark once as a smoke test.
//!
//! The `sim_workload` binary is not a criterion benchmark: it runs one fixed,
//! fault-free simulator workload per protocol, for `scripts/instructions` to
//! count its instructions under callgrind (docs/INSTRUCTIONS.md).
