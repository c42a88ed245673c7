//! The commands of `relay`, one room each, and what they share (`common`).

pub(crate) mod common;
pub(crate) mod dlq;
pub(crate) mod jobs;
pub(crate) mod retry;
pub(crate) mod submit;
pub(crate) mod wait;
