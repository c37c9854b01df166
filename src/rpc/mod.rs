//! The control plane: XML-RPC codec, the API methods and the HTTP server.

pub mod api;
mod auth;
pub mod configinfo;
pub mod faults;
pub mod http;
mod httpdate;
pub mod info;
mod limits;
mod listen;
mod logtail;
mod sha1;
pub mod xmlrpc;
