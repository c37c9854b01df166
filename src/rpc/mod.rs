//! The control plane: XML-RPC codec, the API methods and the HTTP server.

pub mod api;
mod auth;
pub mod configinfo;
pub mod conn;
pub mod faults;
pub mod host;
pub(crate) mod httpdate;
pub mod info;
pub mod json;
mod listen;
pub mod mergedtail;
pub mod metrics;
pub mod route;
pub mod server;
mod sha1;
mod tail;
pub mod web;
pub mod xmlrpc;
