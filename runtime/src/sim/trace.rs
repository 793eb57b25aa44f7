//! The simulator's readable timeline of one run.

use std::fmt;

use wire::Addr;

use crate::time::Time;

use super::TRACE_EVENTS_MAX;

/// One line of a run's timeline: when, at which node (or the network), what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub at: Time,
    pub node: Option<Addr>,
    pub what: String,
}

impl fmt::Display for TraceEvent {
    /// `  12.345678 replica 2     <- replica 0: Prepare ...`: seconds of
    /// virtual time to the microsecond, then the node, then what happened.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.at.as_nanos();
        let node = self
            .node
            .map_or_else(|| "network".to_string(), |a| a.to_string());
        write!(
            f,
            "{:>4}.{:06} {node:<12} {}",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000 / 1_000,
            self.what
        )
    }
}

/// Appends an event, unless the trace is full (then the last event says so).
pub(super) fn push(trace: &mut Vec<TraceEvent>, at: Time, node: Option<Addr>, what: String) {
    match trace.len() {
        n if n < TRACE_EVENTS_MAX => trace.push(TraceEvent { at, node, what }),
        n if n == TRACE_EVENTS_MAX => trace.push(TraceEvent {
            at,
            node: None,
            what: format!("trace cut short after {TRACE_EVENTS_MAX} events"),
        }),
        _ => {}
    }
}
