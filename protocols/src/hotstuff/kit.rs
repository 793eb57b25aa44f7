//! HotStuff in the protocol registry ([`crate::registry`]).

use std::sync::Arc;
use std::time::Duration;

use runtime::deploy::faults::DeployTamper;
use runtime::deploy::{self, ClientFactory, Running};
use runtime::sim::{Adversary, Simulator, Tactics};
use wire::control::NodeConfig;
use wire::registry::{ProtocolSpec, Settings};
use wire::{ReplicaId, Signer, VerifyingKey};

use super::{
    BLOCK_BYTES_MAX, BLOCKS_MAX, CHECKPOINT_INTERVAL, CLIENT_RESEND_INTERVAL, CLIENT_RESEND_MAX,
    COMMITTED_KEPT, Client, Codec, Config, FETCH_BLOCKS_MAX, REPLICAS_MAX, Replica,
    VIEW_TIMEOUT_MAX,
};
use crate::registry::Start;
use crate::simulate::{ExecutionLog, Profile, Simulated};

/// HotStuff in the registry.
pub const PROTOCOL: crate::registry::Protocol = crate::registry::Protocol::new(&Kit);

/// What the registry runs HotStuff with.
#[derive(Clone, Copy, Debug)]
pub struct Kit;

impl crate::registry::Kit for Kit {
    fn spec(&self) -> &'static ProtocolSpec {
        &wire::hotstuff::SPEC
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
                    return Err(
                        "a hotstuff replica needs its secret key (`secret_key`)".to_string()
                    );
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
        super::simulate::random_run(seed, profile, trace)
    }

    fn fixed_system(&self, clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
        super::simulate::fixed_system(clients, ops)
    }

    fn planted(&self) -> &'static [crate::planted::Bug] {
        super::bugs::ALL
    }

    /// Every message rewritten for each destination apart and signed again
    /// with the replica's key (the seeded runs' adversary, always mutating):
    /// as a leader, a different block to each replica.
    fn equivocator(&self, config: &NodeConfig) -> Option<DeployTamper> {
        let secret = config.secret_key.as_ref()?;
        let signer = Signer::new(secret).ok()?;
        let group: Vec<VerifyingKey> = config
            .public_keys
            .iter()
            .map(|key| key.parse().ok())
            .collect::<Option<_>>()?;
        let mac_keys = super::ProposalAuth::new(secret, &group).ok()?.into_keys();
        let tactics = Tactics {
            mutate: 1.0,
            replay: 0.0,
            withhold: 0.0,
        };
        let n = u8::try_from(config.replicas.len()).ok()?;
        Some(Box::new(
            Adversary::<wire::hotstuff::Message>::new(Some(signer), n, tactics)
                .with_mac_keys(mac_keys),
        ))
    }

    fn constants(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        vec![
            ("block bytes max", BLOCK_BYTES_MAX.to_string()),
            ("blocks max", BLOCKS_MAX.to_string()),
            ("committed blocks kept", COMMITTED_KEPT.to_string()),
            ("checkpoint interval", CHECKPOINT_INTERVAL.to_string()),
            ("fetch blocks max", FETCH_BLOCKS_MAX.to_string()),
            ("view timeout max", ms(VIEW_TIMEOUT_MAX)),
            ("client resend interval", ms(CLIENT_RESEND_INTERVAL)),
            ("client resend max", ms(CLIENT_RESEND_MAX)),
            ("replicas max", REPLICAS_MAX.to_string()),
        ]
    }
}
