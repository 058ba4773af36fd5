//! The `.autark` validator: `autark_format::parse` must return `Ok` or `Err` for any bytes, and
//! a layout it accepts must only point inside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(layout) = autark_format::parse(data) {
        let len = data.len() as u64;
        assert!(layout.metadata_bytes.end <= data.len(), "metadata outside the file");
        assert!(layout.data_offset.checked_add(layout.data_len).is_some_and(|e| e <= len));
        for t in &layout.tensors {
            let end = t.offset.checked_add(t.nbytes).expect("tensor end overflows");
            assert!(end <= len, "tensor {} outside the file", t.name);
            // What AutarkFile::data does after a successful open.
            let _ = &data[t.offset as usize..end as usize];
            let _ = t.n_elements();
        }
    }
});
