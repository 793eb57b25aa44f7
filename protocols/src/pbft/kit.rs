//! PBFT in the protocol registry ([`crate::registry`]).

use std::sync::Arc;
use std::time::Duration;

use runtime::deploy::{self, ClientFactory, Running};
use wire::control::NodeConfig;
use wire::registry::{ProtocolSpec, Settings};
use wire::{ReplicaId, Signer};

use super::{
    BATCH_BYTES_MAX, CHECKPOINT_INTERVAL, CLIENT_RESEND_INTERVAL, CLIENT_RESEND_MAX, Client, Codec,
    Config, LOG_MAX, QUEUE_DRAIN_FACTOR, REPLICAS_MAX, REQUEST_TIMEOUT_MAX, Replica,
    STATUS_HEARTBEAT, TRANSFER_WINDOW, VIEW_CHANGE_TIMEOUT_MAX,
};
use crate::registry::Start;
use crate::simulate::{self, ExecutionLog, Profile, Simulated};
use runtime::deploy::faults::DeployTamper;
use runtime::sim::{Adversary, Simulator, Tactics};

/// PBFT in the protocol registry.
pub const PROTOCOL: crate::registry::Protocol = crate::registry::Protocol::new(&Kit);

/// What the registry runs PBFT with.
#[derive(Clone, Copy, Debug)]
pub struct Kit;

impl crate::registry::Kit for Kit {
    fn spec(&self) -> &'static ProtocolSpec {
        &wire::pbft::SPEC
    }

    fn start(
        &self,
        config: &NodeConfig,
        settings: &Settings,
        node: Start,
    ) -> Result<Running, String> {
        let group = Config::new(&config.public_keys)
            .map_err(|e| format!("public keys: {e}"))?
            .with_settings(settings);
        let group = Arc::new(group);
        let running = match node {
            Start::Replica {
                id,
                secret_key,
                app,
                setup,
                durable,
            } => {
                let Some(key) = secret_key else {
                    return Err("a pbft replica needs its secret key (`secret_key`)".to_string());
                };
                let public = Signer::new(&key)
                    .map_err(|e| format!("secret key: {e}"))?
                    .public_key();
                if public != config.public_keys[usize::from(id.0)] {
                    return Err(format!("secret_key does not match public_keys[{}]", id.0));
                }
                let codec = Arc::new(
                    Codec::replica(Arc::clone(&group), ReplicaId(id.0), &key)
                        .map_err(|e| format!("secret key: {e}"))?,
                );
                let replica = Replica::new(id, Arc::clone(&codec), app);
                deploy::spawn_durable_replica(replica, codec, setup, durable)
            }
            Start::Clients {
                resend,
                key_seed,
                ops,
                setup,
            } => {
                let codec = Arc::new(Codec::client(group, &key_seed));
                let client_codec = Arc::clone(&codec);
                let make_client: ClientFactory<Client> =
                    Arc::new(move |id| Client::new(id, &client_codec, resend));
                deploy::spawn_clients(make_client, codec, ops, setup)
            }
        };
        running.map_err(|e| e.to_string())
    }

    fn random_run(&self, seed: u64, profile: Profile, trace: bool) -> Simulated {
        simulate::pbft::random_run(seed, profile, trace)
    }

    fn fixed_system(&self, clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
        simulate::pbft::fixed_system(clients, ops)
    }

    fn planted(&self) -> &'static [crate::planted::Bug] {
        super::bugs::ALL
    }

    /// Every message rewritten for each destination apart and signed again
    /// with the replica's key (the seeded runs' adversary, always mutating).
    fn equivocator(&self, config: &NodeConfig) -> Option<DeployTamper> {
        let signer = Signer::new(config.secret_key.as_ref()?).ok()?;
        let tactics = Tactics {
            mutate: 1.0,
            replay: 0.0,
            withhold: 0.0,
        };
        let n = u8::try_from(config.replicas.len()).ok()?;
        Some(Box::new(Adversary::<wire::pbft::Message>::new(
            Some(signer),
            n,
            tactics,
        )))
    }

    fn constants(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        vec![
            ("batch bytes max", BATCH_BYTES_MAX.to_string()),
            ("checkpoint interval", CHECKPOINT_INTERVAL.to_string()),
            ("log max", LOG_MAX.to_string()),
            ("view change timeout max", ms(VIEW_CHANGE_TIMEOUT_MAX)),
            ("request timeout max", ms(REQUEST_TIMEOUT_MAX)),
            ("queue drain factor", QUEUE_DRAIN_FACTOR.to_string()),
            ("status heartbeat", ms(STATUS_HEARTBEAT)),
            ("transfer window", TRANSFER_WINDOW.to_string()),
            ("client resend interval", ms(CLIENT_RESEND_INTERVAL)),
            ("client resend max", ms(CLIENT_RESEND_MAX)),
            ("replicas max", REPLICAS_MAX.to_string()),
        ]
    }
}
