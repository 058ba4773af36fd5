//! CUDA backend pieces for autark (docs/CUDA.md).
