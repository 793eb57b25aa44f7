//! Digests of large states that can be checked a chunk at a time.
//!
//! A replica's checkpointed state may be far larger than a datagram, so state
//! transfer sends it in chunks. Checking only the assembled state against the
//! checkpoint's digest would let anyone wedge a transfer with one forged
//! chunk (and make the receiver buffer whatever size the chunk claims). So the
//! digest of a state commits to its size and to a Merkle tree over its chunks:
//! each chunk travels with the path of sibling digests from its leaf to the
//! root, and the receiver checks every chunk against the digest it already
//! trusts the moment it arrives.
//!
//! Leaves are `SHA-256(0x00 ‖ chunk)`, inner nodes `SHA-256(0x01 ‖ left ‖
//! right)` (the prefixes keep a leaf from passing for a node); a level with
//! an odd count promotes its last node unchanged. The state's digest is
//! `SHA-256("state" ‖ size as u64 LE ‖ root)`. The empty state is one empty
//! chunk.

use sha2::{Digest as _, Sha256};

use crate::Digest;

/// The digests of a state's tree, leaves first, root last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTree {
    size: u64,
    chunk_len: usize,
    levels: Vec<Vec<Digest>>,
}

impl StateTree {
    /// The tree of `state` cut into chunks of `chunk_len` bytes (the last may
    /// be shorter).
    pub fn new(state: &[u8], chunk_len: usize) -> StateTree {
        assert!(chunk_len > 0, "chunks hold at least a byte");
        let mut leaves: Vec<Digest> = state.chunks(chunk_len).map(leaf).collect();
        if leaves.is_empty() {
            leaves.push(leaf(&[]));
        }
        let mut levels = vec![leaves];
        while levels.last().expect("a level").len() > 1 {
            let below = levels.last().expect("a level");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node(left, right),
                    [only] => *only,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(above);
        }
        StateTree {
            size: state.len() as u64,
            chunk_len,
            levels,
        }
    }

    /// What a checkpoint certifies: the size and the root together.
    pub fn digest(&self) -> Digest {
        state_digest(self.size, &self.levels.last().expect("a root")[0])
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn chunks(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The sibling digests on the way from chunk `index` to the root, lowest
    /// first; `None` if there is no such chunk.
    pub fn proof(&self, index: u64) -> Option<Vec<Digest>> {
        let mut i = usize::try_from(index).ok()?;
        if i >= self.levels[0].len() {
            return None;
        }
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            i /= 2;
        }
        Some(proof)
    }

    /// Chunk `index` of `state` (the state this tree was built from).
    pub fn chunk<'a>(&self, state: &'a [u8], index: u64) -> Option<&'a [u8]> {
        let range = chunk_range(self.size, self.chunk_len, index)?;
        state.get(range)
    }
}

/// How many chunks of `chunk_len` a state of `size` bytes has (at least one).
pub fn chunk_count(size: u64, chunk_len: usize) -> u64 {
    size.div_ceil(chunk_len as u64).max(1)
}

/// The byte range of chunk `index` in a state of `size` bytes.
pub fn chunk_range(size: u64, chunk_len: usize, index: u64) -> Option<std::ops::Range<usize>> {
    if index >= chunk_count(size, chunk_len) {
        return None;
    }
    let start = index.checked_mul(chunk_len as u64)?;
    let end = start.saturating_add(chunk_len as u64).min(size);
    Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

/// Whether `data` is chunk `index` of a state of `size` bytes, cut into
/// `chunk_len`-byte chunks, whose digest is `expected`, as `proof` (from
/// [`StateTree::proof`]) shows. Never panics, whatever the inputs.
pub fn verify_chunk(
    expected: &Digest,
    size: u64,
    chunk_len: usize,
    index: u64,
    data: &[u8],
    proof: &[Digest],
) -> bool {
    let Some(range) = chunk_range(size, chunk_len, index) else {
        return false;
    };
    if data.len() != range.len() {
        return false;
    }
    let mut width = chunk_count(size, chunk_len);
    let mut i = index;
    let mut hash = leaf(data);
    let mut proof = proof.iter();
    while width > 1 {
        let sibling = i ^ 1;
        if sibling < width {
            let Some(other) = proof.next() else {
                return false;
            };
            hash = if i.is_multiple_of(2) {
                node(&hash, other)
            } else {
                node(other, &hash)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    proof.next().is_none() && state_digest(size, &hash) == *expected
}

fn leaf(chunk: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(chunk);
    Digest(hasher.finalize().into())
}

fn node(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left.0);
    hasher.update(right.0);
    Digest(hasher.finalize().into())
}

fn state_digest(size: u64, root: &Digest) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"state");
    hasher.update(size.to_le_bytes());
    hasher.update(root.0);
    Digest(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn every_chunk_of_every_shape_verifies() {
        for len in [0, 1, 9, 10, 11, 30, 31, 64, 65, 100] {
            let bytes = state(len);
            let tree = StateTree::new(&bytes, 10);
            assert_eq!(tree.chunks(), chunk_count(len as u64, 10));
            for index in 0..tree.chunks() {
                let chunk = tree.chunk(&bytes, index).unwrap();
                let proof = tree.proof(index).unwrap();
                assert!(
                    verify_chunk(&tree.digest(), len as u64, 10, index, chunk, &proof),
                    "len {len} chunk {index}"
                );
            }
            assert!(tree.proof(tree.chunks()).is_none());
        }
    }

    #[test]
    fn forged_chunks_sizes_and_proofs_fail() {
        let bytes = state(95);
        let tree = StateTree::new(&bytes, 10);
        let digest = tree.digest();
        let proof = tree.proof(3).unwrap();
        let chunk = tree.chunk(&bytes, 3).unwrap().to_vec();
        assert!(verify_chunk(&digest, 95, 10, 3, &chunk, &proof));

        let mut altered = chunk.clone();
        altered[0] ^= 1;
        assert!(!verify_chunk(&digest, 95, 10, 3, &altered, &proof));
        // Another index, size, chunk length, or a proof too short or long.
        assert!(!verify_chunk(&digest, 95, 10, 4, &chunk, &proof));
        assert!(!verify_chunk(&digest, 96, 10, 3, &chunk, &proof));
        assert!(!verify_chunk(&digest, u64::MAX, 10, 3, &chunk, &proof));
        assert!(!verify_chunk(&digest, 95, 10, u64::MAX, &chunk, &proof));
        assert!(!verify_chunk(&digest, 95, 10, 3, &chunk, &proof[1..]));
        let mut long = proof.clone();
        long.push(Digest::default());
        assert!(!verify_chunk(&digest, 95, 10, 3, &chunk, &long));
        // A different state of the same size.
        let other = StateTree::new(&state(96)[1..], 10);
        assert!(!verify_chunk(&other.digest(), 95, 10, 3, &chunk, &proof));
    }
}
