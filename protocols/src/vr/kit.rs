//! VR in the protocol registry ([`crate::registry`]).

use std::sync::Arc;
use std::time::Duration;

use runtime::deploy::{self, ClientFactory, Running};
use runtime::sim::Simulator;
use wire::control::NodeConfig;
use wire::registry::{ProtocolSpec, Settings};

use super::{
    CLIENT_RESEND_MAX, COMMIT_INTERVAL, Client, Codec, Config, GET_STATE_INTERVAL, QUEUE_MAX,
    Replica, STATE_ENTRIES_MAX, VIEW_TIMEOUT_MAX, WAITING_BYTES_MAX, WAITING_MAX,
};
use crate::registry::Start;
use crate::simulate::{ExecutionLog, Profile, Simulated};

/// What the registry runs VR with.
#[derive(Clone, Copy, Debug)]
pub struct Kit;

impl crate::registry::Kit for Kit {
    fn spec(&self) -> &'static ProtocolSpec {
        &wire::vr::SPEC
    }

    fn start(
        &self,
        config: &NodeConfig,
        settings: &Settings,
        node: Start,
    ) -> Result<Running, String> {
        let n = config.replicas.len();
        if n.is_multiple_of(2) {
            return Err(format!("VR runs 2f + 1 replicas, not {n}"));
        }
        let group = Config::with_settings(n, settings);
        let codec = Arc::new(Codec);
        let running = match node {
            Start::Replica { id, app, setup, .. } => {
                // Nothing is persisted: a restarted replica (the runner
                // restarts with `recover`) has lost its state, and runs
                // the recovery protocol before it takes part.
                let replica = if config.durable.recover {
                    Replica::recovering(id, group, app)
                } else {
                    Replica::new(id, group, app)
                };
                deploy::spawn_replica(replica, codec, setup)
            }
            Start::Clients {
                resend, ops, setup, ..
            } => {
                let make_client: ClientFactory<Client> =
                    Arc::new(move |id| Client::new(id, group, resend));
                deploy::spawn_clients(make_client, codec, ops, setup)
            }
        };
        running.map_err(|e| e.to_string())
    }

    fn random_run(&self, seed: u64, profile: Profile, trace: bool) -> Simulated {
        super::simulate::random_run(seed, profile, trace)
    }

    fn fixed_system(&self, clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
        super::simulate::fixed_system(clients, ops)
    }

    fn planted(&self) -> &'static [crate::planted::Bug] {
        super::bugs::ALL
    }

    fn constants(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        vec![
            ("queue max", QUEUE_MAX.to_string()),
            ("waiting max", WAITING_MAX.to_string()),
            ("waiting bytes max", WAITING_BYTES_MAX.to_string()),
            ("commit interval", ms(COMMIT_INTERVAL)),
            ("view timeout max", ms(VIEW_TIMEOUT_MAX)),
            ("get-state interval", ms(GET_STATE_INTERVAL)),
            ("state entries max", STATE_ENTRIES_MAX.to_string()),
            ("client resend max", ms(CLIENT_RESEND_MAX)),
        ]
    }
}
