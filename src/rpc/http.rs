//! Placeholder for the HTTP layer's request types (replaced by the tiny_http bridge).

use std::path::PathBuf;
use std::sync::mpsc::Sender;

pub struct ServerRequest {
    pub kind: RequestKind,
    pub reply: Sender<ServerReply>,
}

pub enum RequestKind {
    XmlRpc(Vec<u8>),
    LogPath { namespec: Option<String>, channel: String },
}

pub enum ServerReply {
    XmlRpc(String),
    LogPath(Option<PathBuf>),
}
