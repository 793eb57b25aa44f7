//! A fault schedule: what happens to which node when, during each point of
//! an experiment ([`crate::experiment::Experiment::faults`]).
//!
//! On the command line each fault is one `--fault AT:ACTION[:TARGET]`, e.g.
//! `--fault 3s:kill:primary --fault 6s:restart:primary`:
//!
//! - `AT`: a time into the measured window (after the warm-up), in
//!   humantime's words (`3s`, `1500ms`). It must fall inside the window.
//!   The point's results record each fault at the time it was applied, in
//!   milliseconds since the clients node started
//!   ([`crate::results::FaultRecord::at_ms`]), the clock of the clients'
//!   interval reports: the warm-up plus `AT`, plus the few milliseconds it
//!   took to apply.
//! - `ACTION`: `kill` (SIGKILL), `stop` (SIGSTOP), `resume` (SIGCONT),
//!   `restart` (a new `node serve` for a killed node: same id, address and
//!   keys, the same run directory, recovering from its durable state),
//!   `partition` (the target set is cut off from every other node and the
//!   clients, both ways), `heal` (no target: ends the partition),
//!   `slow=2ms` (added processing delay per message handled; `slow=0`
//!   ends it), `byzantine=mute|equivocate|corrupt|replay`, and `honest`
//!   (ends it).
//! - `TARGET`: `primary` or `leader` (the group's leader when the fault
//!   applies, from what the replicas report: PBFT's primary of the current
//!   view, chain replication's head), `replica:N`, or `clients` (partition
//!   only: killing or stopping the clients would stop the measurement
//!   itself, and they have no Byzantine behaviour). A partition takes a
//!   `+`-joined set: `replica:1+replica:2`.
//!
//! A fault that ends another (`restart`, `resume`, `honest`, `slow=0`)
//! names its target as the one it ends did: `restart:primary` restarts the
//! node that `kill:primary` chose, even if the leader has changed since.
//!
//! The schedule applies to the points of replicated protocols; the
//! unreplicated baseline runs without faults, as the reference.
//!
//! Partitions use a drop filter in each replica's transport, driven over the
//! control connection, on every kind of host (loopback, namespaces, ssh):
//! no packet filter in the kernel is needed (this machine has neither
//! iptables nor nft). Kill, stop and restart signal the node's process and
//! so need it on this machine (local or namespace hosts, not ssh).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::control::Behaviour;
use wire::registry::{ProtocolSpec, Replication};

/// Most faults in one schedule.
pub const FAULTS_MAX: usize = 64;

/// Largest `slow=` delay per message.
pub const SLOW_MAX: Duration = Duration::from_secs(1);

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// Into the measured window (after the warm-up).
    pub at: Duration,
    pub action: Action,
    /// The nodes it applies to; empty for `heal`. One node except for a
    /// partition.
    pub targets: Vec<Target>,
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Kill,
    Stop,
    Resume,
    Restart,
    Partition,
    Heal,
    /// Added processing delay per message, in microseconds (0: ends it).
    Slow {
        us: u64,
    },
    Byzantine(Behaviour),
    Honest,
}

/// Which node a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The group's leader when the fault applies.
    Leader,
    Replica(u8),
    Clients,
}

impl ScheduledFault {
    /// How a fault is named in the results and the progress output: the
    /// schedule's words, with the leader resolved (`kill primary (replica
    /// 0)` is `label(Some(..))`).
    pub fn label(&self, resolved: &[u8]) -> String {
        let mut label = format!("{}", self.action);
        if !self.targets.is_empty() {
            label.push(' ');
            label.push_str(&join_targets(&self.targets));
        }
        if self.targets.contains(&Target::Leader) && !resolved.is_empty() {
            let nodes: Vec<String> = resolved.iter().map(|r| format!("replica {r}")).collect();
            label.push_str(&format!(" ({})", nodes.join(", ")));
        }
        label
    }

    /// The action that this one ends, if it ends one (`restart` ends
    /// `kill`).
    pub fn ends(&self) -> Option<&'static str> {
        match self.action {
            Action::Restart => Some("kill"),
            Action::Resume => Some("stop"),
            Action::Honest => Some("byzantine"),
            Action::Slow { us: 0 } => Some("slow"),
            Action::Heal => Some("partition"),
            _ => None,
        }
    }

    /// The family of actions it belongs to (`kill` and `restart` are one),
    /// for pairing a fault with what ends it.
    pub fn family(&self) -> &'static str {
        match self.action {
            Action::Kill | Action::Restart => "kill",
            Action::Stop | Action::Resume => "stop",
            Action::Byzantine(_) | Action::Honest => "byzantine",
            Action::Slow { .. } => "slow",
            Action::Partition | Action::Heal => "partition",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Kill => f.write_str("kill"),
            Action::Stop => f.write_str("stop"),
            Action::Resume => f.write_str("resume"),
            Action::Restart => f.write_str("restart"),
            Action::Partition => f.write_str("partition"),
            Action::Heal => f.write_str("heal"),
            Action::Slow { us } => write!(f, "slow={}", humantime::format_duration(micros(*us))),
            Action::Byzantine(b) => write!(f, "byzantine={}", b.name()),
            Action::Honest => f.write_str("honest"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("primary"),
            Target::Replica(i) => write!(f, "replica:{i}"),
            Target::Clients => f.write_str("clients"),
        }
    }
}

fn join_targets(targets: &[Target]) -> String {
    targets
        .iter()
        .map(Target::to_string)
        .collect::<Vec<_>>()
        .join("+")
}

impl fmt::Display for ScheduledFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", humantime::format_duration(self.at), self.action)?;
        if !self.targets.is_empty() {
            write!(f, ":{}", join_targets(&self.targets))?;
        }
        Ok(())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "primary" | "leader" => Ok(Target::Leader),
            "clients" => Ok(Target::Clients),
            _ => {
                let id = s.strip_prefix("replica:").ok_or_else(|| {
                    format!("unknown target {s:?}: primary, leader, replica:N or clients")
                })?;
                id.parse()
                    .map(Target::Replica)
                    .map_err(|_| format!("target {s:?}: replica:N takes a replica id (0 to 255)"))
            }
        }
    }
}

impl FromStr for ScheduledFault {
    type Err = String;

    /// `AT:ACTION[:TARGET]` (see the module docs).
    fn from_str(s: &str) -> Result<ScheduledFault, String> {
        let mut parts = s.splitn(3, ':');
        let (at, action) = match (parts.next(), parts.next()) {
            (Some(at), Some(action)) => (at, action),
            _ => {
                return Err(format!(
                    "{s:?}: expected AT:ACTION[:TARGET], e.g. 3s:kill:primary"
                ));
            }
        };
        let target = parts.next();
        let at = humantime::parse_duration(at)
            .map_err(|e| format!("{s:?}: time {at:?}: {e} (e.g. 3s, 1500ms)"))?;
        let action = match action.split_once('=') {
            None => match action {
                "kill" => Action::Kill,
                "stop" => Action::Stop,
                "resume" => Action::Resume,
                "restart" => Action::Restart,
                "partition" => Action::Partition,
                "heal" => Action::Heal,
                "honest" => Action::Honest,
                "slow" | "byzantine" => {
                    return Err(format!(
                        "{s:?}: {action} takes a value: slow=2ms, byzantine=mute|equivocate|corrupt|replay"
                    ));
                }
                other => {
                    return Err(format!(
                        "{s:?}: unknown action {other:?}; known: kill, stop, resume, restart, \
                         partition, heal, slow=DELAY, byzantine=BEHAVIOUR, honest"
                    ));
                }
            },
            Some(("slow", delay)) => {
                let delay = if delay == "0" {
                    Duration::ZERO
                } else {
                    humantime::parse_duration(delay)
                        .map_err(|e| format!("{s:?}: slow={delay}: {e} (e.g. slow=2ms)"))?
                };
                if delay > SLOW_MAX {
                    return Err(format!(
                        "{s:?}: slow={delay:?}: at most {}",
                        humantime::format_duration(SLOW_MAX)
                    ));
                }
                Action::Slow {
                    us: delay.as_micros() as u64,
                }
            }
            Some(("byzantine", behaviour)) => {
                Action::Byzantine(behaviour.parse().map_err(|e| format!("{s:?}: {e}"))?)
            }
            Some((other, _)) => {
                return Err(format!(
                    "{s:?}: {other:?} takes no value (only slow= and byzantine= do)"
                ));
            }
        };
        let targets = match (action, target) {
            (Action::Heal, None) => Vec::new(),
            (Action::Heal, Some(_)) => {
                return Err(format!(
                    "{s:?}: heal takes no target (it ends the partition)"
                ));
            }
            (_, None) => {
                return Err(format!(
                    "{s:?}: {action} needs a target, e.g. {action}:replica:1"
                ));
            }
            (Action::Partition, Some(set)) => set
                .split('+')
                .map(str::parse)
                .collect::<Result<Vec<Target>, String>>()
                .map_err(|e| format!("{s:?}: {e}"))?,
            (_, Some(one)) => {
                if one.contains('+') {
                    return Err(format!("{s:?}: only a partition takes a set of nodes"));
                }
                vec![one.parse().map_err(|e| format!("{s:?}: {e}"))?]
            }
        };
        Ok(ScheduledFault {
            at,
            action,
            targets,
        })
    }
}

/// Whether a schedule applies to points of `spec`: replicated protocols
/// only; the unreplicated baseline runs without faults, as the reference
/// the others are compared to.
pub fn applies_to(spec: &ProtocolSpec) -> bool {
    spec.replication != Replication::Single
}

/// Everything wrong with `schedule` for points of `spec` with `f` faults
/// and a measured window of `measured`, one line each, in the words of
/// `--fault`.
pub fn problems(
    schedule: &[ScheduledFault],
    spec: &ProtocolSpec,
    f: u32,
    measured: Duration,
) -> Vec<String> {
    let mut problems = Vec::new();
    if schedule.len() > FAULTS_MAX {
        problems.push(format!(
            "--fault: {} faults; at most {FAULTS_MAX}",
            schedule.len()
        ));
        return problems;
    }
    let n = spec.replicas(f);
    let name = spec.name;
    // What each family has in force, by target, in time order.
    let mut in_force: Vec<(&'static str, Target)> = Vec::new();
    let mut partitioned = false;
    for fault in in_order(schedule) {
        let mut problem = |p: String| problems.push(format!("--fault {fault}: {p}"));
        if fault.at >= measured {
            problem(format!(
                "at {} is not inside the measured window ({} long)",
                humantime::format_duration(fault.at),
                humantime::format_duration(measured)
            ));
        }
        for target in &fault.targets {
            match target {
                Target::Replica(i) if u32::from(*i) >= n => problem(format!(
                    "{name} with f = {f} has replicas 0 to {}",
                    n.saturating_sub(1)
                )),
                Target::Clients if fault.action != Action::Partition => problem(
                    "the clients are what measures: killing, stopping or slowing them leaves \
                     nothing to measure (a partition may cut them off)"
                        .to_string(),
                ),
                _ => {}
            }
        }
        if fault.action == Action::Partition
            && fault.targets.iter().all(|t| *t == Target::Clients)
            && fault.targets.len() > 1
        {
            problem("the set names the clients twice".to_string());
        }
        if let Action::Byzantine(_) = fault.action
            && spec.replication != Replication::Bft
        {
            problem(format!(
                "{name} tolerates crashes only ({:?} replication): a Byzantine replica is \
                 outside its fault model",
                spec.replication
            ));
        }
        match fault.action {
            Action::Heal => {
                if !partitioned {
                    problem("no partition to heal".to_string());
                }
                partitioned = false;
            }
            Action::Partition => partitioned = true,
            _ => {
                let target = fault.targets[0];
                let key = (fault.family(), target);
                match fault.ends() {
                    Some(started) => {
                        if let Some(at) = in_force.iter().position(|k| *k == key) {
                            in_force.remove(at);
                        } else {
                            problem(format!("no earlier {started} of {target} to end"));
                        }
                    }
                    None => {
                        let down = |family| {
                            in_force
                                .iter()
                                .any(|&(fam, t)| fam == family && t == target)
                        };
                        if down("kill") {
                            problem(format!("{target} was killed and not restarted"));
                        } else if fault.family() == "kill" && down("stop") {
                            problem(format!("{target} is stopped; resume it first"));
                        } else if matches!(fault.action, Action::Kill | Action::Stop)
                            && down(fault.family())
                        {
                            problem(format!("{target} is already down"));
                        }
                        if !down(fault.family()) {
                            in_force.push(key);
                        }
                    }
                }
            }
        }
    }
    problems
}

/// The faults in the order they apply: by time, and in the order given at
/// one time.
pub fn in_order(schedule: &[ScheduledFault]) -> Vec<&ScheduledFault> {
    let mut faults: Vec<&ScheduledFault> = schedule.iter().collect();
    faults.sort_by_key(|fault| fault.at);
    faults
}

fn micros(us: u64) -> Duration {
    Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ScheduledFault {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_grammar_round_trips() {
        for s in [
            "3s:kill:primary",
            "6s:restart:primary",
            "1s 500ms:stop:replica:2",
            "2s:partition:replica:1+replica:2",
            "2s:partition:clients",
            "4s:heal",
            "1s:slow=2ms:replica:3",
            "1s:slow=0s:replica:3",
            "1s:byzantine=equivocate:replica:1",
            "2s:honest:replica:1",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
        assert_eq!(parse("3s:kill:leader").targets, [Target::Leader]);
        assert_eq!(parse("1s:slow=0:replica:1").action, Action::Slow { us: 0 });
        assert_eq!(
            parse("1500ms:byzantine=mute:replica:0"),
            ScheduledFault {
                at: Duration::from_millis(1500),
                action: Action::Byzantine(Behaviour::Mute),
                targets: vec![Target::Replica(0)],
            }
        );
    }

    #[test]
    fn bad_faults_say_what_is_wrong() {
        for (s, says) in [
            ("kill", "expected AT:ACTION"),
            ("3x:kill:primary", "time \"3x\""),
            ("3s:explode:primary", "unknown action"),
            ("3s:kill", "needs a target"),
            ("3s:heal:replica:1", "heal takes no target"),
            ("3s:kill:replica:1+replica:2", "only a partition"),
            ("3s:kill:node:1", "unknown target"),
            ("3s:byzantine=loud:replica:1", "unknown Byzantine behaviour"),
            ("3s:slow:replica:1", "takes a value"),
            ("3s:slow=5s:replica:1", "at most 1s"),
            ("3s:kill=1:replica:1", "takes no value"),
        ] {
            let error = s.parse::<ScheduledFault>().unwrap_err();
            assert!(error.contains(says), "{s}: {error}");
        }
    }

    #[test]
    fn schedules_are_checked_against_the_group_and_the_window() {
        let pbft = wire::registry::lookup("pbft").unwrap();
        let chain = wire::registry::lookup("chain").unwrap();
        let window = Duration::from_secs(5);
        let check = |spec, faults: &[&str]| {
            let schedule: Vec<ScheduledFault> = faults.iter().map(|s| parse(s)).collect();
            problems(&schedule, spec, 1, window)
        };
        assert!(check(pbft, &["1s:kill:primary", "3s:restart:primary"]).is_empty());
        assert!(
            check(
                pbft,
                &[
                    "1s:partition:replica:3",
                    "2s:heal",
                    "1s:byzantine=replay:replica:2",
                    "3s:honest:replica:2",
                    "1s:stop:replica:1",
                    "2s:resume:replica:1",
                    "2s:slow=1ms:replica:0",
                    "3s:slow=0:replica:0",
                ]
            )
            .is_empty()
        );
        let one = |spec, faults: &[&str], says: &str| {
            let problems = check(spec, faults);
            assert_eq!(problems.len(), 1, "{faults:?}: {problems:?}");
            assert!(problems[0].contains(says), "{faults:?}: {problems:?}");
        };
        one(
            pbft,
            &["5s:kill:replica:1"],
            "not inside the measured window",
        );
        one(pbft, &["1s:kill:replica:4"], "replicas 0 to 3");
        one(
            pbft,
            &["1s:restart:replica:1"],
            "no earlier kill of replica:1",
        );
        one(
            pbft,
            &["1s:kill:primary", "2s:restart:replica:0"],
            "no earlier kill of replica:0",
        );
        one(pbft, &["1s:heal"], "no partition to heal");
        one(pbft, &["1s:kill:clients"], "the clients are what measures");
        one(
            pbft,
            &["1s:kill:replica:1", "2s:kill:replica:1"],
            "killed and not restarted",
        );
        one(
            pbft,
            &["1s:kill:replica:1", "2s:stop:replica:1"],
            "killed and not restarted",
        );
        one(pbft, &["2s:resume:replica:1"], "no earlier stop");
        one(
            chain,
            &["1s:byzantine=mute:replica:0"],
            "tolerates crashes only",
        );
        // In time order, whatever order they were given in.
        assert!(check(pbft, &["3s:restart:replica:2", "1s:kill:replica:2"]).is_empty());
    }
}
