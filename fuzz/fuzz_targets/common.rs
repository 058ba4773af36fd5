//! Shared helpers: a scratch file per process under /dev/shm (or the temp dir).

use std::path::PathBuf;

/// A directory private to this fuzzer process, created once and reused for every input.
pub fn scratch_dir(target: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("autark-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

