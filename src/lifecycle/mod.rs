//! Chapter 8 — Lifecycle: terminals, init, detached containers and the commands that manage them,
//! and state that survives crashes.

pub mod commands;
pub mod detach;
pub mod init;
pub mod pty;
