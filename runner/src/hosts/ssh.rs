//! Remote machines over ssh as hosts.
//!
//! [`SshHosts`] reads its machines from a small hosts file or from the
//! command line, one per line:
//!
//! ```text
//! # [user@]host[:port] [address-for-nodes]
//! root@10.0.0.5
//! root@10.0.0.6:2222 192.168.1.6
//! ```
//!
//! Node `i` runs on machine `i % machines`. The node binds the line's second
//! field, or else the address the host name resolves to here; other nodes
//! and the runner reach it there. Its control port is on that address too,
//! so anyone on that network can reach it; what keeps them out is the
//! control handshake: the runner writes the node's secret to the remote
//! node's stdin through `ssh` (never onto a command line), and only a
//! connection that proves the secret drives the node
//! ([`wire::control::auth`]).
//!
//! [`Provider::hosts`] copies the node binary once to each machine it uses,
//! into a directory of this run (`/tmp/pbench-<pid>-<nonce>/node`), and each
//! node runs as `exec <that copy> serve ...` over `ssh`.
//!
//! Without a tty, a remote command outlives the `ssh` that started it: killing
//! the local `ssh` (as dropping a [`crate::control::NodeProcess`] does) leaves
//! the node running. So every node of a run is recognizable by the path it
//! runs from, and [`Provider::cleanup`] (also on drop, and through
//! [`crate::cleanup`] on Ctrl-C) kills, on each machine, every process whose
//! command line contains the run's directory, then removes the directory.
//!
//! Every `ssh` and `scp` runs non-interactively (`BatchMode`, new host keys
//! accepted, known ones checked) with a [`CONNECT_TIMEOUT_S`] connect
//! timeout, and a failure names the machine and says what went wrong in a
//! few words: `ssh root@10.0.0.5:2299: connection refused (creating the run
//! directory /tmp/pbench-41-6c1f0e2a0)`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail, ensure};

use super::{Host, Launcher, Provider};
use crate::cleanup::{self, Registration};

/// Seconds `ssh` may take to connect and finish its handshake.
pub const CONNECT_TIMEOUT_S: u32 = 5;
/// The default ssh port.
pub const SSH_PORT: u16 = 22;
/// Where each run's directory goes on the remote machines.
const RUN_DIR_PARENT: &str = "/tmp";
/// How many machines [`SshHosts::describe`] lists before "and n more".
const DESCRIBE_HOSTS_MAX: usize = 4;

/// Remote machines over ssh, node `i` on machine `i % machines`.
#[derive(Debug)]
pub struct SshHosts {
    entries: Vec<Entry>,
    /// `/tmp/pbench-<pid>-<nonce>`, the same on every machine.
    run_dir: PathBuf,
    /// Local node binaries handed to [`Provider::hosts`]; binary `k` is copied
    /// to [`remote_binary_name`]`(k)` in the run directory.
    binaries: Vec<PathBuf>,
    /// (machine, binary index) pairs already copied.
    copied: HashSet<(MachineKey, usize)>,
    /// Machines that have the run directory, shared with the Ctrl-C hook.
    prepared: Arc<Mutex<Vec<SshTarget>>>,
    registration: Option<Registration>,
}

/// One line of the hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    target: SshTarget,
    node_addr: IpAddr,
}

/// Which machine a target reaches: same destination and port, same machine.
type MachineKey = (String, u16);

impl SshHosts {
    /// Machines from `specs`, each like a hosts file line:
    /// `[user@]host[:port] [address-for-nodes]`.
    pub fn from_specs(specs: &[String]) -> anyhow::Result<SshHosts> {
        let entries = specs
            .iter()
            .map(|spec| Entry::parse(spec).with_context(|| format!("ssh host `{spec}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        SshHosts::new(entries)
    }

    /// Machines from the hosts file at `path`: one per line, `#` starts a
    /// comment, blank lines are skipped.
    pub fn from_file(path: &Path) -> anyhow::Result<SshHosts> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the hosts file {}", path.display()))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let entry = Entry::parse(line)
                .with_context(|| format!("{}, line {}: `{line}`", path.display(), i + 1))?;
            entries.push(entry);
        }
        SshHosts::new(entries).with_context(|| format!("hosts file {}", path.display()))
    }

    /// Logs in with the private key at `path` (and only with it).
    pub fn identity(mut self, path: impl Into<PathBuf>) -> SshHosts {
        let path = path.into();
        for entry in &mut self.entries {
            entry.target.identity = Some(path.clone());
        }
        self
    }

    /// Checks and records host keys in `path` instead of
    /// `~/.ssh/known_hosts` (for throwaway machines and tests).
    pub fn known_hosts(mut self, path: impl Into<PathBuf>) -> SshHosts {
        let path = path.into();
        for entry in &mut self.entries {
            entry.target.known_hosts = Some(path.clone());
        }
        self
    }

    /// This run's directory on every machine; every node process of the run
    /// runs a binary in it.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn new(entries: Vec<Entry>) -> anyhow::Result<SshHosts> {
        ensure!(!entries.is_empty(), "no ssh hosts given");
        Ok(SshHosts {
            entries,
            run_dir: new_run_dir(),
            binaries: Vec::new(),
            copied: HashSet::new(),
            prepared: Arc::new(Mutex::new(Vec::new())),
            registration: None,
        })
    }

    /// Creates the run directory on `target` (once) and copies `local` to
    /// `remote` there.
    fn prepare(&self, target: &SshTarget, local: &Path, remote: &Path) -> anyhow::Result<()> {
        let has_dir = lock(&self.prepared).contains(target);
        if !has_dir {
            let dir = shell_quote(&self.run_dir.to_string_lossy());
            run(
                target,
                &mut target.command(&format!("mkdir -p -m 700 {dir}")),
                &format!("creating the run directory {}", self.run_dir.display()),
            )?;
            lock(&self.prepared).push(target.clone());
        }
        run(
            target,
            &mut target.copy_command(local, remote),
            &format!("copying {} to {}", local.display(), remote.display()),
        )
    }
}

impl Provider for SshHosts {
    fn hosts(&mut self, count: usize, node_binary: &Path) -> anyhow::Result<Vec<Host>> {
        ensure!(
            node_binary.is_file(),
            "the node binary {} does not exist",
            node_binary.display()
        );
        let binary = match self.binaries.iter().position(|b| b == node_binary) {
            Some(k) => k,
            None => {
                self.binaries.push(node_binary.to_path_buf());
                self.binaries.len() - 1
            }
        };
        let remote_binary = self.run_dir.join(remote_binary_name(binary));
        if self.registration.is_none() && count > 0 {
            let prepared = Arc::clone(&self.prepared);
            let run_dir = self.run_dir.clone();
            self.registration = Some(cleanup::register(move || {
                let _ = clean_machines(&prepared, &run_dir);
            }));
        }

        // The machines the `count` nodes use that lack this binary, each once.
        let mut missing: Vec<&SshTarget> = Vec::new();
        let mut seen = HashSet::new();
        for entry in self.entries.iter().cycle().take(count) {
            let key = entry.target.machine();
            if !self.copied.contains(&(key.clone(), binary)) && seen.insert(key) {
                missing.push(&entry.target);
            }
        }
        let failures: Vec<anyhow::Error> = thread::scope(|scope| {
            let copies: Vec<_> = missing
                .iter()
                .map(|target| scope.spawn(|| self.prepare(target, node_binary, &remote_binary)))
                .collect();
            copies
                .into_iter()
                .filter_map(|copy| match copy.join() {
                    Ok(result) => result.err(),
                    Err(_) => Some(anyhow!("a thread copying the node binary panicked")),
                })
                .collect()
        });
        if !failures.is_empty() {
            bail!("{}", join_errors(&failures));
        }
        let copied: Vec<_> = missing.iter().map(|t| (t.machine(), binary)).collect();
        self.copied.extend(copied);

        Ok(self
            .entries
            .iter()
            .cycle()
            .take(count)
            .map(|entry| entry.host(&remote_binary))
            .collect())
    }

    fn cleanup(&mut self) -> anyhow::Result<()> {
        let result = clean_machines(&self.prepared, &self.run_dir);
        self.copied.clear();
        self.registration = None;
        result
    }

    fn describe(&self) -> String {
        let mut names: Vec<String> = self
            .entries
            .iter()
            .take(DESCRIBE_HOSTS_MAX)
            .map(Entry::spec)
            .collect();
        if self.entries.len() > DESCRIBE_HOSTS_MAX {
            names.push(format!(
                "and {} more",
                self.entries.len() - DESCRIBE_HOSTS_MAX
            ));
        }
        format!("ssh: {}", names.join(", "))
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

impl Entry {
    /// Parses `[user@]host[:port] [address-for-nodes]`, resolving the host if
    /// the address is not given.
    fn parse(line: &str) -> anyhow::Result<Entry> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (target, node_addr) = match fields[..] {
            [target] => (target, None),
            [target, addr] => (target, Some(addr)),
            _ => bail!("expected `[user@]host[:port] [address-for-nodes]`"),
        };
        let target = SshTarget::parse(target)?;
        let node_addr = match node_addr {
            Some(addr) => addr
                .parse()
                .map_err(|_| anyhow!("`{addr}` is not an IP address for the nodes"))?,
            None => target.resolve()?,
        };
        Ok(Entry { target, node_addr })
    }

    /// `ssh root@10.0.0.5`, or `ssh root@10.0.0.5 (192.168.1.5)` when the
    /// nodes bind another address than the one ssh connects to.
    fn name(&self) -> String {
        format!("ssh {}", self.spec())
    }

    /// [`Entry::name`] without the `ssh `.
    fn spec(&self) -> String {
        let addr = self.node_addr.to_string();
        if self.target.host() == addr {
            self.target.spec()
        } else {
            format!("{} ({addr})", self.target.spec())
        }
    }

    fn host(&self, remote_binary: &Path) -> Host {
        Host {
            name: self.name(),
            addr: self.node_addr,
            launcher: Launcher::Ssh {
                target: self.target.clone(),
                remote_binary: remote_binary.to_path_buf(),
            },
        }
    }
}

/// Where and how to reach a remote machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@host` or `host` (an IPv6 host without brackets).
    pub destination: String,
    pub port: u16,
    /// Private key to use, if not the default.
    pub identity: Option<PathBuf>,
    /// Known-hosts file to use, if not the default.
    pub known_hosts: Option<PathBuf>,
}

impl SshTarget {
    /// Parses `[user@]host[:port]`; an IPv6 host with a port is written
    /// `[::1]:2222`.
    pub fn parse(spec: &str) -> anyhow::Result<SshTarget> {
        let (user, host_port) = match spec.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, spec),
        };
        let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| anyhow!("`{spec}` lacks the `]` after the IPv6 address"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => bail!("`{spec}`: expected `:port` after `]`"),
                },
            }
        } else {
            match host_port.split_once(':') {
                // One colon: host and port. More: a bare IPv6 address.
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                _ => (host_port, None),
            }
        };
        let port = match port {
            None => SSH_PORT,
            Some(port) => port
                .parse()
                .map_err(|_| anyhow!("`{spec}`: `{port}` is not a port number"))?,
        };
        ensure!(!host.is_empty(), "`{spec}` names no host");
        ensure!(
            !host.starts_with('-') && user.is_none_or(|u| !u.is_empty() && !u.starts_with('-')),
            "`{spec}` is not a valid ssh destination"
        );
        ensure!(
            !spec.chars().any(char::is_whitespace),
            "`{spec}` contains whitespace"
        );
        Ok(SshTarget {
            destination: match user {
                Some(user) => format!("{user}@{host}"),
                None => host.to_string(),
            },
            port,
            identity: None,
            known_hosts: None,
        })
    }

    /// `ssh` running `remote_command` on the target, non-interactively.
    pub fn command(&self, remote_command: &str) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-T")
            .args(self.options())
            .args(["-p", &self.port.to_string()])
            .arg("--")
            .arg(&self.destination)
            .arg(remote_command);
        command
    }

    /// `scp` copying the local file `local` to `remote` on the target, with
    /// its mode.
    pub fn copy_command(&self, local: &Path, remote: &Path) -> Command {
        let mut command = Command::new("scp");
        let (user, host) = self.user_host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        command
            .args(["-q", "-p"])
            .args(self.options())
            .args(["-P", &self.port.to_string()])
            .arg("--")
            .arg(local)
            .arg(format!("{user}{host}:{}", remote.display()));
        command
    }

    /// `[user@]host[:port]` as [`SshTarget::parse`] reads it; no port if it
    /// is 22.
    pub fn spec(&self) -> String {
        match self.user_host() {
            _ if self.port == SSH_PORT => self.destination.clone(),
            (user, host) if host.contains(':') => {
                let user = user.map(|u| format!("{u}@")).unwrap_or_default();
                format!("{user}[{host}]:{}", self.port)
            }
            _ => format!("{}:{}", self.destination, self.port),
        }
    }

    /// The host part of the destination.
    pub fn host(&self) -> &str {
        self.user_host().1
    }

    /// Options `ssh` and `scp` share; all before the destination.
    fn options(&self) -> Vec<OsString> {
        let mut options: Vec<OsString> = [
            // Never prompt: a password or passphrase prompt would hang a run.
            "BatchMode=yes".to_string(),
            // Fresh machines are common; a changed key is still refused.
            "StrictHostKeyChecking=accept-new".to_string(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
            // A machine that dies mid-run ends its sessions within 15 s.
            "ServerAliveInterval=5".to_string(),
            "ServerAliveCountMax=3".to_string(),
            // Keep "Permanently added ... to the list of known hosts" out of
            // the nodes' stderr (and so out of error messages).
            "LogLevel=ERROR".to_string(),
        ]
        .into_iter()
        .flat_map(|option| ["-o".into(), option.into()])
        .collect();
        if let Some(known_hosts) = &self.known_hosts {
            options.push("-o".into());
            options.push(config_path("UserKnownHostsFile", known_hosts));
        }
        if let Some(identity) = &self.identity {
            options.push("-i".into());
            options.push(identity.into());
            // Offer that key only: an agent with many keys would otherwise
            // exhaust the server's `MaxAuthTries` first.
            options.push("-o".into());
            options.push("IdentitiesOnly=yes".into());
        }
        options
    }

    fn user_host(&self) -> (Option<&str>, &str) {
        match self.destination.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, &self.destination),
        }
    }

    fn machine(&self) -> MachineKey {
        (self.destination.clone(), self.port)
    }

    /// The address the host name resolves to here.
    fn resolve(&self) -> anyhow::Result<IpAddr> {
        let host = self.host();
        let mut addrs = (host, self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving `{host}`"))?;
        addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| anyhow!("`{host}` resolves to no address"))
    }
}

impl fmt::Display for SshTarget {
    /// `ssh root@10.0.0.5`, with `:port` unless it is 22.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh {}", self.spec())
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The name of the `k`th distinct node binary in the run directory.
fn remote_binary_name(k: usize) -> String {
    match k {
        0 => "node".to_string(),
        k => format!("node-{k}"),
    }
}

/// A directory name no other run uses, on this machine or another.
fn new_run_dir() -> PathBuf {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Path::new(RUN_DIR_PARENT).join(format!("pbench-{}-{nanos:08x}{run:x}", std::process::id()))
}

/// The shell script that kills every process running a binary from
/// `run_dir` and removes it. It fails if `pkill` is missing or cannot signal
/// them; finding no process is fine.
fn cleanup_script(run_dir: &Path) -> String {
    let dir = run_dir.to_string_lossy();
    // The pattern must not match the shell running this script, whose
    // command line holds the script: `[/]` matches `/` but not itself, and
    // `rm`'s argument lacks the `/node` the pattern ends in.
    let mut pattern = String::from("[/]");
    for c in dir.trim_start_matches('/').chars() {
        if r"\^$.|?*+()[]{}".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("/node");
    format!(
        "pkill -KILL -f {}; status=$?; rm -rf {} && [ $status -le 1 ]",
        shell_quote(&pattern),
        shell_quote(&dir)
    )
}

/// Runs the cleanup on every machine in `prepared`, in parallel, and forgets
/// them, so a second call does nothing. A machine that could not be cleaned
/// is in the error, and not tried again.
fn clean_machines(prepared: &Mutex<Vec<SshTarget>>, run_dir: &Path) -> anyhow::Result<()> {
    let machines = std::mem::take(&mut *lock(prepared));
    let script = cleanup_script(run_dir);
    let what = format!(
        "stopping the nodes in and removing {}; they may still run",
        run_dir.display()
    );
    let failures: Vec<anyhow::Error> = thread::scope(|scope| {
        let runs: Vec<_> = machines
            .iter()
            .map(|target| scope.spawn(|| run(target, &mut target.command(&script), &what)))
            .collect();
        runs.into_iter()
            .filter_map(|handle| match handle.join() {
                Ok(result) => result.err(),
                Err(_) => Some(anyhow!("a thread cleaning up an ssh host panicked")),
            })
            .collect()
    });
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", join_errors(&failures))
    }
}

/// Runs `command` (an `ssh` or `scp` to `target`) to completion; on failure,
/// an error naming `target`, saying why, and `what` it was doing.
fn run(target: &SshTarget, command: &mut Command, what: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("{target}: running `{program}` (is OpenSSH installed?)"))?;
    check(target, &program, &output, what)
}

fn check(target: &SshTarget, program: &str, output: &Output, what: &str) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    // `ssh` exits 255 on its own errors; anything else is the remote
    // command's status (`scp` exits 1 for both).
    let reason = match connection_problem(&stderr) {
        Some(problem) => problem.to_string(),
        None if stderr.is_empty() => format!("`{program}` failed ({})", output.status),
        None => format!("`{program}` failed ({}): {stderr}", output.status),
    };
    bail!("{target}: {reason} ({what})")
}

/// A few words for the usual reasons `ssh` cannot get in, from its stderr.
fn connection_problem(stderr: &str) -> Option<&'static str> {
    const PROBLEMS: &[(&str, &str)] = &[
        ("Connection refused", "connection refused"),
        ("Connection timed out", "connection timed out"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("Could not resolve hostname", "cannot resolve the host name"),
        (
            "Host key verification failed",
            "host key verification failed (the machine's key is not the known one)",
        ),
        (
            "Permission denied",
            "permission denied (check the user and the identity file)",
        ),
        (
            "Connection closed",
            "connection closed by the remote machine",
        ),
        ("Connection reset", "connection reset by the remote machine"),
    ];
    PROBLEMS
        .iter()
        .find(|(needle, _)| stderr.contains(needle))
        .map(|&(_, problem)| problem)
}

/// `Key=path` for `-o`, quoted for ssh's own parser if the path has spaces.
fn config_path(key: &str, path: &Path) -> OsString {
    let path = path.to_string_lossy();
    if path.contains(char::is_whitespace) {
        format!("{key}=\"{path}\"").into()
    } else {
        format!("{key}={path}").into()
    }
}

fn join_errors(errors: &[anyhow::Error]) -> String {
    errors
        .iter()
        .map(|e| format!("{e:#}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn target(spec: &str) -> SshTarget {
        SshTarget::parse(spec).unwrap()
    }

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn targets_parse_with_and_without_user_and_port() {
        let t = target("root@10.0.0.5:2222");
        assert_eq!((t.destination.as_str(), t.port), ("root@10.0.0.5", 2222));
        assert_eq!(t.to_string(), "ssh root@10.0.0.5:2222");
        let t = target("node7");
        assert_eq!((t.destination.as_str(), t.port), ("node7", 22));
        assert_eq!(t.to_string(), "ssh node7");
        let t = target("me@[::1]:2200");
        assert_eq!((t.destination.as_str(), t.port), ("me@::1", 2200));
        assert_eq!(t.to_string(), "ssh me@[::1]:2200");
        assert_eq!(target("fe80::1").host(), "fe80::1");
        for bad in [
            "",
            "host:",
            "host:99999",
            "-oProxyCommand=x",
            "@host",
            "[::1",
        ] {
            assert!(SshTarget::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn lines_give_the_node_address_or_resolve_the_host() {
        let entry = Entry::parse("root@127.0.0.1:2222  127.0.0.3").unwrap();
        assert_eq!(entry.node_addr, "127.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(entry.name(), "ssh root@127.0.0.1:2222 (127.0.0.3)");
        let entry = Entry::parse("127.0.0.1").unwrap();
        assert_eq!(entry.node_addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(entry.name(), "ssh 127.0.0.1");
        assert!(Entry::parse("a b c").is_err());
        assert!(Entry::parse("127.0.0.1 not-an-ip").is_err());
    }

    #[test]
    fn hosts_files_skip_comments_and_name_bad_lines() {
        let dir = std::env::temp_dir().join(format!("ssh-hosts-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(
            &path,
            "# machines\n\n127.0.0.1:2222 127.0.0.2  # first\n  root@127.0.0.1\n",
        )
        .unwrap();
        let hosts = SshHosts::from_file(&path).unwrap();
        assert_eq!(hosts.entries.len(), 2);
        assert_eq!(
            hosts.describe(),
            "ssh: 127.0.0.1:2222 (127.0.0.2), root@127.0.0.1"
        );
        std::fs::write(&path, "127.0.0.1\n127.0.0.1:x\n").unwrap();
        let error = format!("{:#}", SshHosts::from_file(&path).unwrap_err());
        assert!(error.contains("line 2: `127.0.0.1:x`"), "{error}");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(SshHosts::from_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn options_come_before_the_destination() {
        let mut t = target("root@10.0.0.5:2222");
        t.identity = Some("/keys/id".into());
        t.known_hosts = Some("/keys/known hosts".into());
        let ssh = args(&t.command("echo hi"));
        let destination = ssh.iter().position(|a| a == "root@10.0.0.5").unwrap();
        assert_eq!(&ssh[destination - 1..], ["--", "root@10.0.0.5", "echo hi"]);
        let before = &ssh[..destination];
        for expected in [
            "BatchMode=yes",
            "StrictHostKeyChecking=accept-new",
            "ConnectTimeout=5",
            "IdentitiesOnly=yes",
            "UserKnownHostsFile=\"/keys/known hosts\"",
        ] {
            assert!(before.iter().any(|a| a == expected), "{expected}: {ssh:?}");
        }
        let i = before.iter().position(|a| a == "-i").unwrap();
        assert_eq!(before[i + 1], "/keys/id");
        let p = before.iter().position(|a| a == "-p").unwrap();
        assert_eq!(before[p + 1], "2222");
        // The node's control secret goes through ssh's stdin: never `-n`.
        assert!(!before.iter().any(|a| a == "-n"), "{ssh:?}");

        let scp = args(&t.copy_command(Path::new("/bin/node"), Path::new("/tmp/r/node")));
        assert_eq!(
            &scp[scp.len() - 3..],
            ["--", "/bin/node", "root@10.0.0.5:/tmp/r/node"]
        );
        let p = scp.iter().position(|a| a == "-P").unwrap();
        assert_eq!(scp[p + 1], "2222");
        assert!(scp.iter().any(|a| a == "-i"));
        let v6 = target("[::1]:2200");
        let scp = args(&v6.copy_command(Path::new("/n"), Path::new("/r/n")));
        assert_eq!(scp.last().unwrap(), "[::1]:/r/n");
    }

    #[test]
    fn ssh_failures_are_named_in_a_few_words() {
        assert_eq!(
            connection_problem("ssh: connect to host 127.0.0.1 port 2299: Connection refused"),
            Some("connection refused")
        );
        assert_eq!(
            connection_problem("root@h: Permission denied (publickey)."),
            Some("permission denied (check the user and the identity file)")
        );
        assert_eq!(connection_problem("mkdir: cannot create directory"), None);
    }

    #[test]
    fn run_dirs_differ() {
        let a = new_run_dir();
        let b = new_run_dir();
        assert_ne!(a, b);
        assert!(a.to_string_lossy().starts_with("/tmp/pbench-"));
    }

    /// The cleanup script, run here: it kills a process running from the
    /// directory (and not the shell running it), removes the directory, and
    /// succeeds a second time when there is nothing left.
    #[test]
    fn cleanup_script_kills_the_run_and_removes_its_directory() {
        let run_dir = new_run_dir();
        std::fs::create_dir_all(&run_dir).unwrap();
        let node = run_dir.join("node");
        std::fs::copy("/bin/sleep", &node).unwrap();
        let mut child = Command::new(&node).arg("60").spawn().unwrap();
        let script = cleanup_script(&run_dir);
        let status = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(status.success(), "{script}: {status}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{script} left the node running");
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!run_dir.exists());
        let status = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(status.success(), "second run of {script}: {status}");
    }
}
