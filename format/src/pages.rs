//! Zero-filled arrays in anonymous mappings, for the runtime's large per-session buffers (the KV
//! cache). The system commits such a mapping page by page as it is written, and dropping it gives
//! every page back at once. A zeroed heap allocation does neither reliably: once glibc has freed
//! a large block, it raises its mapping threshold and serves the next one of that size from its
//! heap, zero-filling (and so committing) all of it.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use autark_kernels::BlockQ8_0;

mod sealed {
    pub trait Sealed {}
}

/// Element types of `Zeroed`: `Copy` values with no padding, for which all-zero bytes are a valid
/// value, aligned to at most a page.
pub trait Plain: Copy + sealed::Sealed {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Plain for $t {}
        const _: () = assert!(std::mem::align_of::<$t>() <= 4096);
    )*};
}
// BlockQ8_0 is `#[repr(C)]` of a u16 and 32 i8 (34 bytes, no padding; zero: d = 0, qs = 0).
plain!(f32, u16, BlockQ8_0);

/// `len` values of `T`, zero at first, in an anonymous mapping of their own.
pub struct Zeroed<T: Plain> {
    map: memmap2::MmapMut,
    len: usize,
    _values: PhantomData<T>,
}

impl<T: Plain> Zeroed<T> {
    /// Maps `len` zero values; pages are committed as they are written.
    pub fn new(len: usize) -> std::io::Result<Zeroed<T>> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{len} values overflow the address space"))
        })?;
        let map = memmap2::MmapMut::map_anon(bytes)?;
        Ok(Zeroed { map, len, _values: PhantomData })
    }

    /// No values (a zero-length mapping holds no pages).
    pub fn empty() -> Zeroed<T> {
        // A zero-length anonymous mapping only fails where mmap is unsupported at all.
        Self::new(0).unwrap_or_else(|e| panic!("anonymous mapping of 0 bytes failed: {e}"))
    }
}

impl<T: Plain> Deref for Zeroed<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping is page-aligned (every `Plain` type's alignment is at most a page),
        // at least `len * size_of::<T>()` bytes long, readable and initialised (zero, or values
        // written through `deref_mut`); any bytes are a valid `T` for a `Plain` type. The slice
        // borrows `self`, which owns the mapping.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Plain> DerefMut for Zeroed<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the mapping is private to `self` and writable, and the mutable
        // borrow of `self` makes this slice the only access to it.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<T>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_at_first_written_and_read_back() {
        let mut f = Zeroed::<f32>::new(10_000).unwrap();
        assert!(f.iter().all(|&x| x == 0.0));
        f[9_999] = 1.5;
        f[0] = -2.0;
        assert_eq!((f[0], f[9_999], f.len()), (-2.0, 1.5, 10_000));
        let q = Zeroed::<BlockQ8_0>::new(3).unwrap();
        assert!(q.iter().all(|b| b.d == 0 && b.qs == [0; 32]));
        assert!(Zeroed::<u16>::empty().is_empty());
        assert!(Zeroed::<u16>::new(usize::MAX / 2).is_err());
    }
}
