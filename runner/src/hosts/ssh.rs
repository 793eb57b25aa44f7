//! Remote machines over ssh as hosts (being written).

use std::process::Command;

/// Where and how to reach a remote machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@host` or `host`.
    pub destination: String,
    pub port: u16,
    /// Private key to use, if not the default.
    pub identity: Option<std::path::PathBuf>,
}

impl SshTarget {
    /// `ssh` running `remote_command` on the target, non-interactively.
    pub fn command(&self, remote_command: &str) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-o", "BatchMode=yes", "-p", &self.port.to_string()])
            .arg(&self.destination)
            .arg(remote_command);
        if let Some(identity) = &self.identity {
            command.arg("-i").arg(identity);
        }
        command
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
