//! `uniffi-bindgen` of the uniffi version this crate links (see bindings/generate.sh).

fn main() {
    uniffi::uniffi_bindgen_main()
}
