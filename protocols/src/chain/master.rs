//! The master: detects failed servers and reconfigures the chain (the
//! paper's §3). One process, never faulted in this model.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use runtime::{Addr, Context, ReplicaId, State, Time};
use wire::chain::{Config, Message, Ping, Pong};
use wire::control::VIEW_CHANGES_COUNTER;

use super::{Codec, Timing, initial_config};

/// The master's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Look for failed servers and for servers to add.
    Tick,
}

type Ctx<'a, 'b> = Context<'a, Message, Timer>;

/// A server in the chain, as the master knows it.
#[derive(Clone, Debug)]
struct Member {
    id: ReplicaId,
    /// The incarnation in the chain; `None` for a server of epoch 0 not
    /// heard from yet (its first ping names it).
    nonce: Option<u64>,
    /// Whether it said it holds every committed update.
    synced: bool,
    /// The newest moment it is known to have been alive: the token of a
    /// `Pong` it echoed.
    proof: Time,
    /// A newer incarnation pinged: this one is gone.
    dead: bool,
    /// The epoch it was added in (0: a server of the first configuration).
    joined: u64,
}

/// A server outside the chain that asks to be in it.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    nonce: u64,
    proof: Time,
}

/// The master's view of the chain, for a simulation's fault plan: which
/// servers hold the whole state and when each last proved it was alive.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub epoch: u64,
    /// In chain order: server, whether it is synced, its proof of life.
    pub members: Vec<(ReplicaId, bool, Time)>,
    pub fresh: Duration,
}

impl View {
    /// Whether a server other than `victim` that is `running` holds the
    /// whole state and was alive within the master's freshness window at
    /// `now`: then `victim` may fail without the chain losing a completed
    /// update, whatever the master does next (see the module docs of
    /// [`crate::chain`]).
    pub fn survives_without(
        &self,
        victim: ReplicaId,
        now: Time,
        running: impl Fn(ReplicaId) -> bool,
    ) -> bool {
        self.members.iter().any(|&(id, synced, proof)| {
            id != victim && synced && proof + self.fresh >= now && running(id)
        })
    }
}

/// Where a master publishes its [`View`] (simulations only).
pub type Observer = Arc<Mutex<View>>;

/// The master of a chain of `n` servers.
pub struct Master {
    n: usize,
    timing: Timing,
    config: Config,
    members: Vec<Member>,
    candidates: BTreeMap<ReplicaId, Candidate>,
    /// The tail it last granted a lease, and when it granted it.
    lease: Option<(ReplicaId, Time)>,
    /// A configuration with another tail waits for the old tail's lease:
    /// meanwhile no lease is granted.
    tail_changing: bool,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Master {
    pub fn new(n: usize, timing: Timing) -> Master {
        let config = initial_config(n);
        let members = config
            .chain
            .iter()
            .map(|&id| Member {
                id,
                nonce: None,
                synced: true,
                proof: Time::ZERO,
                dead: false,
                joined: 0,
            })
            .collect();
        Master {
            n,
            timing,
            config,
            members,
            candidates: BTreeMap::new(),
            lease: None,
            tail_changing: false,
            observer: None,
        }
    }

    /// A master that publishes its view to `observer` (simulations).
    pub fn observed(n: usize, timing: Timing, observer: Observer) -> Master {
        let mut master = Master::new(n, timing);
        master.observer = Some(observer);
        master.publish();
        master
    }

    /// The current configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn publish(&self) {
        let Some(observer) = &self.observer else {
            return;
        };
        let mut view = observer.lock().unwrap_or_else(PoisonError::into_inner);
        view.epoch = self.config.epoch;
        view.fresh = self.timing.fresh;
        view.members.clear();
        view.members.extend(
            self.members
                .iter()
                .map(|m| (m.id, m.synced && !m.dead, m.proof)),
        );
    }

    fn is_fresh(&self, member: &Member, now: Time) -> bool {
        !member.dead && member.proof + self.timing.fresh >= now
    }

    fn on_ping(&mut self, id: ReplicaId, ping: Ping, ctx: &mut Ctx<'_, '_>) {
        let Ping {
            nonce,
            joined,
            synced,
            echo,
            sent_at,
            ..
        } = ping;
        let now = ctx.now();
        // The token is this master's own clock when it sent the pong the
        // server echoes: the server was alive after that.
        let proof = Time::from_nanos(echo).min(now);
        // Who pinged: this member's incarnation (and since which epoch), a
        // server outside the chain, or one whose incarnation is in doubt.
        enum Pinger {
            Member { joined: u64 },
            Outsider,
            Doubtful,
        }
        let pinger = match self.members.iter_mut().find(|m| m.id == id) {
            None => Pinger::Outsider,
            Some(m) => {
                if m.nonce.is_none() {
                    // A server of epoch 0 heard from for the first time:
                    // it has not acted before the master confirms it.
                    m.nonce = Some(nonce);
                }
                if m.nonce == Some(nonce) && !m.dead {
                    m.proof = m.proof.max(proof);
                    // Only a ping of this membership vouches for it.
                    m.synced |= synced && joined == m.joined;
                    Pinger::Member { joined: m.joined }
                } else if !m.dead && proof <= m.proof {
                    // Another incarnation, but nothing shows it is newer:
                    // a restarted server's first ping (it has no token yet),
                    // or a ping delayed from before the member's own. Its
                    // next ping (with the token of this pong) will tell.
                    ctx.count("master: ping of another incarnation");
                    Pinger::Doubtful
                } else {
                    if !m.dead {
                        ctx.count("master: server restarted");
                    }
                    m.dead = true;
                    Pinger::Outsider
                }
            }
        };
        if let Pinger::Outsider = pinger {
            let candidate = self.candidates.entry(id).or_insert(Candidate {
                nonce,
                proof: Time::ZERO,
            });
            if candidate.nonce != nonce {
                *candidate = Candidate {
                    nonce,
                    proof: Time::ZERO,
                };
            }
            candidate.proof = candidate.proof.max(proof);
        }
        let (member, since) = match pinger {
            Pinger::Member { joined } => (true, joined),
            Pinger::Outsider | Pinger::Doubtful => (false, 0),
        };
        let tail = self.config.chain.last() == Some(&id);
        let lease = member && tail && !self.tail_changing;
        if lease {
            self.lease = Some((id, now));
        }
        let pong = Message::Pong(Pong {
            config: self.config.clone(),
            nonce,
            member,
            joined: since,
            lease,
            token: now.as_nanos(),
            sent_at,
        });
        ctx.send(Addr::Replica(id), pong);
        self.publish();
    }

    /// Removes the servers that failed and adds one that asks to be in the
    /// chain, if it may.
    fn on_tick(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.set_timer(Timer::Tick, self.timing.heartbeat);
        let now = ctx.now();
        let mut target = self.members.clone();
        let mut removed = false;
        let mut i = 0;
        while i < target.len() {
            let m = &target[i];
            let suspected = m.dead || m.proof + self.timing.suspect < now;
            // Only while another server that holds the state is known to be
            // alive: never in favour of one that has just failed too.
            let survivor = target
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.synced && self.is_fresh(other, now));
            if suspected && survivor {
                target.remove(i);
                removed = true;
            } else {
                i += 1;
            }
        }
        if !removed && target.len() < self.n && target.iter().all(|m| m.synced && !m.dead) {
            let joiner = self
                .candidates
                .iter()
                .find(|(_, c)| c.proof + self.timing.fresh >= now)
                .map(|(&id, &c)| (id, c));
            if let Some((id, candidate)) = joiner {
                target.push(Member {
                    id,
                    nonce: Some(candidate.nonce),
                    synced: false,
                    proof: candidate.proof,
                    dead: false,
                    joined: self.config.epoch + 1,
                });
            }
        }
        let ids: Vec<ReplicaId> = target.iter().map(|m| m.id).collect();
        if ids == self.config.chain {
            self.tail_changing = false;
            return;
        }
        if ids.last() != self.config.chain.last() {
            // Another tail: the old one's lease must run out first.
            self.tail_changing = true;
            if let Some((tail, granted)) = self.lease
                && Some(&tail) == self.config.chain.last()
                && now < granted + self.timing.lease
            {
                return;
            }
        }
        self.install(ids, target, ctx);
    }

    fn install(&mut self, chain: Vec<ReplicaId>, members: Vec<Member>, ctx: &mut Ctx<'_, '_>) {
        let removed = self
            .members
            .iter()
            .filter(|m| !chain.contains(&m.id))
            .count();
        ctx.count_n("master: server removed", removed as u64);
        if chain.first() != self.config.chain.first() {
            // A new head is the chain's change of leader: the runner reports
            // these beside other protocols' view changes.
            ctx.count(VIEW_CHANGES_COUNTER);
        }
        for m in &members {
            if self.candidates.remove(&m.id).is_some() {
                ctx.count("master: server added");
            }
        }
        self.config = Config {
            epoch: self.config.epoch + 1,
            chain,
        };
        self.members = members;
        // The lease stays on record: the tail may be the same one, and its
        // lease outlives the epoch.
        self.tail_changing = false;
        ctx.count("master: epoch installed");
        let now = ctx.now();
        for m in &self.members {
            let Some(nonce) = m.nonce else { continue };
            let pong = Message::Pong(Pong {
                config: self.config.clone(),
                nonce,
                member: true,
                joined: m.joined,
                lease: false,
                token: now.as_nanos(),
                sent_at: 0,
            });
            ctx.send(Addr::Replica(m.id), pong);
        }
        self.publish();
    }
}

impl State for Master {
    type Message = Message;
    type Outbound = Message;
    type Timer = Timer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.set_timer(Timer::Tick, self.timing.heartbeat);
    }

    fn on_message(&mut self, from: Addr, msg: Message, ctx: &mut Ctx<'_, '_>) {
        match (from, msg) {
            (Addr::Replica(id), Message::Ping(ping)) if usize::from(id.0) < self.n => {
                self.on_ping(id, ping, ctx);
            }
            (Addr::Client(client_id), Message::Where { .. }) => {
                let redirect = Message::Redirect {
                    client_id,
                    config: self.config.clone(),
                };
                ctx.send(Addr::Client(client_id), redirect);
            }
            _ => ctx.drop_message("master: unexpected message"),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            Timer::Tick => self.on_tick(ctx),
        }
    }

    /// The head of the configuration it installed last.
    fn leader(&self) -> Option<ReplicaId> {
        self.config.chain.first().copied()
    }
}
