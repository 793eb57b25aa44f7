//! Where nodes run: local processes on loopback addresses, processes in
//! network namespaces on this machine (with emulated WAN links), or processes
//! on remote machines over ssh.
//!
//! A [`Provider`] hands out [`Host`]s and owns whatever it set up for them
//! (namespaces, veths, remote processes), which it removes on
//! [`Provider::cleanup`], on drop, and (through [`crate::cleanup`]) on Ctrl-C.
//! A [`Host`] knows how to start `node serve` there; the runner then talks to
//! the node over TCP at the host's address, like any other. Every launcher
//! passes the node's standard input through (the runner writes the node's
//! control secret there, [`crate::control`]), so none may redirect it.

pub mod netns;
pub mod ssh;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One place to run a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// How errors name it: `127.0.0.2`, `netns pb123-0-1 (10.77.5.3)`,
    /// `ssh root@10.0.0.5`.
    pub name: String,
    /// The address the node binds, for its control port and its UDP sockets,
    /// and that other nodes and the runner reach it at.
    pub addr: IpAddr,
    pub launcher: Launcher,
}

/// How to start a process on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// A child process of the runner.
    Local,
    /// A child process of the runner inside network namespace `namespace`
    /// (`ip netns exec`).
    Netns { namespace: String },
    /// A process on a remote machine, started through `ssh`, running the copy
    /// of the node binary at `remote_binary`.
    Ssh {
        target: ssh::SshTarget,
        remote_binary: PathBuf,
    },
}

impl Host {
    /// A local host on loopback address `addr`.
    pub fn local(addr: IpAddr) -> Host {
        Host {
            name: addr.to_string(),
            addr,
            launcher: Launcher::Local,
        }
    }

    /// The command that runs `node serve --port 0 --host <addr>` on this host.
    /// `node_binary` is the binary on this machine (ssh hosts run their copy).
    pub fn serve_command(&self, node_binary: &Path) -> Command {
        self.serve_command_in(node_binary, None)
    }

    /// [`Self::serve_command`] with the node's run directory (`--dir`), where
    /// a replica keeps its durable state for a restart to recover from.
    pub fn serve_command_in(&self, node_binary: &Path, dir: Option<&Path>) -> Command {
        let addr = self.addr.to_string();
        let serve = ["serve", "--port", "0", "--host", addr.as_str()];
        let dir_args: Vec<&std::ffi::OsStr> = match dir {
            Some(dir) => vec!["--dir".as_ref(), dir.as_os_str()],
            None => Vec::new(),
        };
        match &self.launcher {
            Launcher::Local => {
                let mut command = Command::new(node_binary);
                command.args(serve).args(&dir_args);
                command
            }
            Launcher::Netns { namespace } => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", namespace.as_str()])
                    .arg(node_binary)
                    .args(serve)
                    .args(&dir_args);
                command
            }
            Launcher::Ssh {
                target,
                remote_binary,
            } => target.command(&format!(
                "exec {} {}{}",
                ssh::shell_quote(&remote_binary.to_string_lossy()),
                serve.join(" "),
                dir.map_or_else(String::new, |dir| format!(
                    " --dir {}",
                    ssh::shell_quote(&dir.to_string_lossy())
                ))
            )),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Hands out hosts and cleans up after them.
pub trait Provider: Send {
    /// `count` hosts, one per node, distinct where the provider can make them
    /// so. May set things up (namespaces, copies of the node binary).
    fn hosts(&mut self, count: usize, node_binary: &Path) -> anyhow::Result<Vec<Host>>;

    /// Removes everything the provider set up and stops what it started.
    /// Idempotent. Also called on drop and on Ctrl-C.
    fn cleanup(&mut self) -> anyhow::Result<()>;

    /// A one-line description for the terminal: `local (127.0.0.2..)`.
    fn describe(&self) -> String;
}

/// Processes on this machine, node `i` on 127.0.0.`i + 2`.
#[derive(Debug, Default)]
pub struct LocalHosts;

impl Provider for LocalHosts {
    fn hosts(&mut self, count: usize, _node_binary: &Path) -> anyhow::Result<Vec<Host>> {
        anyhow::ensure!(count <= 250, "local hosts: at most 250 nodes, not {count}");
        Ok((0..count)
            .map(|i| Host::local(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))))
            .collect())
    }

    fn cleanup(&mut self) -> anyhow::Result<()> {
        // Node processes are children of the runner, killed when their
        // handles drop.
        Ok(())
    }

    fn describe(&self) -> String {
        "local processes on 127.0.0.2 and up".to_string()
    }
}
