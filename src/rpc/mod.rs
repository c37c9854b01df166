//! The control plane: XML-RPC codec, the API methods and the HTTP server.

pub mod api;
mod auth;
pub mod configinfo;
pub mod faults;
pub mod http;
mod httpdate;
pub mod info;
pub mod json;
mod limits;
mod listen;
mod logtail;
pub mod metrics;
mod sha1;
pub mod web;
pub mod xmlrpc;
