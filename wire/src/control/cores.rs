//! A node's part of its host's cores, and the threads a node derives from it.
//!
//! The runner knows which nodes share a host, not how many cores the host
//! has: it hands each node a [`CoreShare`], "part `index` of `of`", and the
//! node splits the cores it may run on ([`CoreShare::cores_of`]) into `of`
//! disjoint parts and takes its own. Where the host has fewer cores than
//! nodes, no node has a core of its own ([`Cores::Shared`]): each runs one
//! thread and leaves placement to the scheduler, since more threads on
//! shared cores only add hand-offs.
//!
//! From its cores a replica derives its thread map ([`ThreadMap::derive`]),
//! by what its protocol needs: a protocol that signs gets verify workers,
//! more as the cores grow, because verification is the stage that
//! parallelizes and costs the most; one that does not sign decodes on its
//! receive thread. A clients node runs one client thread per core
//! ([`client_threads`]). An explicit map still wins: the runner sends a
//! share only when the experiment names no map.

use serde::{Deserialize, Serialize};

use super::config::{Stage, ThreadMap, ThreadSpec};

/// Which part of its host's cores a node may use: part `index` of `of`
/// equal parts (`of` is the number of nodes on the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreShare {
    pub index: u32,
    pub of: u32,
}

/// The cores a node may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cores {
    /// These cores are the node's alone (at least one).
    Own(Vec<u32>),
    /// The node shares every core with other nodes.
    Shared,
}

impl CoreShare {
    /// This node's part of `host` (the ids of the cores the node may run
    /// on, in any order): the cores split into `of` runs of consecutive ids,
    /// as even as can be, the larger runs first. `Shared` when there are
    /// fewer cores than parts.
    pub fn cores_of(&self, host: &[u32]) -> Cores {
        let mut host = host.to_vec();
        host.sort_unstable();
        host.dedup();
        let (parts, index) = (self.of as usize, self.index as usize);
        if parts == 0 || index >= parts || host.len() < parts {
            return Cores::Shared;
        }
        let (size, larger) = (host.len() / parts, host.len() % parts);
        let start = index * size + index.min(larger);
        let len = size + usize::from(index < larger);
        Cores::Own(host[start..start + len].to_vec())
    }

    /// Checks the share names a part: `index < of`.
    pub fn validate(&self) -> Result<(), String> {
        if self.index >= self.of {
            return Err(format!(
                "core share {} of {}: the part must be below the count",
                self.index, self.of
            ));
        }
        Ok(())
    }
}

impl ThreadMap {
    /// The thread map of a replica with `cores`, for a protocol that signs
    /// or not. Every thread of an own share is pinned to a core of it.
    ///
    /// | cores | signs | threads |
    /// | --- | --- | --- |
    /// | shared | either | everything on one unpinned thread |
    /// | 1 | either | everything on one thread |
    /// | 2 | yes | receive+protocol+send, verify |
    /// | 3–5 | yes | receive+protocol+send (3) or receive+protocol and send (4, 5), verify on the rest |
    /// | 6 and more | yes | receive, protocol, send, verify on the rest |
    /// | 2 | no | receive+verify, protocol+send |
    /// | 3 and more | no | receive+verify, protocol, send (the other cores unused) |
    ///
    /// A protocol that signs verifies every peer message and signs what it
    /// sends: verify is the heavy stage and the one that parallelizes, so it
    /// gets every core the serial stages can spare, and the count of verify
    /// workers never falls as the cores grow. Without signatures, decoding
    /// is cheap and stays on the receive thread.
    pub fn derive(cores: &Cores, signs: bool) -> ThreadMap {
        use Stage::{Protocol, Receive, Send, Verify};
        let cores = match cores {
            Cores::Shared => return ThreadMap::single(None),
            Cores::Own(cores) if cores.len() <= 1 => {
                return ThreadMap::single(cores.first().copied());
            }
            Cores::Own(cores) => cores,
        };
        let serial: Vec<Vec<Stage>> = match (signs, cores.len()) {
            (true, 2..=3) => vec![vec![Receive, Protocol, Send]],
            (true, 4..=5) => vec![vec![Receive, Protocol], vec![Send]],
            (true, _) => vec![vec![Receive], vec![Protocol], vec![Send]],
            (false, 2) => vec![vec![Receive, Verify], vec![Protocol, Send]],
            (false, _) => vec![vec![Receive, Verify], vec![Protocol], vec![Send]],
        };
        let verifiers = if signs { cores.len() - serial.len() } else { 0 };
        let stages = serial
            .into_iter()
            .chain(std::iter::repeat_n(vec![Verify], verifiers));
        ThreadMap {
            threads: stages
                .zip(cores)
                .map(|(stages, &core)| ThreadSpec {
                    stages,
                    core: Some(core),
                })
                .collect(),
        }
    }
}

/// A clients node's threads on `cores`, for `clients` clients: one thread
/// per core of its own, pinned (never more threads than clients, nor than
/// `threads_max`); one unpinned thread on shared cores. Returns the thread
/// count and the cores to pin them to (empty: unpinned).
pub fn client_threads(cores: &Cores, clients: u32, threads_max: u32) -> (u32, Vec<u32>) {
    match cores {
        Cores::Own(cores) if !cores.is_empty() => {
            let threads = cores
                .len()
                .min(usize::try_from(clients.min(threads_max)).unwrap_or(usize::MAX))
                .max(1);
            (threads as u32, cores[..threads].to_vec())
        }
        _ => (1, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cores: u32) -> Vec<u32> {
        (0..cores).collect()
    }

    fn share(index: u32, of: u32) -> CoreShare {
        CoreShare { index, of }
    }

    fn verifiers(map: &ThreadMap) -> usize {
        map.threads
            .iter()
            .filter(|t| t.stages == [Stage::Verify])
            .count()
    }

    #[test]
    fn nodes_on_a_host_get_disjoint_parts_covering_it() {
        for cores in [1, 2, 4, 8, 16, 64] {
            for nodes in 1..=9 {
                let parts: Vec<Cores> = (0..nodes)
                    .map(|i| share(i, nodes).cores_of(&host(cores)))
                    .collect();
                if cores < nodes {
                    assert!(parts.iter().all(|p| *p == Cores::Shared), "{cores} {nodes}");
                    continue;
                }
                let mut all: Vec<u32> = parts
                    .iter()
                    .flat_map(|p| match p {
                        Cores::Own(cores) => cores.clone(),
                        Cores::Shared => panic!("{cores} cores, {nodes} nodes: a shared part"),
                    })
                    .collect();
                let sizes: Vec<usize> = parts
                    .iter()
                    .map(|p| match p {
                        Cores::Own(c) => c.len(),
                        Cores::Shared => 0,
                    })
                    .collect();
                all.sort_unstable();
                assert_eq!(all, host(cores), "{cores} cores, {nodes} nodes: {parts:?}");
                assert!(sizes.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            }
        }
    }

    #[test]
    fn parts_follow_the_cores_the_node_may_use() {
        // A cpuset of scattered cores, listed out of order.
        let allowed = [9, 3, 5, 4];
        assert_eq!(share(0, 2).cores_of(&allowed), Cores::Own(vec![3, 4]));
        assert_eq!(share(1, 2).cores_of(&allowed), Cores::Own(vec![5, 9]));
        assert_eq!(share(2, 2).cores_of(&allowed), Cores::Shared);
        assert!(share(2, 2).validate().is_err());
        assert!(share(1, 2).validate().is_ok());
        assert_eq!(share(0, 0).cores_of(&allowed), Cores::Shared);
    }

    #[test]
    fn derived_maps_run_and_use_the_cores_given() {
        for cores in [1, 2, 3, 4, 5, 6, 8, 16, 64] {
            let mut previous = 0;
            for signs in [true, false] {
                let own = Cores::Own((100..100 + cores).collect());
                let map = ThreadMap::derive(&own, signs);
                map.validate().unwrap();
                let pinned: Vec<u32> = map.threads.iter().filter_map(|t| t.core).collect();
                assert_eq!(pinned.len(), map.threads.len(), "every thread pinned");
                let mut distinct = pinned.clone();
                distinct.dedup();
                assert_eq!(distinct, pinned, "one thread per core");
                assert!(pinned.iter().all(|core| (100..100 + cores).contains(core)));
                if signs {
                    // Every core used; verify workers never fewer with more cores.
                    assert_eq!(map.threads.len(), cores as usize);
                    assert!(verifiers(&map) >= previous, "{cores}: {map:?}");
                    previous = verifiers(&map);
                } else {
                    assert_eq!(verifiers(&map), 0, "no verify workers without signatures");
                    assert_eq!(map.threads.len(), (cores as usize).min(3));
                }
            }
        }
    }

    #[test]
    fn derived_maps_at_the_usual_sizes() {
        let own = |cores: u32| Cores::Own(host(cores));
        assert_eq!(
            ThreadMap::derive(&Cores::Shared, true),
            ThreadMap::single(None)
        );
        assert_eq!(ThreadMap::derive(&own(1), true), ThreadMap::single(Some(0)));
        assert_eq!(
            ThreadMap::derive(&own(1), false),
            ThreadMap::single(Some(0))
        );
        let map = ThreadMap::derive(&own(2), true);
        assert_eq!(
            map.threads[0].stages,
            [Stage::Receive, Stage::Protocol, Stage::Send]
        );
        assert_eq!(verifiers(&map), 1);
        assert_eq!(verifiers(&ThreadMap::derive(&own(4), true)), 2);
        assert_eq!(verifiers(&ThreadMap::derive(&own(8), true)), 5);
        assert_eq!(verifiers(&ThreadMap::derive(&own(64), true)), 61);
        let plain = ThreadMap::derive(&own(2), false);
        assert_eq!(plain.threads[0].stages, [Stage::Receive, Stage::Verify]);
        assert_eq!(plain.threads[1].stages, [Stage::Protocol, Stage::Send]);
    }

    #[test]
    fn one_client_thread_per_own_core() {
        let own = |cores: u32| Cores::Own(host(cores));
        assert_eq!(client_threads(&Cores::Shared, 100, 64), (1, vec![]));
        assert_eq!(client_threads(&own(1), 100, 64), (1, vec![0]));
        assert_eq!(client_threads(&own(4), 100, 64), (4, host(4)));
        assert_eq!(client_threads(&own(4), 2, 64), (2, host(2)));
        assert_eq!(client_threads(&own(4), 1, 64), (1, vec![0]));
        assert_eq!(client_threads(&own(64), 10_000, 16), (16, host(16)));
        // Several nodes per host, the clients node last: its own part.
        for (cores, nodes) in [(2, 2), (8, 5), (16, 4), (64, 8)] {
            let part = share(nodes - 1, nodes).cores_of(&host(cores));
            let (threads, pinned) = client_threads(&part, 1_000, 64);
            assert_eq!(threads as usize, pinned.len());
            assert_eq!(threads, cores / nodes, "{cores} cores, {nodes} nodes");
        }
    }
}
