//! The committed header must equal what cbindgen generates from this crate.

#[test]
fn header_is_current() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let path = dir.join("include/autark.h");
    if std::env::var_os("AUTARK_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/autark.h is stale: run `AUTARK_BLESS=1 cargo test -p autark-ffi header` and commit it"
    );
}

#[test]
fn null_pointers_are_status_codes() {
    use super::*;
    // SAFETY: every pointer passed is NULL or valid; this is what the test is about.
    unsafe {
        let mut m: *mut autark_model = std::ptr::null_mut();
        assert_eq!(autark_model_load(std::ptr::null(), std::ptr::null(), &mut m), AUTARK_ERR_NULL_POINTER);
        assert!(m.is_null());
        assert_eq!(autark_model_load(c"/nonexistent.autark".as_ptr(), std::ptr::null(), &mut m), AUTARK_ERR_IO);
        let msg = CStr::from_ptr(autark_last_error()).to_str().unwrap();
        assert!(msg.contains("nonexistent"), "{msg}");
        let bad = [0xffu8, 0xfe, 0];
        assert_eq!(autark_model_load(bad.as_ptr().cast(), std::ptr::null(), &mut m), AUTARK_ERR_INVALID_UTF8);
        let mut n = 5usize;
        assert_eq!(
            autark_tokenize(std::ptr::null(), c"x".as_ptr(), true, std::ptr::null_mut(), 0, &mut n),
            AUTARK_ERR_NULL_POINTER
        );
        assert_eq!(n, 0);
        assert_eq!(autark_session_eval(std::ptr::null_mut(), std::ptr::null(), 0), AUTARK_ERR_NULL_POINTER);
        // Structured output: NULL sessions, tools and buffers are status codes too.
        assert_eq!(
            autark_session_set_constraint(std::ptr::null_mut(), AUTARK_CONSTRAINT_REGEX, c"a".as_ptr()),
            AUTARK_ERR_NULL_POINTER
        );
        let (r, c) = ([c"user".as_ptr()], [c"hi".as_ptr()]);
        assert_eq!(
            autark_chat_tools(
                std::ptr::null_mut(),
                r.as_ptr(),
                c.as_ptr(),
                1,
                c"[]".as_ptr(),
                4,
                None,
                std::ptr::null_mut()
            ),
            AUTARK_ERR_NULL_POINTER
        );
        let mut len = 7usize;
        assert_eq!(
            autark_session_tool_calls(std::ptr::null(), std::ptr::null_mut(), 0, &mut len),
            AUTARK_ERR_NULL_POINTER
        );
        assert_eq!(len, 0);
        autark_model_free(std::ptr::null_mut());
        autark_session_free(std::ptr::null_mut());
    }
}
