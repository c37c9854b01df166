//! The control interface: HTTP server, XML-RPC.

mod auth;
pub mod http;
mod httpdate;
mod listen;
mod logtail;
mod sha1;
