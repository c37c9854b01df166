//! The fuzz targets of minisv, shared by the cargo-fuzz binaries and the smoke test.

pub mod targets;
