//! The protocols the framework runs, as every crate needs to know them: name,
//! how many replicas they run and which other nodes beside them, whether they
//! sign, whether they batch, the counters they report, and their tunables with
//! defaults and bounds.
//!
//! This is the one list of protocols outside the `protocols` crate. The
//! runner reads it (it does not link protocol code), the node program checks
//! configurations against it, and `protocols::registry` lists the
//! implementations in the same order (a test there keeps the two in step).
//! A protocol's entry ([`ProtocolSpec`]) lives beside its messages
//! (`wire::<protocol>::SPEC`); adding a protocol adds one line to
//! [`PROTOCOLS`].
//!
//! A protocol's group is its replicas and then its *services*, nodes that
//! run beside the replicas (chain replication's master, the configuration
//! service that reconfigures the chain). Nodes are numbered in that order:
//! for `n` replicas, replica `i` is node `i` (`0..n`) and service `j` is node
//! `n + j`. Every node is configured and started alike (the runner starts a
//! service as `Role::Replica { id: n + j }`, the node program hands it to the
//! protocol as a replica start, and the protocol decides what runs there),
//! and a configuration's address list names every node in that order. Faults
//! count replicas only: `f` is what the replicas tolerate, and a service is
//! never faulted.
//!
//! Tunables are whole numbers with a unit (`ms`, requests, batches), a
//! default and an inclusive range. A run names the ones it changes
//! (`pbft.batch_max=100` on the runner's command line, [`Settings`] on the
//! node) and every other keeps its default; the node reports every value it
//! used, so results record them all.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every protocol the node program runs, the baseline first.
pub const PROTOCOLS: &[&ProtocolSpec] = &[
    &crate::unreplicated::SPEC,
    &crate::pbft::SPEC,
    &crate::chain::SPEC,
    &crate::hotstuff::SPEC,
    &crate::vr::SPEC,
];

/// The protocol every other is compared to.
pub const BASELINE: &ProtocolSpec = &crate::unreplicated::SPEC;

/// The protocol named `name`, if the node program runs it.
pub fn find(name: &str) -> Option<&'static ProtocolSpec> {
    PROTOCOLS.iter().copied().find(|spec| spec.name == name)
}

/// The known protocols' names, for messages: "unreplicated, pbft".
pub fn names() -> String {
    let names: Vec<_> = PROTOCOLS.iter().map(|spec| spec.name).collect();
    names.join(", ")
}

/// The protocol named `name`, or an error naming the known ones.
pub fn lookup(name: &str) -> Result<&'static ProtocolSpec, String> {
    find(name).ok_or_else(|| format!("unknown protocol {name:?}; known: {}", names()))
}

/// How many replicas a protocol runs for `f` faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Replication {
    /// One server, whatever `f`.
    Single,
    /// `3f + 1` replicas (Byzantine fault tolerance).
    Bft,
    /// `2f + 1` replicas (crash fault tolerance with majority quorums).
    Cft,
    /// `f + 1` replicas (crash fault tolerance with an outside
    /// configuration service, as in chain replication).
    Chain,
}

impl Replication {
    /// Replicas for `f` faults (saturating: a bound elsewhere refuses huge
    /// `f`).
    pub fn replicas(self, f: u32) -> u32 {
        match self {
            Replication::Single => 1,
            Replication::Bft => f.saturating_mul(3).saturating_add(1),
            Replication::Cft => f.saturating_mul(2).saturating_add(1),
            Replication::Chain => f.saturating_add(1),
        }
    }

    /// The most faults `n` replicas tolerate.
    pub fn faults(self, n: usize) -> usize {
        match self {
            Replication::Single => 0,
            Replication::Bft => n.saturating_sub(1) / 3,
            Replication::Cft => n.saturating_sub(1) / 2,
            Replication::Chain => n.saturating_sub(1),
        }
    }

    /// The rule, for messages: "3f + 1".
    pub fn rule(self) -> &'static str {
        match self {
            Replication::Single => "1",
            Replication::Bft => "3f + 1",
            Replication::Cft => "2f + 1",
            Replication::Chain => "f + 1",
        }
    }

    /// Whether a group of `n` replicas can run: exactly one for `Single`;
    /// otherwise at least the group for one fault (a larger group tolerates
    /// [`Replication::faults`] of it, and quorums are sized from `n`).
    pub fn fits(self, n: usize) -> bool {
        match self {
            Replication::Single => n == 1,
            _ => n >= self.replicas(1) as usize,
        }
    }
}

/// A protocol, as the runner and the node program know it.
#[derive(Debug)]
pub struct ProtocolSpec {
    /// As `--protocol` takes it.
    pub name: &'static str,
    /// One line for help texts.
    pub about: &'static str,
    pub replication: Replication,
    /// The largest group it runs (its own bound: PBFT's new-view must fit a
    /// datagram). Replicas only, without the services.
    pub replicas_max: usize,
    /// The nodes it runs beside its replicas, by name, in node order
    /// (chain replication's `["master"]`); empty for most. They follow the
    /// replicas' ids and addresses and are never faulted (see the module's
    /// documentation).
    pub services: &'static [&'static str],
    /// Whether replicas sign their messages, and so need key pairs.
    pub signs: bool,
    /// Whether the leader batches requests and reports
    /// [`crate::control::BATCHES_COUNTER`] and
    /// [`crate::control::REQUESTS_BATCHED_COUNTER`].
    pub batches: bool,
    /// Whether the leader changes by itself in normal operation (a
    /// rotating leader, as in HotStuff): the results then report the
    /// periodic dip in throughput each rotation causes.
    pub rotates_leader: bool,
    /// The counters its nodes report beyond the runtime's own (decode drops,
    /// transport), for documentation and the results' columns.
    pub counters: &'static [&'static str],
    pub tunables: &'static [Tunable],
}

impl ProtocolSpec {
    /// Replicas for `f` faults.
    pub fn replicas(&self, f: u32) -> u32 {
        self.replication.replicas(f)
    }

    /// Nodes for `f` faults: the replicas, then the services.
    pub fn nodes(&self, f: u32) -> u32 {
        self.replicas(f).saturating_add(self.services.len() as u32)
    }

    /// Replicas in a group of `nodes` (services last); `None` if there are
    /// too few nodes to hold the services.
    pub fn replicas_among(&self, nodes: usize) -> Option<usize> {
        nodes.checked_sub(self.services.len())
    }

    /// The service node `id` of a group of `nodes` runs, by name; `None` for
    /// a replica (or an id past the group).
    pub fn service_at(&self, nodes: usize, id: usize) -> Option<&'static str> {
        let replicas = self.replicas_among(nodes)?;
        id.checked_sub(replicas)
            .and_then(|j| self.services.get(j))
            .copied()
    }

    /// Whether the protocol is replicated (runs more than one replica).
    pub fn is_replicated(&self) -> bool {
        self.replication != Replication::Single
    }

    /// Checks a group of `n` replicas is one the protocol runs.
    pub fn check_replicas(&self, n: usize) -> Result<(), String> {
        let name = self.name;
        if !self.replication.fits(n) {
            return Err(match self.replication {
                Replication::Single => {
                    format!("{name} runs exactly one replica, but `replicas` names {n}")
                }
                _ => format!(
                    "{name} runs at least {} replicas ({} for f >= 1), but `replicas` names {n}",
                    self.replication.replicas(1),
                    self.replication.rule()
                ),
            });
        }
        if n > self.replicas_max {
            return Err(format!(
                "{name} runs at most {} replicas, but `replicas` names {n}",
                self.replicas_max
            ));
        }
        Ok(())
    }

    /// Checks a group of `nodes` (a configuration's address list: the
    /// replicas, then the services) is one the protocol runs: room for every
    /// service, and a replica count [`ProtocolSpec::check_replicas`] accepts.
    pub fn check_nodes(&self, nodes: usize) -> Result<(), String> {
        if self.services.is_empty() {
            return self.check_replicas(nodes);
        }
        let services = self.services_phrase();
        let Some(replicas) = self.replicas_among(nodes).filter(|&n| n > 0) else {
            return Err(format!(
                "{} runs its replicas and then {services}, which `replicas` lists last, \
                 but `replicas` names only {nodes} address(es)",
                self.name
            ));
        };
        self.check_replicas(replicas)
            .map_err(|problem| format!("{problem} (besides {services}, listed last)"))
    }

    /// The services, for messages: "a master", "a master and a witness";
    /// empty for none.
    pub fn services_phrase(&self) -> String {
        let article = |s: &str| match s.chars().next() {
            Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
            _ => "a",
        };
        let named: Vec<String> = self
            .services
            .iter()
            .map(|s| format!("{} {s}", article(s)))
            .collect();
        match named.split_last() {
            None => String::new(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    }

    /// The tunable named `name`.
    pub fn tunable(&self, name: &str) -> Option<&'static Tunable> {
        self.tunables.iter().find(|t| t.name == name)
    }

    /// The tunables' names, for messages: "batch_max, window" or "none".
    pub fn tunable_names(&self) -> String {
        if self.tunables.is_empty() {
            return "none".to_string();
        }
        let names: Vec<_> = self.tunables.iter().map(|t| t.name).collect();
        names.join(", ")
    }

    /// Every tunable at its default.
    pub fn defaults(&'static self) -> Settings {
        Settings {
            spec: self,
            values: self.tunables.iter().map(|t| t.default).collect(),
        }
    }

    /// The settings `given` (name and value, each at most once) make, every
    /// other tunable at its default; or every problem, one line each.
    pub fn settings(&'static self, given: &[(String, u64)]) -> Result<Settings, Vec<String>> {
        let mut settings = self.defaults();
        let mut problems = Vec::new();
        for (i, (name, value)) in given.iter().enumerate() {
            if given[..i].iter().any(|(earlier, _)| earlier == name) {
                problems.push(format!("{}.{name} is set twice", self.name));
                continue;
            }
            match self.tunables.iter().position(|t| t.name == name) {
                None => problems.push(format!(
                    "{}.{name}: {} has no such tunable (it has: {})",
                    self.name,
                    self.name,
                    self.tunable_names()
                )),
                Some(at) => match self.tunables[at].check(*value) {
                    Ok(()) => settings.values[at] = *value,
                    Err(problem) => problems.push(format!("{}.{problem}", self.name)),
                },
            }
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

/// A protocol parameter a run may change.
#[derive(Debug)]
pub struct Tunable {
    /// As the command line names it, after the protocol: `batch_max`.
    pub name: &'static str,
    /// What it does, one line.
    pub about: &'static str,
    /// `ms`, `requests`, ...
    pub unit: &'static str,
    pub default: u64,
    /// Smallest value allowed.
    pub min: u64,
    /// Largest value allowed.
    pub max: u64,
}

impl Tunable {
    /// Checks `value` is in range; the error starts with the name.
    pub fn check(&self, value: u64) -> Result<(), String> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "{}={value}: out of range, {} to {} {} (default {})",
                self.name, self.min, self.max, self.unit, self.default
            ))
        }
    }
}

/// Every tunable of one protocol with the value a run uses.
#[derive(Clone)]
pub struct Settings {
    spec: &'static ProtocolSpec,
    values: Vec<u64>,
}

impl Settings {
    /// The protocol these are settings of.
    pub fn spec(&self) -> &'static ProtocolSpec {
        self.spec
    }

    /// The value of `tunable`, which must be one of the protocol's own (a
    /// protocol reads its own tunables; anything else is a bug).
    pub fn get(&self, tunable: &Tunable) -> u64 {
        let at = self
            .spec
            .tunables
            .iter()
            .position(|t| t.name == tunable.name)
            .unwrap_or_else(|| panic!("{} has no tunable {}", self.spec.name, tunable.name));
        self.values[at]
    }

    /// Every tunable and its value, in the protocol's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Tunable, u64)> + '_ {
        self.spec.tunables.iter().zip(self.values.iter().copied())
    }

    /// The values that differ from the defaults, as a run names them.
    pub fn changed(&self) -> Vec<(String, u64)> {
        self.iter()
            .filter(|(t, v)| *v != t.default)
            .map(|(t, v)| (t.name.to_string(), v))
            .collect()
    }

    /// Every value, for the record of a run: `("batch_max", "256 requests")`.
    pub fn record(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(t, v)| (t.name.to_string(), format!("{v} {}", t.unit)))
            .collect()
    }
}

impl PartialEq for Settings {
    fn eq(&self, other: &Settings) -> bool {
        self.spec.name == other.spec.name && self.values == other.values
    }
}

impl Eq for Settings {}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (t, v) in self.iter() {
            map.entry(&t.name, &v);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_baseline_is_first() {
        assert!(std::ptr::eq(PROTOCOLS[0], BASELINE));
        for (i, spec) in PROTOCOLS.iter().enumerate() {
            assert!(PROTOCOLS[..i].iter().all(|s| s.name != spec.name));
            for (j, t) in spec.tunables.iter().enumerate() {
                assert!(spec.tunables[..j].iter().all(|u| u.name != t.name));
                assert!(t.min <= t.default && t.default <= t.max, "{}", t.name);
            }
            assert!(spec.check_replicas(spec.replicas(1) as usize).is_ok());
            // A configuration may name every group the protocol runs.
            assert!(spec.replicas_max + spec.services.len() <= crate::control::REPLICAS_MAX);
            assert!(spec.check_nodes(spec.nodes(1) as usize).is_ok());
        }
        assert_eq!(lookup("pbft").unwrap().name, "pbft");
        assert!(lookup("raft").unwrap_err().contains("unreplicated, pbft"));
    }

    #[test]
    fn replica_rules() {
        assert_eq!(Replication::Bft.replicas(2), 7);
        assert_eq!(Replication::Cft.replicas(2), 5);
        assert_eq!(Replication::Chain.replicas(2), 3);
        assert_eq!(Replication::Bft.replicas(u32::MAX), u32::MAX);
        assert!(Replication::Bft.fits(4) && Replication::Bft.fits(5));
        assert!(!Replication::Bft.fits(3) && !Replication::Bft.fits(0));
        assert_eq!(Replication::Bft.faults(6), 1);
        assert_eq!(Replication::Bft.faults(7), 2);
        assert!(Replication::Single.fits(1) && !Replication::Single.fits(2));
        let pbft = lookup("pbft").unwrap();
        assert!(pbft.check_replicas(3).unwrap_err().contains("3f + 1"));
        assert!(pbft.check_replicas(13).unwrap_err().contains("at most 10"));
        let base = lookup("unreplicated").unwrap();
        assert!(base.check_replicas(2).unwrap_err().contains("exactly one"));
    }

    /// A protocol with a service, as chain replication is: f + 1 replicas
    /// and a master.
    static CHAIN: ProtocolSpec = ProtocolSpec {
        name: "chain",
        about: "a test's chain",
        replication: Replication::Chain,
        replicas_max: 8,
        services: &["master"],
        signs: false,
        batches: false,
        rotates_leader: false,
        counters: &[],
        tunables: &[],
    };

    #[test]
    fn services_follow_the_replicas() {
        assert_eq!(CHAIN.replicas(1), 2);
        assert_eq!(CHAIN.nodes(1), 3);
        assert_eq!(CHAIN.nodes(u32::MAX), u32::MAX);
        assert_eq!(CHAIN.replicas_among(3), Some(2));
        assert_eq!(CHAIN.replicas_among(0), None);
        assert_eq!(CHAIN.service_at(3, 1), None);
        assert_eq!(CHAIN.service_at(3, 2), Some("master"));
        assert_eq!(CHAIN.service_at(3, 3), None);
        assert_eq!(CHAIN.services_phrase(), "a master");
        CHAIN.check_nodes(3).unwrap();
        CHAIN.check_nodes(9).unwrap();
        let err = CHAIN.check_nodes(2).unwrap_err();
        assert!(
            err.contains("at least 2 replicas") && err.contains("besides a master"),
            "{err}"
        );
        let err = CHAIN.check_nodes(10).unwrap_err();
        assert!(err.contains("at most 8 replicas"), "{err}");
        for nodes in [0, 1] {
            let err = CHAIN.check_nodes(nodes).unwrap_err();
            assert!(
                err.contains("then a master, which `replicas` lists last"),
                "{err}"
            );
        }
        // Protocols without services count every node a replica.
        for spec in PROTOCOLS.iter().filter(|spec| spec.services.is_empty()) {
            assert_eq!(spec.nodes(2), spec.replicas(2));
            assert_eq!(spec.service_at(4, 3), None);
            assert_eq!(spec.services_phrase(), "");
            assert_eq!(spec.check_nodes(2), spec.check_replicas(2));
        }
        let two = ProtocolSpec {
            services: &["master", "observer"],
            ..CHAIN
        };
        assert_eq!(two.services_phrase(), "a master and an observer");
        assert_eq!(two.service_at(4, 3), Some("observer"));
    }

    #[test]
    fn settings_are_checked_against_the_bounds() {
        let pbft = lookup("pbft").unwrap();
        let batch = pbft.tunable("batch_max").unwrap();
        let settings = pbft.settings(&[("batch_max".into(), 10)]).unwrap();
        assert_eq!(settings.get(batch), 10);
        assert_eq!(settings.changed(), vec![("batch_max".to_string(), 10)]);
        assert_eq!(pbft.defaults().get(batch), batch.default);
        assert!(pbft.defaults().changed().is_empty());
        let problems = pbft
            .settings(&[
                ("batch_max".into(), 0),
                ("batch_max".into(), 1),
                ("nonsense".into(), 1),
                ("window".into(), u64::MAX),
            ])
            .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("pbft.batch_max=0: out of range"));
        assert!(problems[1].contains("set twice"));
        assert!(problems[2].contains("no such tunable"));
        assert!(problems[3].starts_with("pbft.window=18446744073709551615"));
        let base = lookup("unreplicated").unwrap();
        let problem = &base.settings(&[("batch_max".into(), 1)]).unwrap_err()[0];
        assert!(problem.contains("no such tunable"), "{problem}");
        assert!(base.settings(&[("durable".into(), 2)]).is_err());
    }
}
