//! Agreement: no two replicas executed different things at the same slot.
//!
//! A slot is a protocol's commit position (PBFT's sequence number). Each
//! replica incarnation reports what it executed at every slot it executed:
//! whatever identifies the slot's content, such as the client, request
//! number and operation of each request, and marks for null batches. Replicas
//! may lag or skip slots (a state transfer jumps over them); wherever two
//! logs of different replicas both have a slot, they must hold the same.
//! Incarnations of one replica are not compared with each other (a restarted
//! baseline server numbers its executions from zero again), only with the
//! other replicas. This is the safety property every state machine
//! replication protocol promises; it says nothing about liveness, so empty
//! logs agree.

use std::collections::BTreeMap;
use std::fmt;

use wire::ReplicaId;

/// Checks every slot that logs of two different replicas share. On failure,
/// reports the lowest slot at which two replicas executed different things.
pub fn check_agreement<E: PartialEq + fmt::Debug>(
    logs: &[(ReplicaId, &BTreeMap<u64, E>)],
) -> Result<(), AgreementViolation> {
    let mut first: Option<AgreementViolation> = None;
    for (i, (replica_a, log_a)) in logs.iter().enumerate() {
        for (replica_b, log_b) in &logs[i + 1..] {
            if replica_a == replica_b {
                continue;
            }
            let divergence = log_a
                .iter()
                .find(|(slot, a)| log_b.get(slot).is_some_and(|b| b != *a));
            let Some((&slot, a)) = divergence else {
                continue;
            };
            if first.as_ref().is_none_or(|v| slot < v.slot) {
                first = Some(AgreementViolation {
                    slot,
                    replica_a: *replica_a,
                    executed_a: format!("{a:?}"),
                    replica_b: *replica_b,
                    executed_b: format!("{:?}", log_b[&slot]),
                });
            }
        }
    }
    match first {
        Some(violation) => Err(violation),
        None => Ok(()),
    }
}

/// Two replicas executed different things at the same slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementViolation {
    /// The lowest slot at which two replicas disagree.
    pub slot: u64,
    pub replica_a: ReplicaId,
    pub executed_a: String,
    pub replica_b: ReplicaId,
    pub executed_b: String,
}

impl fmt::Display for AgreementViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agreement violated at slot {}: replica {} executed {}, replica {} executed {}",
            self.slot, self.replica_a.0, self.executed_a, self.replica_b.0, self.executed_b,
        )
    }
}

impl std::error::Error for AgreementViolation {}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(slots: &[(u64, &'static str)]) -> BTreeMap<u64, &'static str> {
        slots.iter().copied().collect()
    }

    #[test]
    fn no_replicas_and_empty_logs_agree() {
        let empty = log(&[]);
        assert_eq!(check_agreement::<&str>(&[]), Ok(()));
        assert_eq!(
            check_agreement(&[(ReplicaId(0), &empty), (ReplicaId(1), &empty)]),
            Ok(())
        );
    }

    #[test]
    fn lagging_and_skipping_replicas_agree() {
        let full = log(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
        let behind = log(&[(1, "a"), (2, "b")]);
        // A state transfer jumped over 1..3.
        let transferred = log(&[(4, "d")]);
        let logs = [
            (ReplicaId(0), &full),
            (ReplicaId(1), &behind),
            (ReplicaId(2), &transferred),
        ];
        assert_eq!(check_agreement(&logs), Ok(()));
    }

    #[test]
    fn divergence_names_the_lowest_slot_and_both_replicas() {
        let a = log(&[(1, "a"), (2, "b"), (3, "c")]);
        let b = log(&[(1, "a"), (2, "x"), (3, "y")]);
        let c = log(&[(3, "z")]);
        let logs = [(ReplicaId(0), &a), (ReplicaId(1), &b), (ReplicaId(2), &c)];
        let violation = check_agreement(&logs).unwrap_err();
        assert_eq!(violation.slot, 2);
        assert_eq!(
            (violation.replica_a, violation.replica_b),
            (ReplicaId(0), ReplicaId(1))
        );
        assert_eq!(
            violation.to_string(),
            "agreement violated at slot 2: replica 0 executed \"b\", replica 1 executed \"x\""
        );
    }

    #[test]
    fn incarnations_of_one_replica_are_not_compared() {
        let before = log(&[(0, "a")]);
        let after = log(&[(0, "b")]);
        let logs = [(ReplicaId(0), &before), (ReplicaId(0), &after)];
        assert_eq!(check_agreement(&logs), Ok(()));
        let other = log(&[(0, "a")]);
        let logs = [
            (ReplicaId(0), &before),
            (ReplicaId(0), &after),
            (ReplicaId(1), &other),
        ];
        assert_eq!(check_agreement(&logs).unwrap_err().slot, 0);
    }
}
