//! The one integration test binary.

mod ctl_python;
mod pyenv;
