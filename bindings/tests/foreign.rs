//! The generated bindings, exercised from their language under `cargo test` (STYLE rule 16).
//! uniffi builds the package's cdylib (`cargo test --release --no-run`), generates the Python
//! module next to a copy of it and runs each script with `python3`.

uniffi::build_foreign_language_testcases!("tests/bindings/test_generated.py");
