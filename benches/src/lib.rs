//! Benchmarks only: see `benches/kernels.rs`.
