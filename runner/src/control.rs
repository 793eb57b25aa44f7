//! Starting `node serve` processes and talking to them.
//!
//! [`NodeProcess::spawn`] starts `node serve --port 0 --host <host>` with a
//! fresh control secret on its stdin (never on the command line; one per
//! node, so a node, or a host, learns only its own and cannot drive the
//! others), learns its control address from the `listening on <addr>` line,
//! and keeps the last lines of its stderr. [`NodeProcess::connect`] opens the
//! control connection and proves the secret in the handshake of
//! [`wire::control::auth`] (and checks the node's proof in turn);
//! [`Control`] sends commands and waits for events, each with a timeout, so a
//! silent or dead node is an error, never a hang. A [`NodeProcess`] kills its
//! child when dropped.
//!
//! Every error names the node (its host, and its role once it has one) and
//! ends with the last lines the node wrote to stderr:
//!
//! ```text
//! node 127.0.0.2 (replica 0): starting replica 0: Address already in use (os error 98)
//!   stderr, last lines:
//!   | error: starting replica 0: Address already in use (os error 98)
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use crate::hosts::Host;
use wire::control::auth::{ControlSecret, runner_handshake};
use wire::control::{
    Command, CommandFrame, Event, FinalReport, NodeConfig, Started, decode_event, read_frame,
    write_frame,
};

/// How long a node may take to print where it listens.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a node's control port may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node may take from `Run` to `Started`.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take from `Stop` to `Finished`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to exit after it reported its totals.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How many of a node's last stderr lines an error shows.
pub const STDERR_LINES_MAX: usize = 20;
/// How long an error waits for a dying node to finish writing to stderr.
const STDERR_SETTLE: Duration = Duration::from_secs(2);

/// A `node serve` child process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    control_addr: SocketAddr,
    node: Arc<NodeInfo>,
    /// What the node was handed on its stdin, and the handshake proves.
    secret: ControlSecret,
}

impl NodeProcess {
    /// Starts `node_binary serve --port 0 --host host` on this machine and
    /// waits (at most [`LISTEN_TIMEOUT`]) for it to say where it listens.
    pub fn spawn(node_binary: &Path, host: IpAddr) -> anyhow::Result<NodeProcess> {
        NodeProcess::spawn_on(&Host::local(host), node_binary)
    }

    /// Starts `node serve` on `host` (locally, in a namespace, or over ssh)
    /// and waits (at most [`LISTEN_TIMEOUT`]) for it to say where it listens.
    pub fn spawn_on(host: &Host, node_binary: &Path) -> anyhow::Result<NodeProcess> {
        NodeProcess::spawn_in(host, node_binary, None)
    }

    /// [`Self::spawn_on`] with the node's run directory (`node serve
    /// --dir`): where a replica keeps what it persists, so that a node
    /// started again in it recovers.
    pub fn spawn_in(
        host: &Host,
        node_binary: &Path,
        dir: Option<&Path>,
    ) -> anyhow::Result<NodeProcess> {
        let secret = ControlSecret::random().context("making a control secret")?;
        let mut child = host
            .serve_command_in(node_binary, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} on {host}", node_binary.display()))?;
        // The secret, then end of input: the node reads one line. A node
        // that died at once shows up below, when it does not listen.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{}", secret.to_hex());
        }
        let host_name = host.name.clone();
        let host = host.addr;
        let node = Arc::new(NodeInfo::new(host, host_name));
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (line_tx, line_rx) = mpsc::channel();
        let spawned = spawn_thread("node-stderr", {
            let node = Arc::clone(&node);
            move || node.collect_stderr(stderr)
        })
        .and_then(|()| {
            spawn_thread("node-stdout", move || {
                let mut stdout = BufReader::new(stdout);
                let mut line = String::new();
                let _ = line_tx.send(stdout.read_line(&mut line).map(|_| line));
                // Keep draining so that the node never blocks on a full pipe.
                let _ = io::copy(&mut stdout, &mut io::sink());
            })
        });
        // From here on, dropping `process` kills the child.
        let mut process = NodeProcess {
            child,
            control_addr: SocketAddr::new(host, 0),
            node,
            secret,
        };
        spawned?;
        let line = match line_rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => {
                return Err(process.node.error(format!("reading its stdout: {error}")));
            }
            Err(_) => {
                return Err(process.node.error(format!(
                    "did not say where it listens within {} s",
                    LISTEN_TIMEOUT.as_secs()
                )));
            }
        };
        if line.is_empty() {
            let status = process
                .wait(STDERR_SETTLE)
                .map_or_else(|_| "still running".to_string(), |status| status.to_string());
            return Err(process
                .node
                .error(format!("closed its stdout before listening ({status})")));
        }
        process.control_addr = parse_listening(&line).ok_or_else(|| {
            process.node.error(format!(
                "printed {:?} instead of `listening on <address>`",
                line.trim_end()
            ))
        })?;
        Ok(process)
    }

    /// The host the node runs on (its control port's address).
    pub fn host(&self) -> IpAddr {
        self.node.host
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// "node 127.0.0.2 (replica 0)": the node, for messages.
    pub fn name(&self) -> String {
        self.node.name()
    }

    /// The last lines the node wrote to stderr, so far.
    pub fn stderr_tail(&self) -> String {
        self.node.tail(Duration::ZERO)
    }

    /// Opens the control connection and proves the node's secret (within
    /// [`CONNECT_TIMEOUT`]). A node serves one connection only.
    pub fn connect(&self) -> anyhow::Result<Control> {
        self.connect_with(&self.secret)
    }

    /// [`Self::connect`] with another secret: for tests of how a node treats
    /// a peer without its secret.
    pub fn connect_with(&self, secret: &ControlSecret) -> anyhow::Result<Control> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut stream =
            TcpStream::connect_timeout(&self.control_addr, CONNECT_TIMEOUT).map_err(|e| {
                self.node.error(format!(
                    "connecting to its control port {}: {e}",
                    self.control_addr
                ))
            })?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(CONNECT_TIMEOUT));
        runner_handshake(&mut stream, secret, deadline)
            .and_then(|()| {
                stream.set_read_timeout(None)?;
                stream.set_write_timeout(None)?;
                Ok(())
            })
            .map_err(|e| self.node.error(format!("control handshake: {e}")))?;
        let mut reader = stream
            .try_clone()
            .context("cloning the control connection")?;
        let (tx, rx) = mpsc::channel();
        spawn_thread("node-events", move || {
            loop {
                let event = match read_frame(&mut reader) {
                    Ok(None) => return,
                    Ok(Some(frame)) => decode_event(&frame).map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                let last = event.is_err();
                if tx.send(event).is_err() || last {
                    return;
                }
            }
        })?;
        Ok(Control {
            stream,
            events: rx,
            node: Arc::clone(&self.node),
        })
    }

    /// Kills the process with SIGKILL and reaps it: a crash, for a fault
    /// schedule.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.child
            .kill()
            .and_then(|()| self.child.wait())
            .map_err(|e| self.node.error(format!("killing it: {e}")))
    }

    /// Sends the process `signal` (SIGSTOP, SIGCONT), for a fault schedule.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("a process id past i32")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(|e| self.node.error(format!("sending it {signal}: {e}")))
    }

    /// How the process ended, if it has (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits at most `timeout` for the node to exit; kills it if it does not.
    /// Once it has exited, its last stderr lines are in [`Self::stderr_tail`].
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for a node")? {
                // The process is gone; give the reader thread the moment it
                // needs to take in what the node wrote last.
                let _ = self.node.tail(STDERR_SETTLE);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(self.node.error(format!(
                    "did not exit within {} s; killed it",
                    timeout.as_secs()
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits at most `timeout` for the node to exit, and says what went wrong
    /// if it did not exit with status 0.
    pub fn wait_success(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = self.wait(timeout)?;
        if status.success() {
            Ok(())
        } else {
            Err(self.node.error(format!("exited with {status}")))
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The control connection to one node.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    /// Events as the reader thread decoded them; an `Err` is the last item.
    events: Receiver<Result<Event, String>>,
    node: Arc<NodeInfo>,
}

impl Control {
    /// Starts the node with `config` and waits (at most [`START_TIMEOUT`]) for
    /// it to say it runs. From here on, errors name the node's role.
    pub fn run(&mut self, config: &NodeConfig) -> anyhow::Result<Started> {
        self.node.set_role(config.node_name());
        self.send(Command::Run(Box::new(config.clone())))?;
        match self.next_event(START_TIMEOUT)? {
            Some(Event::Started(started)) => Ok(started),
            Some(Event::Error(line)) => Err(self.fail(line)),
            Some(other) => {
                Err(self.fail(format!("sent {} instead of Started", event_name(&other))))
            }
            None => Err(self.fail(format!(
                "did not start within {} s",
                START_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The next event, waiting at most `timeout`; `None` if none came. An
    /// [`Event::Error`] is returned as it is; a connection that closed or
    /// carried something unreadable is an `Err`.
    pub fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Option<Event>> {
        match self.events.recv_timeout(timeout) {
            Ok(Ok(event)) => Ok(Some(event)),
            Ok(Err(problem)) => Err(self.fail(problem)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.fail("closed the control connection")),
        }
    }

    /// Tells the node to stop and waits (at most [`STOP_TIMEOUT`]) for its
    /// totals, passing over interval reports still on their way.
    pub fn stop(&mut self) -> anyhow::Result<FinalReport> {
        self.send(Command::Stop)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Some(Event::Interval(_)) => {}
                Some(Event::Finished(report)) => return Ok(report),
                Some(Event::Error(line)) => return Err(self.fail(line)),
                Some(other) => {
                    return Err(
                        self.fail(format!("sent {} instead of Finished", event_name(&other)))
                    );
                }
                None => {
                    return Err(self.fail(format!(
                        "did not finish within {} s of Stop",
                        STOP_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }

    /// Sends one command.
    pub fn send(&mut self, command: Command) -> anyhow::Result<()> {
        write_frame(&mut self.stream, &CommandFrame::new(command))
            .map_err(|e| self.fail(format!("sending a command: {e}")))
    }

    /// Sends arbitrary bytes, for tests of how a node copes with them.
    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| self.fail(format!("sending raw bytes: {e}")))
    }

    /// Closes the connection; the node takes that as `Stop`.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// "node 127.0.0.2 (replica 0)".
    pub fn name(&self) -> String {
        self.node.name()
    }

    /// An error about this node. The connection is closed first: the node is
    /// done or broken, and a node that has sent its last event exits once the
    /// runner hangs up, so its stderr tail is complete.
    fn fail(&self, problem: impl fmt::Display) -> anyhow::Error {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.node.error(problem)
    }
}

/// Who a node is, and what it last said on stderr. Shared by the process
/// handle, its control connection, and the thread reading its stderr.
#[derive(Debug)]
struct NodeInfo {
    host: IpAddr,
    /// How errors name the host.
    host_name: String,
    role: Mutex<Option<String>>,
    stderr: Mutex<StderrTail>,
    stderr_closed: Condvar,
}

#[derive(Debug, Default)]
struct StderrTail {
    lines: VecDeque<String>,
    closed: bool,
}

impl NodeInfo {
    fn new(host: IpAddr, host_name: String) -> NodeInfo {
        NodeInfo {
            host,
            host_name,
            role: Mutex::new(None),
            stderr: Mutex::new(StderrTail::default()),
            stderr_closed: Condvar::new(),
        }
    }

    fn set_role(&self, role: String) {
        *self.role.lock().unwrap_or_else(PoisonError::into_inner) = Some(role);
    }

    fn name(&self) -> String {
        match &*self.role.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(role) => format!("node {} ({role})", self.host_name),
            None => format!("node {}", self.host_name),
        }
    }

    /// Reads `stderr` to its end, keeping the last [`STDERR_LINES_MAX`] lines.
    fn collect_stderr(&self, stderr: impl Read) {
        for_each_line(stderr, |text| {
            let mut tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
            keep_last(&mut tail.lines, text, STDERR_LINES_MAX);
        });
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.stderr_closed.notify_all();
    }

    /// The last stderr lines, after waiting at most `settle` for the node to
    /// close its stderr (exit), so that a dying node's last words are in.
    fn tail(&self, settle: Duration) -> String {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let (tail, _) = self
            .stderr_closed
            .wait_timeout_while(tail, settle, |t| !t.closed)
            .unwrap_or_else(PoisonError::into_inner);
        Vec::from(tail.lines.clone()).join("\n")
    }

    /// `problem`, naming the node, with its last stderr lines.
    fn error(&self, problem: impl fmt::Display) -> anyhow::Error {
        let tail = self.tail(STDERR_SETTLE);
        let mut message = format!("{}: {problem}", self.name());
        if tail.is_empty() {
            message.push_str(" (nothing on its stderr)");
        } else {
            message.push_str("\n  stderr, last lines:");
            for line in tail.lines() {
                message.push_str("\n  | ");
                message.push_str(line);
            }
        }
        anyhow!(message)
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim_end().strip_prefix("listening on ")?.parse().ok()
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Started(_) => "Started",
        Event::Interval(_) => "Interval",
        Event::Finished(_) => "Finished",
        Event::Error(_) => "Error",
    }
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(drop)
        .with_context(|| format!("starting the {name} thread"))
}

/// Calls `f` with each line `input` yields (lossily decoded, trailing
/// whitespace trimmed), until it ends or fails.
pub fn for_each_line(input: impl Read, mut f: impl FnMut(String)) {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => f(String::from_utf8_lossy(&line).trim_end().to_string()),
        }
    }
}

/// Appends `line` to `lines`, dropping the oldest beyond `max`.
pub fn keep_last(lines: &mut VecDeque<String>, line: String, max: usize) {
    if lines.len() == max {
        lines.pop_front();
    }
    lines.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_parses() {
        assert_eq!(
            parse_listening("listening on 127.0.0.2:4000\n"),
            Some("127.0.0.2:4000".parse().unwrap())
        );
        assert_eq!(parse_listening("listening on [::1]:5\n").unwrap().port(), 5);
        assert_eq!(parse_listening("hello\n"), None);
        assert_eq!(parse_listening("listening on nowhere\n"), None);
    }

    #[test]
    fn errors_name_the_node_and_quote_its_stderr() {
        let node = NodeInfo::new("127.0.0.2".parse().unwrap(), "127.0.0.2".to_string());
        let stderr = (0..30).map(|i| format!("line {i}\n")).collect::<String>();
        node.collect_stderr(stderr.as_bytes());
        let message = node.error("exited with status 1").to_string();
        assert!(
            message.starts_with("node 127.0.0.2: exited with status 1\n  stderr, last lines:\n"),
            "{message}"
        );
        assert!(message.ends_with("  | line 29"), "{message}");
        assert!(!message.contains("line 9\n"), "{message}");
        assert_eq!(message.matches("  | ").count(), STDERR_LINES_MAX);

        node.set_role("replica 0".to_string());
        assert_eq!(node.name(), "node 127.0.0.2 (replica 0)");

        let quiet = NodeInfo::new("127.0.0.3".parse().unwrap(), "127.0.0.3".to_string());
        quiet.collect_stderr(&b""[..]);
        assert_eq!(
            quiet.error("gone").to_string(),
            "node 127.0.0.3: gone (nothing on its stderr)"
        );
    }
}
