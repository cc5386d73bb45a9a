//! WebSocket connections: the upgrade ([`upgrade`]), the per-connection session with one
//! reader and one writer ([`session`]), the client frame reader ([`reader`]) and client
//! commands ([`commands`]).

pub mod commands;
pub mod io;
pub mod reader;
pub mod session;
pub mod upgrade;
