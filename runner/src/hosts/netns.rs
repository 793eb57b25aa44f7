//! Network namespaces on this machine as hosts: one namespace per node, all
//! joined by a bridge, optionally with `tc netem` on every link to emulate a
//! WAN.
//!
//! For a provider with prefix `pb<pid>-<slot>` and subnet 10.77.`k`.0/24:
//!
//! ```text
//! root namespace (the runner)                 namespace pb<pid>-<slot>-<i>
//! bridge pb<pid>-<slot>-br, 10.77.k.1/24
//!   +-- veth pb<pid>-<slot>-<i>  <---------->  eth0, 10.77.k.<i+2>/24
//!                                              (+ netem on its egress), lo up
//! ```
//!
//! The bridge lives in the root namespace and has an address, so the runner
//! reaches every node's control port directly; nodes reach each other through
//! the bridge. Nodes have no default route: they see their subnet only.
//!
//! Names: `<pid>` is the runner's process id, so two runner processes never
//! share a name; `<slot>` tells apart the providers alive at once in one
//! process (0 for the first, at most [`PROVIDERS_MAX`] at once), so that a
//! 7-digit pid, the slot and a 3-digit node index still fit the kernel's
//! 15-byte limit on interface names. A name left over from a killed run of a
//! process with the same pid makes setup fail with the `ip` command and its
//! complaint (`File exists`); the leftover is not ours, so it is left alone.
//! The subnet `k` is spread by pid and checked against the addresses already
//! on this machine (`ip -o addr`) and against the other providers of this
//! process; two runner processes that pick the same free `k` in the same
//! millisecond could still clash.
//!
//! Emulated WAN: a [`NetemProfile`] is applied with `tc qdisc add dev eth0
//! root netem ...` in every namespace, that is on each node's egress. A packet
//! from node a to node b crosses a's egress only, so it sees the delay once,
//! and a round trip (request and reply) sees it twice. The runner's control
//! traffic crosses the node's egress only: once per round trip. Loss applies per egress too, so
//! a round trip loses a request or its reply with about twice the loss rate.
//! With jitter, netem sends each packet at its own delayed time, so packets
//! get reordered, as on a real WAN path with several routes.
//! Where the kernel has no netem qdisc, the runner emulates the same
//! profile in the nodes' transports instead ([`crate::wan`]), and these
//! namespaces get no qdisc.
//!
//! Cleanup: [`Provider::cleanup`], drop, an error in [`Provider::hosts`] and
//! Ctrl-C (through [`crate::cleanup`]) all remove the veths, the namespaces
//! and the bridge. A process inside a namespace keeps running after the
//! namespace is deleted (and keeps it and its veth alive), so the runner must
//! stop its nodes before cleanup; cleanup also kills, with SIGKILL, whatever
//! is still in the namespaces (`ip netns pids`), so nothing outlives it.
//!
//! Needs root and iproute2 (`ip`, `tc`); [`NetnsHosts::available`] and
//! [`NetnsHosts::netem_available`] say whether this machine can. Every `ip`
//! and `tc` call runs in its own process group, so that a Ctrl-C at the
//! terminal reaches the runner (which then cleans up) but not the half-done
//! command. If the host firewall filters bridged traffic
//! (`net.bridge.bridge-nf-call-iptables = 1` with a dropping FORWARD chain),
//! nodes cannot reach each other; allow the 10.77.0.0/16 range.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};

use crate::cleanup::{self, Registration};
use crate::hosts::{Host, Launcher, Provider};

/// Most nodes one provider can host: addresses 10.77.k.2 to 10.77.k.254.
pub const NODES_MAX: usize = 253;
/// Most providers alive at once in one runner process.
pub const PROVIDERS_MAX: usize = 10;
/// How many packets netem may hold per link: with a delay, every packet in
/// flight on a link waits in its queue (100 ms at 100,000 packets/s is
/// 10,000). Past this, netem drops, which would look like loss.
pub const NETEM_LIMIT_PACKETS: u32 = 100_000;
/// Longest delay or jitter a profile may ask for.
pub const NETEM_DELAY_MAX: Duration = Duration::from_secs(10);
/// How long cleanup waits for killed processes to leave a namespace.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The first two octets of every subnet: 10.77.k.0/24.
const SUBNET_PREFIX: [u8; 2] = [10, 77];
/// The kernel's limit on interface names (IFNAMSIZ - 1).
const INTERFACE_NAME_MAX: usize = 15;

/// Link impairments applied with `tc netem` on each node's egress. The
/// default (all zero) is no netem at all.
///
/// Each applies once per egress: a one-way trip between two nodes sees
/// `delay` once, a request and its reply see it twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NetemProfile {
    /// Added to every packet leaving a node.
    pub delay: Duration,
    /// Random variation around `delay` (netem's default distribution);
    /// reorders packets.
    pub jitter: Duration,
    /// Share of packets leaving a node that are dropped, 0 to 100.
    pub loss_percent: f64,
    /// Egress bandwidth of each node, in Mbit/s; `None`: unlimited.
    pub rate_mbit: Option<u32>,
}

impl NetemProfile {
    /// `delay` on every egress, nothing else.
    pub fn delay(delay: Duration) -> NetemProfile {
        NetemProfile {
            delay,
            ..NetemProfile::default()
        }
    }

    /// Whether this profile asks for no impairment at all (no qdisc is added).
    pub fn is_none(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss_percent == 0.0
            && self.rate_mbit.is_none()
    }

    /// Refuses a profile netem cannot apply, in one line.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.delay <= NETEM_DELAY_MAX && self.jitter <= NETEM_DELAY_MAX,
            "netem delay {} and jitter {} must be at most {}",
            format_time(self.delay),
            format_time(self.jitter),
            format_time(NETEM_DELAY_MAX)
        );
        ensure!(
            self.loss_percent.is_finite() && (0.0..=100.0).contains(&self.loss_percent),
            "netem loss must be between 0 and 100 percent, not {}",
            self.loss_percent
        );
        ensure!(
            self.rate_mbit != Some(0),
            "netem rate must be at least 1 Mbit/s (leave it out for no limit)"
        );
        Ok(())
    }

    /// The options after `tc qdisc add dev eth0 root netem`; empty for no
    /// netem.
    pub fn tc_args(&self) -> Vec<String> {
        if self.is_none() {
            return Vec::new();
        }
        let mut args = vec!["limit".to_string(), NETEM_LIMIT_PACKETS.to_string()];
        if !self.delay.is_zero() || !self.jitter.is_zero() {
            args.push("delay".to_string());
            args.push(format!("{}us", self.delay.as_micros()));
            if !self.jitter.is_zero() {
                args.push(format!("{}us", self.jitter.as_micros()));
            }
        }
        if self.loss_percent > 0.0 {
            args.push("loss".to_string());
            args.push(format!("{}%", self.loss_percent));
        }
        if let Some(rate) = self.rate_mbit {
            args.push("rate".to_string());
            args.push(format!("{rate}mbit"));
        }
        args
    }
}

impl fmt::Display for NetemProfile {
    /// `netem delay 5ms ±1ms, loss 0.1%, rate 100 Mbit/s`, or `no netem`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("no netem");
        }
        let mut parts = Vec::new();
        if !self.delay.is_zero() || !self.jitter.is_zero() {
            let mut delay = format!("delay {}", format_time(self.delay));
            if !self.jitter.is_zero() {
                delay.push_str(&format!(" ±{}", format_time(self.jitter)));
            }
            parts.push(delay);
        }
        if self.loss_percent > 0.0 {
            parts.push(format!("loss {}%", self.loss_percent));
        }
        if let Some(rate) = self.rate_mbit {
            parts.push(format!("rate {rate} Mbit/s"));
        }
        write!(f, "netem {}", parts.join(", "))
    }
}

/// One network namespace per node on this machine, joined by a bridge in the
/// root namespace (see the module docs for the layout and the names).
///
/// [`Provider::hosts`] creates namespaces for nodes `0..count` that do not
/// exist yet and returns the first `count`; they stay until
/// [`Provider::cleanup`], which removes everything (and kills what still runs
/// inside). Stop the nodes first.
#[derive(Debug)]
pub struct NetnsHosts {
    netem: NetemProfile,
    network: Arc<Mutex<Network>>,
    /// Present while anything may exist, so that Ctrl-C removes it.
    registration: Option<Registration>,
}

impl NetnsHosts {
    /// A provider whose links all get `netem` (`NetemProfile::default()`:
    /// none). Creates nothing yet.
    pub fn new(netem: NetemProfile) -> anyhow::Result<NetnsHosts> {
        netem.validate()?;
        let slot = reserved().take_slot().ok_or_else(|| {
            anyhow!("network namespaces: at most {PROVIDERS_MAX} providers at once per process")
        })?;
        let prefix = format!("pb{}-{slot}", std::process::id());
        Ok(NetnsHosts {
            netem,
            network: Arc::new(Mutex::new(Network::new(prefix, slot))),
            registration: None,
        })
    }

    /// Whether this process can create namespaces, veths and bridges: it runs
    /// as root, `ip` is installed, and creating a probe namespace with a
    /// bridge and a veth pair inside works. `Err` says why not, in one line.
    pub fn available() -> Result<(), String> {
        if let Some(uid) = effective_uid()
            && uid != 0
        {
            return Err(format!(
                "not running as root (effective uid {uid}); network namespaces need root"
            ));
        }
        run("ip", &["-V"]).map_err(|e| format!("{e:#} (is iproute2 installed?)"))?;
        probe(|namespace| {
            run(
                "ip",
                &["-n", namespace, "link", "add", "pbr", "type", "bridge"],
            )?;
            run(
                "ip",
                &[
                    "-n", namespace, "link", "add", "pv", "type", "veth", "peer", "name", "pw",
                ],
            )?;
            Ok(())
        })
        .map_err(|e| format!("{e:#}"))
    }

    /// Whether [`NetnsHosts::available`] and, besides, the kernel has the
    /// netem qdisc (`CONFIG_NET_SCH_NETEM`) and `tc` is installed.
    pub fn netem_available() -> Result<(), String> {
        NetnsHosts::available()?;
        probe(|namespace| {
            run("ip", &["-n", namespace, "link", "set", "lo", "up"])?;
            let profile = NetemProfile::delay(Duration::from_millis(1));
            add_netem(namespace, "lo", &profile)
        })
        .map_err(|e| format!("{e:#}"))
    }

    /// `pb<pid>-<slot>`: every namespace, veth and bridge of this provider is
    /// named `<prefix>-<something>`.
    pub fn prefix(&self) -> String {
        self.lock().prefix.clone()
    }

    pub fn netem(&self) -> NetemProfile {
        self.netem
    }

    fn lock(&self) -> MutexGuard<'_, Network> {
        self.network.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Provider for NetnsHosts {
    /// Creates the bridge on first use and a namespace for each node in
    /// `0..count` that has none yet. On any error, removes everything this
    /// provider made (earlier nodes too) and returns the error.
    fn hosts(&mut self, count: usize, _node_binary: &Path) -> anyhow::Result<Vec<Host>> {
        ensure!(
            count <= NODES_MAX,
            "network namespaces: at most {NODES_MAX} nodes, not {count}"
        );
        let mut network = self.network.lock().unwrap_or_else(PoisonError::into_inner);
        ensure!(
            !network.interrupted,
            "network namespaces: interrupted, cleaning up"
        );
        if self.registration.is_none() {
            let network = Arc::clone(&self.network);
            self.registration = Some(cleanup::register(move || {
                let mut network = network.lock().unwrap_or_else(PoisonError::into_inner);
                network.interrupted = true;
                if let Err(error) = network.teardown() {
                    eprintln!("{error:#}");
                }
            }));
        }
        match network.grow(count, &self.netem) {
            Ok(()) => Ok(network.hosts[..count].to_vec()),
            Err(error) => match network.teardown() {
                Ok(()) => {
                    drop(network);
                    self.registration = None;
                    Err(error)
                }
                Err(cleanup) => Err(anyhow!("{error:#}\n{cleanup:#}")),
            },
        }
    }

    fn cleanup(&mut self) -> anyhow::Result<()> {
        self.lock().teardown()?;
        self.registration = None;
        Ok(())
    }

    /// `network namespaces pb123-0-0..2 on 10.77.5.0/24, netem delay 5ms ±1ms,
    /// loss 0.1%`.
    fn describe(&self) -> String {
        let network = self.lock();
        let nodes = match (network.hosts.len(), network.subnet) {
            (0, _) | (_, None) => format!("{}-* (none yet)", network.prefix),
            (1, Some(k)) => format!("{}-0 on {}", network.prefix, subnet_name(k)),
            (n, Some(k)) => format!("{}-0..{} on {}", network.prefix, n - 1, subnet_name(k)),
        };
        format!("network namespaces {nodes}, {}", self.netem)
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let mut network = self.lock();
        if let Err(error) = network.teardown() {
            eprintln!("{error:#}");
        }
        if network.is_empty() {
            // Nothing with this slot's names is left: a later provider of
            // this process may use them.
            reserved().slots.remove(&network.slot);
        }
    }
}

/// What a provider has made, recorded as soon as each piece exists, so that
/// teardown removes exactly that (and nothing someone else made).
#[derive(Debug)]
struct Network {
    /// `pb<pid>-<slot>`.
    prefix: String,
    slot: u8,
    /// `k` of 10.77.k.0/24, reserved in [`RESERVED`] while set.
    subnet: Option<u8>,
    /// Whether the bridge `<prefix>-br` exists.
    bridge: bool,
    /// Namespaces that exist, node `i` at index `i`.
    namespaces: Vec<String>,
    /// Root-namespace veth ends that exist (deleting one deletes its pair).
    veths: Vec<String>,
    /// Nodes that are fully set up, node `i` at index `i`.
    hosts: Vec<Host>,
    /// Set by the Ctrl-C cleanup: create nothing more.
    interrupted: bool,
}

impl Network {
    fn new(prefix: String, slot: u8) -> Network {
        Network {
            prefix,
            slot,
            subnet: None,
            bridge: false,
            namespaces: Vec::new(),
            veths: Vec::new(),
            hosts: Vec::new(),
            interrupted: false,
        }
    }

    fn bridge_name(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Namespace and root-side veth of node `i` share this name.
    fn node_name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn is_empty(&self) -> bool {
        self.subnet.is_none() && !self.bridge && self.namespaces.is_empty() && self.veths.is_empty()
    }

    /// Makes sure nodes `0..count` exist.
    fn grow(&mut self, count: usize, netem: &NetemProfile) -> anyhow::Result<()> {
        if count <= self.hosts.len() {
            return Ok(());
        }
        let k = match self.subnet {
            Some(k) => k,
            None => self.create_bridge()?,
        };
        for i in self.hosts.len()..count {
            self.add_node(i, k, netem)?;
        }
        Ok(())
    }

    /// Picks a free subnet and creates the bridge with address 10.77.k.1/24.
    fn create_bridge(&mut self) -> anyhow::Result<u8> {
        let bridge = self.bridge_name();
        assert!(bridge.len() <= INTERFACE_NAME_MAX, "{bridge} is too long");
        let k = {
            let mut reserved = reserved();
            let in_use = subnets_in_use()?;
            let start = (std::process::id() as usize)
                .wrapping_mul(37)
                .wrapping_add(usize::from(self.slot) * 101);
            let k = (0..256)
                .map(|offset| ((start + offset) % 256) as u8)
                .find(|k| !in_use.contains(k) && !reserved.subnets.contains(k))
                .ok_or_else(|| {
                    anyhow!(
                        "network namespaces: every subnet 10.77.0.0/24 to 10.77.255.0/24 is in use"
                    )
                })?;
            reserved.subnets.insert(k);
            k
        };
        self.subnet = Some(k);
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        self.bridge = true;
        let address = format!("{}/24", subnet_addr(k, 1));
        run("ip", &["addr", "add", &address, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        Ok(k)
    }

    /// Creates node `i`'s namespace and veth pair, with 10.77.k.`i + 2` on
    /// its `eth0` and `netem` on its egress.
    fn add_node(&mut self, i: usize, k: u8, netem: &NetemProfile) -> anyhow::Result<()> {
        assert_eq!(i, self.hosts.len(), "nodes are added in order");
        assert!(i < NODES_MAX);
        let name = self.node_name(i);
        assert!(name.len() <= INTERFACE_NAME_MAX, "{name} is too long");
        let addr = subnet_addr(k, 2 + i as u8);
        let bridge = self.bridge_name();

        run("ip", &["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        )?;
        self.veths.push(name.clone());
        let address = format!("{addr}/24");
        run("ip", &["-n", &name, "addr", "add", &address, "dev", "eth0"])?;
        run("ip", &["-n", &name, "link", "set", "eth0", "up"])?;
        run("ip", &["link", "set", &name, "master", &bridge])?;
        run("ip", &["link", "set", &name, "up"])?;
        if !netem.is_none() {
            add_netem(&name, "eth0", netem)?;
        }
        self.hosts.push(Host {
            name: format!("netns {name} ({addr})"),
            addr: IpAddr::V4(addr),
            launcher: Launcher::Netns { namespace: name },
        });
        Ok(())
    }

    /// Kills what runs in the namespaces, then removes the veths, the
    /// namespaces and the bridge. Best effort: goes on past a failure, keeps
    /// what it could not remove recorded (so a later call retries), and
    /// returns every failure in one error. Removing what is already gone
    /// is not a failure.
    fn teardown(&mut self) -> anyhow::Result<()> {
        self.hosts.clear();
        if self.is_empty() {
            return Ok(());
        }
        let mut problems = Vec::new();
        let namespaces = existing_namespaces();
        let links = existing_links();
        match &namespaces {
            Ok(existing) => {
                for namespace in self.namespaces.iter().filter(|n| existing.contains(*n)) {
                    if let Err(error) = kill_processes(namespace) {
                        problems.push(error);
                    }
                }
            }
            Err(error) => problems.push(anyhow!("{error:#}")),
        }
        if let Ok(existing) = &links {
            self.veths.retain(|veth| {
                if !existing.contains(veth) {
                    return false;
                }
                let removed = run("ip", &["link", "del", veth]);
                removed.map_err(|e| problems.push(e)).is_err()
            });
        }
        if let Ok(existing) = &namespaces {
            self.namespaces.retain(|namespace| {
                if !existing.contains(namespace) {
                    return false;
                }
                let removed = run("ip", &["netns", "del", namespace]);
                removed.map_err(|e| problems.push(e)).is_err()
            });
        }
        match &links {
            Ok(existing) => {
                let bridge = self.bridge_name();
                if self.bridge && existing.contains(&bridge) {
                    match run("ip", &["link", "del", &bridge]) {
                        Ok(_) => self.bridge = false,
                        Err(error) => problems.push(error),
                    }
                } else {
                    self.bridge = false;
                }
            }
            Err(error) => problems.push(anyhow!("{error:#}")),
        }
        if !self.bridge
            && let Some(k) = self.subnet.take()
        {
            reserved().subnets.remove(&k);
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut message = format!(
            "cleaning up network namespaces {}-*: {} problem(s); left behind: {}",
            self.prefix,
            problems.len(),
            self.leftovers()
        );
        for problem in problems {
            message.push_str(&format!("\n  - {problem:#}"));
        }
        Err(anyhow!(message))
    }

    fn leftovers(&self) -> String {
        let mut left: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| format!("netns {n}"))
            .collect();
        left.extend(self.veths.iter().map(|v| format!("veth {v}")));
        if self.bridge {
            left.push(format!("bridge {}", self.bridge_name()));
        }
        if left.is_empty() {
            "nothing".to_string()
        } else {
            left.join(", ")
        }
    }
}

/// Slots and subnets held by this process's providers.
#[derive(Debug)]
struct Reserved {
    slots: BTreeSet<u8>,
    subnets: BTreeSet<u8>,
}

static RESERVED: Mutex<Reserved> = Mutex::new(Reserved {
    slots: BTreeSet::new(),
    subnets: BTreeSet::new(),
});

fn reserved() -> MutexGuard<'static, Reserved> {
    RESERVED.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reserved {
    /// The smallest free slot, now taken.
    fn take_slot(&mut self) -> Option<u8> {
        let slot = (0..PROVIDERS_MAX as u8).find(|s| !self.slots.contains(s))?;
        self.slots.insert(slot);
        Some(slot)
    }
}

fn subnet_addr(k: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], k, host)
}

fn subnet_name(k: u8) -> String {
    format!("{}/24", subnet_addr(k, 0))
}

/// The `k` of every 10.77.k.x address in the root namespace.
fn subnets_in_use() -> anyhow::Result<BTreeSet<u8>> {
    let out = run("ip", &["-o", "-4", "addr", "show"])?;
    Ok(parse_subnets(&out))
}

fn parse_subnets(ip_o_addr: &str) -> BTreeSet<u8> {
    ip_o_addr
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            let addr: Ipv4Addr = words.next()?.split('/').next()?.parse().ok()?;
            let [a, b, k, _] = addr.octets();
            ([a, b] == SUBNET_PREFIX).then_some(k)
        })
        .collect()
}

/// Interface names in the root namespace (`ip -o link`).
fn existing_links() -> anyhow::Result<BTreeSet<String>> {
    let out = run("ip", &["-o", "link", "show"])?;
    Ok(parse_links(&out))
}

fn parse_links(ip_o_link: &str) -> BTreeSet<String> {
    ip_o_link
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().nth(1)?.trim_end_matches(':');
            Some(name.split('@').next()?.to_string())
        })
        .collect()
}

/// Named network namespaces (`ip netns list`).
fn existing_namespaces() -> anyhow::Result<BTreeSet<String>> {
    let out = run("ip", &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The processes in `namespace` (`ip netns pids`).
fn namespace_pids(namespace: &str) -> anyhow::Result<Vec<String>> {
    let out = run("ip", &["netns", "pids", namespace])?;
    Ok(out.split_whitespace().map(str::to_string).collect())
}

/// SIGKILLs every process in `namespace` and waits (at most
/// [`KILL_TIMEOUT`]) for them to be gone. A process that dies becomes a
/// zombie until its parent reaps it, and zombies hold no namespace.
fn kill_processes(namespace: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids = namespace_pids(namespace)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "processes {} in namespace {namespace} survived SIGKILL for {} s",
                pids.join(" "),
                KILL_TIMEOUT.as_secs()
            );
        }
        let mut args = vec!["-KILL"];
        args.extend(pids.iter().map(String::as_str));
        // A process may exit between listing and killing: the next listing
        // tells.
        let _ = run("kill", &args);
        thread::sleep(Duration::from_millis(20));
    }
}

/// `tc -n <namespace> qdisc add dev <dev> root netem <profile>`.
fn add_netem(namespace: &str, dev: &str, netem: &NetemProfile) -> anyhow::Result<()> {
    let options = netem.tc_args();
    let mut args = vec!["-n", namespace, "qdisc", "add", "dev", dev, "root", "netem"];
    args.extend(options.iter().map(String::as_str));
    run("tc", &args).map(drop).map_err(|error| {
        if format!("{error:#}").contains("qdisc kind is unknown") {
            error.context("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem)")
        } else {
            error
        }
    })
}

/// Creates a namespace named `pb<pid>-probe<n>`, runs `check` with its name,
/// and deletes it whatever happened.
fn probe(check: impl FnOnce(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let namespace = format!("pb{}-probe{n}", std::process::id());
    run("ip", &["netns", "add", &namespace])?;
    let checked = check(&namespace);
    let deleted = run("ip", &["netns", "del", &namespace]);
    checked?;
    deleted.map(drop)
}

/// Runs `program args`, in its own process group (so that Ctrl-C at the
/// terminal does not cut it short), and returns its stdout. A failure names
/// the exact command and quotes its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let command_line = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .map_err(|e| anyhow!("running `{command_line}`: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let stderr = if stderr.is_empty() {
            "(nothing on stderr)"
        } else {
            stderr
        };
        bail!("`{command_line}` failed ({}): {stderr}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// This process's effective uid, from `/proc/self/status`; `None` if that
/// cannot be read.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `5ms`, or `1500us` when not whole milliseconds.
fn format_time(d: Duration) -> String {
    let micros = d.as_micros();
    if micros.is_multiple_of(1000) {
        format!("{}ms", micros / 1000)
    } else {
        format!("{micros}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_interface_name_limit_for_any_pid() {
        // PID_MAX_LIMIT is 2^22 = 4194304: seven digits.
        let prefix = format!("pb{}-{}", 4_194_304, PROVIDERS_MAX - 1);
        let network = Network::new(prefix, (PROVIDERS_MAX - 1) as u8);
        assert!(network.bridge_name().len() <= INTERFACE_NAME_MAX);
        assert!(network.node_name(NODES_MAX - 1).len() <= INTERFACE_NAME_MAX);
        assert_eq!(network.node_name(NODES_MAX - 1), "pb4194304-9-252");
    }

    #[test]
    fn netem_options_and_description() {
        assert!(NetemProfile::default().is_none());
        assert!(NetemProfile::default().tc_args().is_empty());
        assert_eq!(NetemProfile::default().to_string(), "no netem");

        let wan = NetemProfile {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(1),
            loss_percent: 0.1,
            rate_mbit: Some(100),
        };
        wan.validate().unwrap();
        assert_eq!(
            wan.tc_args().join(" "),
            "limit 100000 delay 5000us 1000us loss 0.1% rate 100mbit"
        );
        assert_eq!(
            wan.to_string(),
            "netem delay 5ms ±1ms, loss 0.1%, rate 100 Mbit/s"
        );

        let lossy = NetemProfile {
            loss_percent: 2.5,
            ..NetemProfile::default()
        };
        assert_eq!(lossy.tc_args().join(" "), "limit 100000 loss 2.5%");
        assert_eq!(
            NetemProfile::delay(Duration::from_micros(1500)).to_string(),
            "netem delay 1500us"
        );
    }

    #[test]
    fn bad_profiles_are_refused() {
        for bad in [
            NetemProfile {
                loss_percent: 101.0,
                ..NetemProfile::default()
            },
            NetemProfile {
                loss_percent: f64::NAN,
                ..NetemProfile::default()
            },
            NetemProfile {
                rate_mbit: Some(0),
                ..NetemProfile::default()
            },
            NetemProfile::delay(Duration::from_secs(11)),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_output_parses() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                     4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n\
                     9: pb1-0-br    inet 10.77.33.1/24 scope global pb1-0-br\n";
        assert_eq!(parse_subnets(addrs), BTreeSet::from([33]));
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n\
                     8: pb1-0-0@if2: <BROADCAST,MULTICAST> mtu 1500\n";
        assert_eq!(
            parse_links(links),
            BTreeSet::from(["lo".to_string(), "pb1-0-0".to_string()])
        );
    }
}
