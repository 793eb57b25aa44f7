//! Fault profiles and the plan builder every protocol's seeded runs share.
//!
//! A seed draws a fault plan for its profile and schedules it on the
//! simulator. Faults come together, not one at a time: in `all`, up to f
//! Byzantine replicas, crashes of others with and without their memory,
//! symmetric partitions and one-way cuts that also catch datagrams in
//! flight, loss, duplication, reordering, and delays of hundreds of
//! milliseconds that carry messages across views, all in one fault window.
//! At the window's end everything heals (the network calms down, partitions
//! heal, paused replicas resume, crashed ones restart), and liveness is
//! judged from that moment: every live client must finish within the
//! protocol's liveness bound.
//!
//! The model is kept: Byzantine replicas plus replicas that lost their
//! memory and have not recovered yet never exceed f (a crash without memory
//! happens only if the budget allows it at that moment, as the simulator
//! sees who is recovering), while pauses (a crash with memory kept) may
//! stop more than f replicas for a while. The `beyond` profile leaves the
//! model on purpose (more than f Byzantine, colluding, or overlapping
//! recoveries) and must produce violations: it shows the checkers can say
//! no.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use runtime::sim::{Factory, Network, NodeRef, Noise, Simulator, Tamper};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};
pub use wire::sim::Profile;

fn network_faults(profile: Profile) -> bool {
    matches!(profile, Profile::Network | Profile::All)
}

fn crash_faults(profile: Profile) -> bool {
    matches!(profile, Profile::Crash | Profile::All)
}

fn byzantine_faults(profile: Profile) -> bool {
    matches!(profile, Profile::Byzantine | Profile::All)
}

/// The nodes of a run, as the plan sees them.
#[derive(Clone, Debug)]
pub struct Group {
    pub replicas: Vec<Addr>,
    pub clients: Vec<Addr>,
    /// Faulty replicas the protocol tolerates.
    pub f: usize,
    /// Replicas may crash without their memory and recover (a protocol
    /// without durable state or a recovery protocol loses data by design if
    /// its only server forgets).
    pub amnesia: bool,
    /// Replicas keep what they persist through a crash ([`runtime::durable`]),
    /// so crashing one (and restarting it) stays within the model whatever
    /// the budget, and a crash may come between a persist and the sends
    /// behind it.
    pub durable: bool,
}

/// A protocol's Byzantine behaviours: for replica `id`, a tamperer drawn
/// from the stream, and its name for the trace.
pub type Behaviours<'a> = &'a mut dyn FnMut(&mut Rng, ReplicaId) -> (Box<dyn Tamper>, String);

/// A protocol's way of leaving the model: more than f replicas Byzantine
/// together, colluding (the protocol picks which).
pub type Collusion<'a> = &'a mut dyn FnMut(&mut Rng) -> Vec<(ReplicaId, Box<dyn Tamper>)>;

/// What a protocol contributes to a plan.
pub struct Adversaries<'a> {
    pub byzantine: Option<Behaviours<'a>>,
    pub collusion: Option<Collusion<'a>>,
}

impl fmt::Debug for Adversaries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adversaries")
            .field("byzantine", &self.byzantine.is_some())
            .field("collusion", &self.collusion.is_some())
            .finish()
    }
}

/// A protocol's twins (see [`runtime::sim::Simulator::add_twin`]): for
/// replica `id`, a factory of another correct copy of it, with its identity
/// and key. A plan that has them makes a Byzantine replica a twin with
/// probability `chance`, and splits the twins' audiences with partitions.
pub struct Twins<'a> {
    pub factory: &'a mut dyn FnMut(ReplicaId) -> Factory,
    pub chance: f64,
}

impl fmt::Debug for Twins<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twins")
            .field("chance", &self.chance)
            .finish_non_exhaustive()
    }
}

/// Partitions that split a twin from its original, per twin, at most.
pub const TWIN_SPLITS_MAX: u64 = 3;

/// The plan as scheduled.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Replicas that are Byzantine for the run (left out of agreement).
    pub byzantine: Vec<ReplicaId>,
    /// When every fault of the window has healed.
    pub heal_at: Time,
    /// What was planned, one line each, for the trace and failure reports.
    pub summary: Vec<String>,
}

/// Draws a plan for `profile` from `rng` and schedules it on `sim`.
pub fn schedule(
    sim: &mut Simulator,
    rng: &mut Rng,
    profile: Profile,
    group: &Group,
    adversaries: Adversaries<'_>,
) -> Plan {
    schedule_with_twins(sim, rng, profile, group, adversaries, None)
}

/// [`schedule`] for a protocol that offers twins: each Byzantine replica
/// drawn is a twin with the probability `twins` gives, instead of one of
/// the protocol's behaviours. Without twins the draws are [`schedule`]'s.
pub fn schedule_with_twins(
    sim: &mut Simulator,
    rng: &mut Rng,
    profile: Profile,
    group: &Group,
    adversaries: Adversaries<'_>,
    mut twins: Option<Twins<'_>>,
) -> Plan {
    let mut plan = Plan {
        heal_at: Time::from_nanos(rng.between(20, 250) * 1_000_000),
        ..Plan::default()
    };
    match profile {
        Profile::Mix => unreachable!("resolved per seed"),
        Profile::None => {
            plan.heal_at = Time::ZERO;
            return plan;
        }
        Profile::Beyond => {
            beyond(sim, rng, group, adversaries.collusion, &mut plan);
            return plan;
        }
        _ => {}
    }
    let window = plan.heal_at;
    let at = |rng: &mut Rng, until: Time| Time::from_nanos(rng.between(0, until.as_nanos()));

    // The network: lossy throughout the window, sometimes with long delays;
    // a little loss stays after it.
    let rate = [0.02, 0.05, 0.1, 0.2][rng.below(4) as usize];
    let network = if network_faults(profile) && rng.chance(0.5) {
        Network::laggy(rate, Duration::from_millis(rng.between(100, 500)))
    } else {
        Network::faulty(rate)
    };
    plan.summary
        .push(format!("network {network:?} until the heal"));
    sim.set_network(network);
    sim.schedule_fault(window, |sim| {
        sim.set_network(Network::faulty(0.01));
        sim.mark_healed();
    });

    // Byzantine replicas, at most f, from early on.
    let budget = Rc::new(RefCell::new(Budget {
        f: group.f,
        byzantine: 0,
    }));
    if byzantine_faults(profile)
        && group.f > 0
        && let Some(behaviours) = adversaries.byzantine
    {
        let count = rng.between(1, group.f as u64) as usize;
        let mut candidates: Vec<ReplicaId> = group
            .replicas
            .iter()
            .filter_map(|a| match a {
                Addr::Replica(r) => Some(*r),
                Addr::Client(_) => None,
            })
            .collect();
        for _ in 0..count {
            let id = candidates.remove(rng.below(candidates.len() as u64) as usize);
            if let Some(twins) = twins.as_mut()
                && rng.chance(twins.chance)
            {
                let factory = (twins.factory)(id);
                twin(sim, rng, group, id, factory, &mut plan);
                budget.borrow_mut().byzantine += 1;
                continue;
            }
            let (tamper, name) = behaviours(rng, id);
            let start = at(rng, Time::from_nanos(window.as_nanos() / 2));
            plan.summary
                .push(format!("replica {} byzantine ({name}) from {start}", id.0));
            plan.byzantine.push(id);
            budget.borrow_mut().byzantine += 1;
            sim.schedule(start, move |sim| {
                sim.set_byzantine(Addr::Replica(id), tamper)
            });
        }
    }
    if byzantine_faults(profile) && rng.chance(0.3) {
        let target = group.replicas[rng.below(group.replicas.len() as u64) as usize];
        let interval = Duration::from_micros(rng.between(50, 1000));
        let noise = Addr::Client(ClientId(u64::MAX));
        plan.summary
            .push(format!("noise at {target} every {interval:?}"));
        sim.add_node(
            noise,
            Box::new(move |rng| Box::new(Noise::new(noise, target, interval, rng))),
        );
    }
    let correct: Vec<Addr> = group
        .replicas
        .iter()
        .copied()
        .filter(|a| !matches!(a, Addr::Replica(r) if plan.byzantine.contains(r)))
        .collect();

    // Crashes: without memory within the budget, with memory (pauses) of
    // any number, and of clients.
    if crash_faults(profile) {
        if group.durable {
            for _ in 0..rng.between(1, 3) {
                let victim = correct[rng.below(correct.len() as u64) as usize];
                let crash = at(rng, window);
                let restart = (crash + Duration::from_millis(rng.between(1, 200))).min(window);
                // At its next persist (the write kept or lost), or at once.
                let at_persist = rng.chance(0.5).then(|| rng.chance(0.5));
                let how = match at_persist {
                    Some(true) => "at its next persist (write kept)",
                    Some(false) => "at its next persist (write lost)",
                    None => "with its durable state",
                };
                plan.summary.push(format!(
                    "{victim} crashes {how} from {crash}, restarts at {restart}"
                ));
                sim.schedule_fault(crash, move |sim| {
                    if sim.is_running(victim) && !sim.is_paused(victim) {
                        match at_persist {
                            Some(durable) => sim.crash_at_next_persist(victim, durable),
                            None => sim.crash(victim),
                        }
                    }
                });
                sim.schedule_fault(restart, move |sim| {
                    sim.cancel_crash_at_persist(victim);
                    if !sim.is_running(victim) {
                        sim.restart(victim);
                    }
                });
            }
        } else if group.amnesia {
            for _ in 0..rng.between(1, 3) {
                let victim = correct[rng.below(correct.len() as u64) as usize];
                let crash = at(rng, window);
                let restart = (crash + Duration::from_millis(rng.between(1, 200))).min(window);
                plan.summary.push(format!(
                    "{victim} crashes at {crash} (if the budget allows), restarts at {restart}"
                ));
                let budget = Rc::clone(&budget);
                let replicas = group.replicas.clone();
                sim.schedule_fault(crash, move |sim| {
                    if budget.borrow().allows_amnesia(sim, &replicas, victim) {
                        sim.crash(victim);
                    }
                });
                sim.schedule_fault(restart, move |sim| {
                    if !sim.is_running(victim) {
                        sim.restart(victim);
                    }
                });
            }
        }
        for client in &group.clients {
            if rng.chance(0.1) {
                let client = *client;
                let when = at(rng, window);
                plan.summary.push(format!("{client} crashes at {when}"));
                sim.schedule(when, move |sim| sim.crash(client));
            }
        }
    }
    if crash_faults(profile) || network_faults(profile) {
        for _ in 0..rng.between(0, 3) {
            let count = rng.between(1, group.replicas.len() as u64) as usize;
            let victims = pick(rng, &group.replicas, count);
            let start = at(rng, window);
            let end = (start + Duration::from_millis(rng.between(5, 300))).min(window);
            plan.summary
                .push(format!("{victims:?} paused from {start} to {end}"));
            let resumed = victims.clone();
            sim.schedule_fault(start, move |sim| {
                for &v in &victims {
                    if sim.is_running(v) {
                        sim.pause(v);
                    }
                }
            });
            sim.schedule_fault(end, move |sim| {
                for &v in &resumed {
                    sim.resume(v);
                }
            });
        }
    }

    // Partitions, symmetric and one-way, replicas and clients alike.
    let everyone: Vec<Addr> = group
        .replicas
        .iter()
        .chain(&group.clients)
        .copied()
        .collect();
    if network_faults(profile) && everyone.len() >= 2 {
        for _ in 0..rng.between(1, 3) {
            let start = at(rng, window);
            let end = (start + Duration::from_millis(rng.between(5, 250))).min(window);
            let size = rng.between(1, everyone.len() as u64 - 1) as usize;
            let side = pick(rng, &everyone, size);
            if rng.chance(0.5) {
                plan.summary
                    .push(format!("partition {side:?} | rest from {start} to {end}"));
                sim.schedule_fault(start, move |sim| sim.partition(&[&side]));
            } else {
                let others: Vec<Addr> = everyone
                    .iter()
                    .copied()
                    .filter(|a| !side.contains(a))
                    .collect();
                let size = rng.between(1, others.len() as u64) as usize;
                let to = pick(rng, &others, size);
                plan.summary
                    .push(format!("cut {side:?} -> {to:?} from {start} to {end}"));
                sim.schedule_fault(start, move |sim| sim.cut(&side, &to));
            }
            sim.schedule_fault(end, Simulator::heal);
        }
    }

    // The heal: everything at once, at the end of the window.
    let replicas = group.replicas.clone();
    sim.schedule_fault(window, move |sim| {
        sim.heal();
        for &r in &replicas {
            sim.cancel_crash_at_persist(r);
            if !sim.is_running(r) {
                sim.restart(r);
            } else {
                sim.resume(r);
            }
        }
        sim.mark_healed();
    });
    plan
}

/// Makes replica `id` a twin from early in the window, and splits the
/// group between the two copies once or a few times: each other replica
/// and client goes with the original or with the twin, so that each copy
/// speaks to its own audience and the two diverge.
fn twin(
    sim: &mut Simulator,
    rng: &mut Rng,
    group: &Group,
    id: ReplicaId,
    factory: Factory,
    plan: &mut Plan,
) {
    let window = plan.heal_at;
    let addr = Addr::Replica(id);
    let start = Time::from_nanos(rng.between(0, window.as_nanos() / 2));
    plan.summary
        .push(format!("replica {} byzantine (twin) from {start}", id.0));
    plan.byzantine.push(id);
    sim.schedule(start, move |sim| {
        sim.add_twin(addr, factory);
    });
    let others: Vec<Addr> = group
        .replicas
        .iter()
        .chain(&group.clients)
        .copied()
        .filter(|&a| a != addr)
        .collect();
    for _ in 0..rng.between(1, TWIN_SPLITS_MAX) {
        let from = Time::from_nanos(rng.between(start.as_nanos(), window.as_nanos()));
        let until = (from + Duration::from_millis(rng.between(5, 250))).min(window);
        let mut first = vec![NodeRef::from(addr)];
        let mut second = vec![NodeRef::new(addr, 1)];
        for &other in &others {
            if rng.chance(0.5) {
                first.push(other.into());
            } else {
                second.push(other.into());
            }
        }
        let show = |side: &[NodeRef]| {
            let names: Vec<String> = side.iter().map(ToString::to_string).collect();
            names.join(", ")
        };
        plan.summary.push(format!(
            "twins split [{}] | [{}] from {from} to {until}",
            show(&first),
            show(&second)
        ));
        sim.schedule_fault(from, move |sim| sim.partition_nodes(&[&first, &second]));
        sim.schedule_fault(until, Simulator::heal);
    }
}

/// Who counts toward f: Byzantine replicas, and replicas that lost their
/// memory and have not recovered yet.
struct Budget {
    f: usize,
    byzantine: usize,
}

impl Budget {
    fn allows_amnesia(&self, sim: &Simulator, replicas: &[Addr], victim: Addr) -> bool {
        if !sim.is_running(victim) || sim.is_recovering(victim) || sim.is_paused(victim) {
            return false;
        }
        let amnesiac = replicas
            .iter()
            .filter(|&&r| !sim.is_running(r) || sim.is_recovering(r))
            .count();
        self.byzantine + amnesiac < self.f
    }
}

/// More than f faulty replicas: colluding Byzantine replicas where the
/// protocol has them, else overlapping recoveries.
fn beyond(
    sim: &mut Simulator,
    rng: &mut Rng,
    group: &Group,
    collusion: Option<Collusion<'_>>,
    plan: &mut Plan,
) {
    let count = (group.f + 1).min(group.replicas.len());
    let victims: Vec<ReplicaId> = pick(rng, &group.replicas, count)
        .into_iter()
        .filter_map(|a| match a {
            Addr::Replica(r) => Some(r),
            Addr::Client(_) => None,
        })
        .collect();
    match collusion {
        Some(collude) => {
            for (id, tamper) in collude(rng) {
                plan.summary
                    .push(format!("replica {} byzantine, colluding", id.0));
                plan.byzantine.push(id);
                sim.set_byzantine(Addr::Replica(id), tamper);
            }
            plan.heal_at = Time::ZERO;
        }
        None => {
            // Restart more than f replicas without their memory (and, for
            // a protocol that relies on durable state, without that too),
            // each before the last has recovered.
            let mut when = Time::from_nanos(rng.between(5, 40) * 1_000_000);
            let durable = group.durable;
            for id in victims {
                let addr = Addr::Replica(id);
                let lost = if durable {
                    ", its durable state lost,"
                } else {
                    ""
                };
                plan.summary
                    .push(format!("{addr} crashes{lost} and restarts at {when}"));
                sim.schedule_fault(when, move |sim| {
                    sim.crash(addr);
                    if durable {
                        sim.lose_durable_state(addr);
                    }
                    sim.restart(addr);
                });
                when = when + Duration::from_millis(rng.between(1, 10));
            }
            plan.heal_at = when;
        }
    }
}

/// When clients that join late start: one or two, at random times from the
/// middle of the fault window to just after the heal, so that some
/// operations run through the faults and some after them.
pub fn late_joiners(rng: &mut Rng, plan: &Plan) -> Vec<Time> {
    let window = plan.heal_at.as_nanos();
    (0..rng.between(1, 2))
        .map(|_| Time::from_nanos(rng.between(window / 2, window + 20_000_000)))
        .collect()
}

/// `count` distinct elements of `from`, in a random order.
fn pick(rng: &mut Rng, from: &[Addr], count: usize) -> Vec<Addr> {
    let mut pool = from.to_vec();
    let mut chosen = Vec::with_capacity(count);
    for _ in 0..count.min(pool.len()) {
        chosen.push(pool.remove(rng.below(pool.len() as u64) as usize));
    }
    chosen
}
