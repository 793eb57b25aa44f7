//! A real OpenSSH server on loopback, for tests of the ssh hosts: its own
//! host key, a client key pair it accepts, and its own known-hosts file, all
//! in a temporary directory, so it touches nothing of this machine's ssh
//! setup. Include it with `#[path = "common/sshd.rs"] mod sshd;`.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Where Debian and most distributions put the server.
pub const SSHD: &str = "/usr/sbin/sshd";
/// How long the server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports to try, should another process take a free port first.
const PORT_ATTEMPTS: u32 = 3;

/// A running `sshd -D` child; killed, and its directory removed, on drop
/// (also when the test panics).
#[derive(Debug)]
pub struct TestSshd {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    /// The private key the server accepts.
    pub client_key: PathBuf,
    /// A private key the server does not accept.
    pub stranger_key: PathBuf,
    /// An empty known-hosts file for the clients to record the host key in.
    pub known_hosts: PathBuf,
}

impl TestSshd {
    /// Starts a server on a free port of 127.0.0.1 and waits until it
    /// listens; `None`, after saying why, if OpenSSH is not installed.
    pub fn start() -> Option<TestSshd> {
        if !Path::new(SSHD).exists() {
            crate::common::skip(
                thread::current().name().unwrap_or("an ssh test"),
                &format!("{SSHD} not found (install openssh-server to run it)"),
                true,
            );
            return None;
        }
        if Command::new("ssh").arg("-V").output().is_err() {
            crate::common::skip(
                thread::current().name().unwrap_or("an ssh test"),
                "no `ssh` on PATH (install openssh-client to run it)",
                true,
            );
            return None;
        }
        // sshd refuses to start without its privilege separation directory,
        // which the package's service (never started here) would create.
        let _ = fs::create_dir_all("/run/sshd");

        static SERVERS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "runner-sshd-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the sshd directory");
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        let stranger_key = dir.join("stranger_key");
        for key in [&host_key, &client_key, &stranger_key] {
            keygen(key);
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("writing authorized_keys");
        let known_hosts = dir.join("known_hosts");
        File::create(&known_hosts).expect("creating known_hosts");

        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = dir.join("sshd_config");
            fs::write(&config, config_text(&dir, port)).expect("writing sshd_config");
            let log = dir.join("sshd.log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("creating sshd.log"))
                .spawn()
                .expect("starting sshd");
            if wait_listening(&mut child, port) {
                return Some(TestSshd {
                    child,
                    dir,
                    port,
                    client_key,
                    stranger_key,
                    known_hosts,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = fs::read_to_string(&log).unwrap_or_default();
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("sshd did not start in {PORT_ATTEMPTS} attempts; its last log:\n{last_log}");
    }

    /// What the server logged so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether `sshd` listens on `port`, within [`LISTEN_TIMEOUT`]; `false` if
/// it exited (say, because another process took the port) or never listened.
fn wait_listening(sshd: &mut Child, port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = sshd.try_wait() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A port nobody listens on now (the kernel's pick; free a moment later
/// unless someone else is quicker).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "runner-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("running ssh-keygen");
    assert!(
        status.success(),
        "ssh-keygen for {}: {status}",
        path.display()
    );
}

fn config_text(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile {dir}/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
# scp speaks SFTP since OpenSSH 9.0.
Subsystem sftp internal-sftp
LogLevel INFO
"
    )
}
