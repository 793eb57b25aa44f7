//! A message's fields, as a Byzantine peer would edit them.
//!
//! A protocol describes each of its message types once, field by field
//! ([`Fields`], usually through the [`fields!`](crate::fields!) macro), and the
//! simulator's Byzantine replicas get structure-aware mutation for free: they
//! decode what they were about to send, walk its fields with a [`Visitor`]
//! that rewrites one or a few of them (extreme numbers, numbers one off, views
//! from the future, digests and ids seen elsewhere, lists with an element
//! dropped or repeated), re-sign what they signed, and send the result. The
//! message stays well formed and correctly signed, so it reaches the handlers
//! that a random byte flip never gets past.
//!
//! Signatures, MACs and public keys are not visited: a forged one is only a
//! bad signature, which the decoder drops long before any handler runs.
//! Fields derived from others (a batch's digest in a header) are put right by
//! the message's own `visit`, so that the only lies a mutation tells are the
//! ones a Byzantine peer could tell.

use crate::crypto::{Digest, Mac, MacKey, PublicKey, Signature, Signed, Signer};
use crate::{ClientId, ReplicaId};

/// A value whose fields a [`Visitor`] can see and change.
pub trait Fields {
    fn visit(&mut self, v: &mut dyn Visitor);
}

/// What a mutator does at each kind of field. Every method may leave the
/// value as it is.
pub trait Visitor {
    /// A view, sequence number, request number, offset, length or count.
    fn number(&mut self, value: &mut u64);
    fn replica(&mut self, value: &mut ReplicaId);
    fn client(&mut self, value: &mut ClientId);
    fn digest(&mut self, value: &mut Digest);
    /// Opaque bytes: an operation, a result, a chunk of state.
    fn bytes(&mut self, value: &mut Vec<u8>);
    fn flag(&mut self, value: &mut bool);
    /// Called before a list of `len` elements is visited: how to change its
    /// shape (the elements are visited after the edit).
    fn list(&mut self, len: usize) -> ListEdit;
    /// How many fields this visitor has changed so far: a [`Signed`] value
    /// compares it before and after visiting its payload to know whether to
    /// sign again.
    fn changes(&self) -> u64;
    /// The key to sign changed payloads with, if the visitor has one.
    fn signer(&self) -> Option<&Signer>;
    /// The MAC keys the visitor's node shares with each replica, in replica
    /// order, to authenticate a changed payload that carries a MAC for each
    /// (empty: it cannot, and the MACs stay as they were).
    fn mac_keys(&self) -> &[MacKey] {
        &[]
    }
}

/// A change to the shape of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEdit {
    Keep,
    Remove(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Clear,
}

impl ListEdit {
    fn apply<T: Clone>(self, list: &mut Vec<T>) {
        match self {
            ListEdit::Keep => {}
            ListEdit::Remove(i) if i < list.len() => {
                list.remove(i);
            }
            ListEdit::Duplicate(i) if i < list.len() => {
                let copy = list[i].clone();
                list.insert(i, copy);
            }
            ListEdit::Swap(i, j) if i < list.len() && j < list.len() => list.swap(i, j),
            ListEdit::Clear => list.clear(),
            ListEdit::Remove(_) | ListEdit::Duplicate(_) | ListEdit::Swap(..) => {}
        }
    }
}

/// Implements [`Fields`] for a struct by visiting the named fields in order.
/// A field is a [`Fields`] value, or opaque bytes (`name: bytes`).
///
/// ```
/// # use wire::fields;
/// # #[derive(Clone)] struct Chunk { seq: u64, data: Vec<u8> }
/// fields!(Chunk { seq, data: bytes });
/// ```
#[macro_export]
macro_rules! fields {
    ($t:ty { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        impl $crate::fields::Fields for $t {
            fn visit(&mut self, v: &mut dyn $crate::fields::Visitor) {
                $( $crate::fields!(@field v, self.$field $(, $how)?); )*
            }
        }
    };
    (@field $v:ident, $e:expr) => { $crate::fields::Fields::visit(&mut $e, $v) };
    (@field $v:ident, $e:expr, bytes) => { $v.bytes(&mut $e) };
}

impl Fields for u64 {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.number(self);
    }
}

impl Fields for ReplicaId {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.replica(self);
    }
}

impl Fields for ClientId {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.client(self);
    }
}

impl Fields for Digest {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.digest(self);
    }
}

impl Fields for bool {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.flag(self);
    }
}

/// Opaque: a mutated signature, MAC or key is only a failed check.
macro_rules! opaque {
    ($($t:ty),*) => {$(
        impl Fields for $t {
            fn visit(&mut self, _v: &mut dyn Visitor) {}
        }
    )*};
}

opaque!(Signature, Mac, PublicKey);

impl<T: Fields> Fields for Option<T> {
    fn visit(&mut self, v: &mut dyn Visitor) {
        if let Some(value) = self {
            value.visit(v);
        }
    }
}

impl<A: Fields, B: Fields> Fields for (A, B) {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.0.visit(v);
        self.1.visit(v);
    }
}

impl<T: Fields + Clone> Fields for Vec<T> {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.list(self.len()).apply(self);
        for item in self {
            item.visit(v);
        }
    }
}

impl<T: Fields + bincode::Encode> Fields for Signed<T> {
    /// Visits the payload and, if it changed and the visitor can sign, signs
    /// it again: what a Byzantine replica does with its own messages. A
    /// changed payload it cannot sign (another replica's, inside a
    /// certificate) keeps its old, now wrong, signature.
    fn visit(&mut self, v: &mut dyn Visitor) {
        let before = v.changes();
        self.payload.visit(v);
        if v.changes() != before {
            self.resign(v);
        }
    }
}

impl<T: bincode::Encode> Signed<T> {
    /// Signs the payload again with the visitor's key, if it has one.
    pub fn resign(&mut self, v: &dyn Visitor) {
        if let Some(signer) = v.signer()
            && let Ok(digest) = Digest::of_encoded(&self.payload)
        {
            self.signature = signer.sign_digest(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Request;

    /// Counts fields; adds one to the `target`-th number.
    struct Probe {
        seen: u64,
        target: u64,
        changes: u64,
        signer: Option<Signer>,
    }

    impl Visitor for Probe {
        fn number(&mut self, value: &mut u64) {
            if self.seen == self.target {
                *value = value.wrapping_add(1);
                self.changes += 1;
            }
            self.seen += 1;
        }
        fn replica(&mut self, _: &mut ReplicaId) {}
        fn client(&mut self, _: &mut ClientId) {}
        fn digest(&mut self, _: &mut Digest) {}
        fn bytes(&mut self, _: &mut Vec<u8>) {}
        fn flag(&mut self, _: &mut bool) {}
        fn list(&mut self, _: usize) -> ListEdit {
            ListEdit::Keep
        }
        fn changes(&self) -> u64 {
            self.changes
        }
        fn signer(&self) -> Option<&Signer> {
            self.signer.as_ref()
        }
    }

    #[test]
    fn a_changed_signed_payload_is_signed_again() {
        let signer = Signer::new(&crate::SecretKey::from_seed(b"k")).unwrap();
        let key = signer.public_key().parse().unwrap();
        let request = Request {
            client_id: ClientId(1),
            request_num: 7,
            op: vec![1],
        };
        let mut signed = Signed::sign(request, &signer).unwrap();
        let mut probe = Probe {
            seen: 0,
            target: 0,
            changes: 0,
            signer: Some(signer),
        };
        signed.visit(&mut probe);
        assert_eq!(signed.payload.request_num, 8);
        signed.verify(&key).unwrap();

        // Without a key, the change stays and the signature no longer checks.
        probe.signer = None;
        probe.seen = 0;
        signed.visit(&mut probe);
        assert_eq!(signed.payload.request_num, 9);
        assert!(signed.verify(&key).is_err());
    }

    #[test]
    fn list_edits_keep_in_bounds() {
        let mut list = vec![1, 2, 3];
        ListEdit::Remove(5).apply(&mut list);
        ListEdit::Duplicate(0).apply(&mut list);
        assert_eq!(list, [1, 1, 2, 3]);
        ListEdit::Swap(0, 3).apply(&mut list);
        assert_eq!(list, [3, 1, 2, 1]);
        ListEdit::Clear.apply(&mut list);
        assert!(list.is_empty());
    }
}
