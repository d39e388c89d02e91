//! Test support for imgstore's tests: real servers started on 127.0.0.1 and
//! free ports, each with a private config and data directory, stopped when
//! dropped; and a small HTTP server that makes the faults real servers will
//! not make on demand (a dropped connection, a 429, a lying byte), recording
//! every request it saw.
//!
//! A server that cannot start fails the test with the reason; nothing here
//! skips.

pub mod fault;
pub mod servers;
pub mod tls;

pub use servers::{
    Access, Containerd, Nginx, NginxBuilder, Registry, ServerProcess, StartError, free_port,
    on_free_port, require_program,
};
