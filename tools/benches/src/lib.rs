//! Nothing but benchmarks: `benches/` (run through `make bench`).
