//! The control plane: XML-RPC codec, the API methods and the HTTP server.

pub mod api;
pub mod configinfo;
pub mod faults;
pub mod http;
pub mod info;
pub mod xmlrpc;
