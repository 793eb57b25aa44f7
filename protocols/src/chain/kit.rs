//! Chain replication in the protocol registry ([`crate::registry`]).

use std::sync::Arc;
use std::time::Duration;

use runtime::deploy::{self, ClientFactory, Running};
use runtime::sim::Simulator;
use wire::control::NodeConfig;
use wire::registry::{ProtocolSpec, Settings};

use super::{CHUNK_BYTES, Client, Codec, Master, RESEND_BURST, RESEND_MAX, Replica, Timing};
use crate::registry::Start;
use crate::simulate::{ExecutionLog, Profile, Simulated};

/// What the registry runs chain replication with.
#[derive(Clone, Copy, Debug)]
pub struct Kit;

impl crate::registry::Kit for Kit {
    fn spec(&self) -> &'static ProtocolSpec {
        &wire::chain::SPEC
    }

    fn start(
        &self,
        config: &NodeConfig,
        settings: &Settings,
        node: Start,
    ) -> Result<Running, String> {
        // The address list holds the servers, then the master.
        let n = config.replicas.len() - wire::chain::SPEC.services.len();
        let timing = Timing::from_settings(settings);
        let codec = Arc::new(Codec);
        let running = match node {
            Start::Replica { id, setup, .. } if usize::from(id.0) == n => {
                deploy::spawn_replica(Master::new(n, timing), codec, setup)
            }
            Start::Replica {
                id,
                app,
                setup,
                durable,
                ..
            } => deploy::spawn_durable_replica(
                Replica::new(id, n, timing, app),
                codec,
                setup,
                durable,
            ),
            Start::Clients {
                resend, ops, setup, ..
            } => {
                let read_only = crate::app::read_only(config.app);
                let make_client: ClientFactory<Client> =
                    Arc::new(move |id| Client::new(id, n, read_only, resend));
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
            ("chunk bytes", CHUNK_BYTES.to_string()),
            ("resend burst", RESEND_BURST.to_string()),
            ("client resend max", ms(RESEND_MAX)),
        ]
    }
}
