//! Twins (Bano, Buchnik, Dinesh, Howard, Kaplan, Malkhi, Mehta, "Twins: BFT
//! Systems Made Robust", OPODIS 2021): a Byzantine replica emulated by two
//! (or more) *correct* copies of it that share its address, so also its
//! identity and key. What either sends goes out as from that address; what
//! is sent to the address reaches every copy that a partition does not
//! separate from the sender. Put in different partitions, the copies
//! diverge and together equivocate as a real Byzantine replica could
//! (two proposals for one view, two votes), with no adversary written for
//! the protocol.
//!
//! A node is named by a [`NodeRef`]: its address and which copy. The
//! address-based calls ([`Simulator::partition`], [`Simulator::cut`],
//! crash, restart, pause, resume) treat all copies at an address alike;
//! [`Simulator::partition_nodes`] and [`Simulator::cut_nodes`] split them.
//! Queries (`is_running`, `executed_slot`, ...) and `set_byzantine`,
//! `inject`, `crash_at_next_persist` concern the node added first.

use std::fmt;

use wire::Addr;

use super::{Factory, Simulator, Slot};

/// Twins one address may have at most, besides the node added first.
pub const TWINS_MAX: usize = 3;

/// One node of the simulator: an address, and which copy at it (0 for the
/// node added first, 1 and up for its twins in the order they were added).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeRef {
    pub addr: Addr,
    pub copy: u8,
}

impl NodeRef {
    /// Copy `copy` at `addr` (0: the node added first).
    pub fn new(addr: Addr, copy: u8) -> NodeRef {
        NodeRef { addr, copy }
    }
}

impl From<Addr> for NodeRef {
    fn from(addr: Addr) -> NodeRef {
        NodeRef { addr, copy: 0 }
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.copy {
            0 => write!(f, "{}", self.addr),
            copy => write!(f, "{} twin {copy}", self.addr),
        }
    }
}

impl Simulator {
    /// Adds a twin of the node at `addr` (a replica, or any node but a
    /// client) and starts it now: another node at the same address, made by
    /// `factory` (which builds the same replica, with the same key), with
    /// its own state, random stream and durable map. It stands where the
    /// node at `addr` stands in any partition until one names it. Counted
    /// as a Byzantine fault. Returns its name for
    /// [`Simulator::partition_nodes`].
    pub fn add_twin(&mut self, addr: Addr, mut factory: Factory) -> NodeRef {
        let Some(&first) = self.index.get(&addr) else {
            panic!("add_twin: no node {addr}");
        };
        assert!(
            self.nodes[first].client.is_none(),
            "add_twin: {addr} is a client"
        );
        let copies = self.twins.get(&first).map_or(0, Vec::len);
        assert!(copies < TWINS_MAX, "add_twin: {addr} has {TWINS_MAX} twins");
        let copy = u8::try_from(copies + 1).expect("TWINS_MAX fits a byte");
        let mut rng = self.rng.fork();
        let process = factory(rng.fork());
        assert_eq!(
            process.addr(),
            addr,
            "factory made a twin with another address"
        );
        let node = self.nodes.len();
        let group = self.nodes[first].group;
        self.nodes.push(Slot {
            addr,
            copy,
            process: Some(process),
            factory,
            rng,
            incarnation: 0,
            timer_at: None,
            paused: false,
            group,
            byzantine: None,
            client: None,
            stored: Default::default(),
            crash_at_persist: None,
        });
        self.twins.entry(first).or_default().push(node);
        self.faults.byzantine += 1;
        self.record_at(node, || "fault: twin added".to_string());
        self.start(node);
        NodeRef { addr, copy }
    }

    /// The twins at `addr` besides the node added first.
    pub fn twins_of(&self, addr: Addr) -> Vec<NodeRef> {
        let Some(first) = self.index.get(&addr) else {
            return Vec::new();
        };
        self.twins.get(first).map_or_else(Vec::new, |copies| {
            copies
                .iter()
                .map(|&node| NodeRef::new(addr, self.nodes[node].copy))
                .collect()
        })
    }

    /// [`Simulator::partition`] by node: the nodes of each group talk only
    /// among themselves, nodes not named form one more group, and twins
    /// named apart are apart.
    pub fn partition_nodes(&mut self, groups: &[&[NodeRef]]) {
        for slot in &mut self.nodes {
            slot.group = 0;
        }
        for (i, group) in groups.iter().enumerate() {
            for &node in *group {
                let node = self.node(node);
                self.nodes[node].group = i as u32 + 1;
            }
        }
        self.faults.partitions += 1;
        self.record(None, || {
            let groups: Vec<Vec<String>> = groups
                .iter()
                .map(|g| g.iter().map(ToString::to_string).collect())
                .collect();
            format!("fault: partition {groups:?}")
        });
    }

    /// [`Simulator::cut`] by node: cuts the links from every node of `from`
    /// to every node of `to`, in that direction only.
    pub fn cut_nodes(&mut self, from: &[NodeRef], to: &[NodeRef]) {
        for &a in from {
            for &b in to {
                if a != b {
                    let link = (self.node(a), self.node(b));
                    self.cut.insert(link);
                }
            }
        }
        self.faults.oneway_cuts += 1;
        self.record(None, || {
            let from: Vec<String> = from.iter().map(ToString::to_string).collect();
            let to: Vec<String> = to.iter().map(ToString::to_string).collect();
            format!("fault: cut {from:?} -> {to:?}")
        });
    }

    /// The index of a named node.
    fn node(&self, node: NodeRef) -> usize {
        let Some(&first) = self.index.get(&node.addr) else {
            panic!("no node {}", node.addr);
        };
        match node.copy {
            0 => first,
            copy => *self
                .twins
                .get(&first)
                .and_then(|copies| copies.get(usize::from(copy) - 1))
                .unwrap_or_else(|| panic!("no node {node}")),
        }
    }

    /// Node `first` and its twins.
    pub(super) fn copies(&self, first: usize) -> Vec<usize> {
        let mut all = vec![first];
        if let Some(copies) = self.twins.get(&first) {
            all.extend_from_slice(copies);
        }
        all
    }

    /// A datagram from `from_node` to the node at `to_node`'s address, in a
    /// run with twins: every copy at that address gets its own, with its
    /// own delay and loss, except that what a node sends to its own address
    /// stays with it.
    pub(super) fn transmit_to_twins(&mut self, from_node: usize, to_node: usize, bytes: Vec<u8>) {
        if self.nodes[from_node].addr == self.nodes[to_node].addr {
            self.transmit_to(from_node, from_node, bytes);
            return;
        }
        let copies = self.copies(to_node);
        let (&last, others) = copies.split_last().expect("a node is its first copy");
        for &copy in others {
            self.transmit_to(from_node, copy, bytes.clone());
        }
        self.transmit_to(from_node, last, bytes);
    }

    /// Adds a line about node `node` to the trace, if one is kept.
    pub(super) fn record_at(&mut self, node: usize, line: impl FnOnce() -> String) {
        let (addr, copy) = (self.nodes[node].addr, self.nodes[node].copy);
        self.record(Some(addr), || label(copy, line()));
    }
}

/// A trace line of copy `copy`: marked if it is a twin.
pub(super) fn label(copy: u8, line: String) -> String {
    match copy {
        0 => line,
        copy => format!("[twin {copy}] {line}"),
    }
}

/// A delivery's trace line, marked if a twin sent it.
pub(super) fn label_sender(copy: u8, line: String) -> String {
    match copy {
        0 => line,
        copy => format!("{line} (from twin {copy})"),
    }
}
