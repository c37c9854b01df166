//! XML-RPC: the value codec shared by the daemon's server and `minisv ctl` (reference 4.2).

pub mod xmlrpc;
