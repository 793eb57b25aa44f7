//! The runner as a library: what the `runner` binary (its command line is in
//! `src/bin/runner/`), its tests and experiments written in Rust share.
//!
//! - [`experiment`]: experiments as values: protocols (from
//!   [`wire::registry`]), loads, settings and sweeps, trials, and their
//!   checks.
//! - [`faults`]: the fault schedule of an experiment (`--fault
//!   3s:kill:primary`), its grammar and its checks.
//! - [`run`]: runs an experiment's points on hosts, one after another; a
//!   single point, at once or in steps ([`run::RunningPoint`]) for callers
//!   that act while its clients run.
//! - [`hosts`]: where nodes run: local processes, network namespaces, ssh.
//! - [`control`]: starting `node serve` processes and talking to them over the
//!   control protocol of [`wire::control`].
//! - [`results`]: what a run measured, aggregated per load; the table and the
//!   CSV. [`plot`]: the figure. [`save`]: the files.
//! - [`timeline`]: a point over time, and its recovery from each fault;
//!   [`timeline_plot`]: its figure.
//! - [`history`]: a point's key-value history, saved and checked for
//!   linearizability by `node check-history`.
//! - [`provenance`]: the machine and the commit a run ran on.
//! - [`threads`]: the thread-map syntax of `--replica-threads`.
//! - [`cpu_quota`]: the same CPU quota for every node (`--equal-cpu`).
//! - [`cargo`]: building the `node` binary and finding where cargo put it.
//! - [`cleanup`]: undoing what the runner set up outside its process
//!   (namespaces, remote nodes) on Ctrl-C.
//!
//! Like the binary, the library depends on `wire` only, never on protocol or
//! runtime code: nodes are separate processes.

pub mod bound;
pub mod cargo;
pub mod cleanup;
pub mod control;
pub mod cpu_quota;
pub mod experiment;
pub mod faults;
pub mod history;
pub mod hosts;
pub mod plot;
pub mod provenance;
pub mod results;
pub mod run;
pub mod save;
pub mod threads;
pub mod timeline;
pub mod timeline_plot;
pub mod wan;
