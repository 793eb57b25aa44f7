//! Agreement: every replica that executed a slot executed the same operation
//! there.
//!
//! Each replica reports the digests of the operations it executed, in order;
//! the slot of an operation is its index in that log. Replicas may lag (a log
//! may be shorter than another), but the logs must be prefixes of one another.
//! This is the safety property every state machine replication protocol
//! promises; it says nothing about liveness, so an empty log is fine.

use std::fmt;

use wire::ReplicaId;

/// Checks that the logs are prefixes of one another. On failure, reports the
/// lowest slot at which two replicas executed different operations.
pub fn check_agreement(logs: &[(ReplicaId, Vec<[u8; 32]>)]) -> Result<(), AgreementViolation> {
    // If two replicas disagree at slot s, at least one of them disagrees with
    // the longest log there (which covers s). So the lowest divergence from the
    // longest log, over all replicas, is the lowest divergence of any pair.
    let Some((reference_replica, reference)) = logs
        .iter()
        .rev() // `max_by_key` keeps the last maximum: prefer the first replica.
        .max_by_key(|(_, log)| log.len())
    else {
        return Ok(());
    };
    let mut first: Option<AgreementViolation> = None;
    for (replica, log) in logs {
        let divergence = log
            .iter()
            .zip(reference)
            .position(|(digest, expected)| digest != expected);
        let Some(slot) = divergence else { continue };
        if first.as_ref().is_none_or(|violation| slot < violation.slot) {
            first = Some(AgreementViolation {
                slot,
                replica_a: *reference_replica,
                digest_a: reference[slot],
                replica_b: *replica,
                digest_b: log[slot],
            });
        }
    }
    match first {
        Some(violation) => Err(violation),
        None => Ok(()),
    }
}

/// Two replicas executed different operations at the same slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementViolation {
    /// The lowest slot (index in the logs) at which two replicas disagree.
    pub slot: usize,
    pub replica_a: ReplicaId,
    pub digest_a: [u8; 32],
    pub replica_b: ReplicaId,
    pub digest_b: [u8; 32],
}

impl fmt::Display for AgreementViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agreement violated at slot {}: replica {} executed {}, replica {} executed {}",
            self.slot,
            self.replica_a.0,
            ShortHex(&self.digest_a),
            self.replica_b.0,
            ShortHex(&self.digest_b),
        )
    }
}

impl std::error::Error for AgreementViolation {}

/// The first bytes of a digest in hex, enough to tell digests apart by eye.
struct ShortHex<'a>(&'a [u8; 32]);

impl fmt::Display for ShortHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn log(ops: &[u8]) -> Vec<[u8; 32]> {
        ops.iter().copied().map(digest).collect()
    }

    #[test]
    fn no_replicas_and_empty_logs_agree() {
        assert_eq!(check_agreement(&[]), Ok(()));
        assert_eq!(
            check_agreement(&[(ReplicaId(0), vec![]), (ReplicaId(1), vec![])]),
            Ok(())
        );
    }

    #[test]
    fn equal_logs_agree() {
        let logs = [
            (ReplicaId(0), log(&[1, 2, 3])),
            (ReplicaId(1), log(&[1, 2, 3])),
            (ReplicaId(2), log(&[1, 2, 3])),
        ];
        assert_eq!(check_agreement(&logs), Ok(()));
    }

    #[test]
    fn lagging_replicas_agree() {
        let logs = [
            (ReplicaId(0), log(&[1, 2])),
            (ReplicaId(1), log(&[1, 2, 3, 4])),
            (ReplicaId(2), log(&[])),
            (ReplicaId(3), log(&[1, 2, 3])),
        ];
        assert_eq!(check_agreement(&logs), Ok(()));
    }

    #[test]
    fn divergence_names_the_slot_replicas_and_digests() {
        let logs = [
            (ReplicaId(0), log(&[1, 2, 3, 4])),
            (ReplicaId(1), log(&[1, 2, 3])),
            (ReplicaId(2), log(&[1, 2, 9])),
        ];
        let violation = check_agreement(&logs).unwrap_err();
        assert_eq!(
            violation,
            AgreementViolation {
                slot: 2,
                replica_a: ReplicaId(0),
                digest_a: digest(3),
                replica_b: ReplicaId(2),
                digest_b: digest(9),
            }
        );
        assert_eq!(
            violation.to_string(),
            "agreement violated at slot 2: replica 0 executed 03030303…, \
             replica 2 executed 09090909…"
        );
    }

    #[test]
    fn reports_the_lowest_divergent_slot() {
        // Replica 1 diverges from the longest log at slot 3, replica 2 at slot
        // 1; replicas 1 and 2 also disagree with each other at slot 1.
        let logs = [
            (ReplicaId(0), log(&[1, 2, 3, 4, 5])),
            (ReplicaId(1), log(&[1, 2, 3, 7])),
            (ReplicaId(2), log(&[1, 8])),
        ];
        let violation = check_agreement(&logs).unwrap_err();
        assert_eq!(violation.slot, 1);
        assert_eq!(violation.replica_b, ReplicaId(2));
    }

    #[test]
    fn divergence_at_slot_zero() {
        let logs = [(ReplicaId(0), log(&[1])), (ReplicaId(1), log(&[2, 3]))];
        let violation = check_agreement(&logs).unwrap_err();
        assert_eq!(violation.slot, 0);
        assert_eq!(violation.replica_a, ReplicaId(1));
        assert_eq!(violation.replica_b, ReplicaId(0));
    }
}
