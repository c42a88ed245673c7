//! `relay`, the command line of Enrich Relay. Its library half is what the binary runs, so tests
//! and the local tools use the same code.

pub mod api;
pub mod dlq;
pub mod input;
pub mod mapping;
pub mod output;
