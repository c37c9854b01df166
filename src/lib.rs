//! minisv: a process supervisor that reads Supervisor config files and speaks its XML-RPC API.
//!
//! The binary (`src/main.rs`) dispatches on its first argument: the daemon (`minisv [options]`),
//! `minisv ctl`, `minisv echo-conf` and `minisv check`.

pub mod cli;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod events;
pub mod rpc;
pub mod supervisor;
pub mod sys;
