//! Model-free checks of the Rust side; generation is tested from Python and Kotlin
//! (tests/python/test_bindings.py, bindings/test-kotlin.sh).

use super::*;

#[test]
fn missing_file_is_io() {
    let e = Model::load("/nonexistent/model.autark".into()).err().expect("load must fail");
    assert!(matches!(&e, AutarkError::Io { detail } if detail.contains("/nonexistent/model.autark")), "{e:?}");
}

#[test]
fn garbage_file_is_corrupt_model() {
    let dir = std::env::temp_dir().join(format!("autark-bindings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("garbage.autark");
    std::fs::write(&path, vec![0x5au8; 4096]).unwrap();
    let e = Model::load(path.to_string_lossy().into_owned()).err().expect("load must fail");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(e, AutarkError::CorruptModel { .. }), "{e:?}");
}

#[test]
fn error_mapping() {
    let overflow = AutarkError::from(RuntimeError::ContextOverflow { needed: 600, n_ctx: 512 });
    assert!(matches!(overflow, AutarkError::ContextOverflow { needed: 600, n_ctx: 512, .. }), "{overflow:?}");
    let bad = AutarkError::from(RuntimeError::InvalidArgument { name: "top_p", what: "2".into() });
    assert!(matches!(bad, AutarkError::InvalidArgument { .. }));
    assert!(matches!(AutarkError::from(RuntimeError::NoChatTemplate), AutarkError::NoChatTemplate { .. }));
    assert!(matches!(AutarkError::from(RuntimeError::EmptyInput), AutarkError::InvalidArgument { .. }));
    let token = AutarkError::from(RuntimeError::InvalidToken { id: 7, vocab: 5 });
    assert!(matches!(token, AutarkError::InvalidToken { id: 7, vocab: 5, .. }), "{token:?}");
    let pool = AutarkError::from(RuntimeError::ThreadPool("spawn".into()));
    assert!(matches!(pool, AutarkError::Internal { .. }), "{pool:?}");
    assert!(matches!(
        AutarkError::from(RuntimeError::UnsupportedArchitecture("gpt2".into())),
        AutarkError::UnsupportedModel { .. }
    ));
}

#[test]
fn default_options_are_the_cli_defaults() {
    let o = SessionOptions::default();
    assert_eq!((o.n_ctx, o.n_threads, o.seed), (0, 0, 0));
    assert_eq!((o.temperature, o.top_k, o.top_p, o.min_p, o.repeat_penalty), (0.8, 40, 0.95, 0.05, 1.0));
    assert!(o.stop.is_empty());
    assert_eq!(o.options().unwrap(), rt::Options::default());
}
