//! Memory for tables read at random rows.
//!
//! An IVF search rescores its candidates on rows scattered over the whole f32
//! item table (at 10M × 64, 2.56 GB): in 4 KiB pages each row costs a TLB
//! miss and a page walk as well as its cache lines. A copy in memory advised
//! for 2 MiB transparent huge pages (Linux `madvise(MADV_HUGEPAGE)`) covers
//! the table with a thousandth of the page entries (the gain is in
//! BENCHMARKS.md, "Constants and choices measured"). Where the kernel refuses or has no huge pages
//! the copy is in ordinary pages, which is what it would have been anyway.
//! [`crate::MappedModel::open`] reads a model file into such memory, so a
//! [`crate::Ranker`] opened from a file needs no copy.

use std::sync::Arc;

use arrow_buffer::{ArrowNativeType, Buffer, ScalarBuffer};
use rayon::prelude::*;

/// Below this a table fits few enough 4 KiB pages that 2 MiB ones gain
/// nothing worth a mapping of its own.
const HUGE_MIN_BYTES: usize = 16 << 20;

/// A copy of `data` in memory advised for 2 MiB pages (ordinary memory for a
/// small slice, or where no anonymous mapping can be made), copied in
/// parallel.
pub fn in_huge_pages<T: ArrowNativeType>(data: &[T]) -> ScalarBuffer<T> {
    // SAFETY: `data` is plain numbers, read as their bytes.
    let src = unsafe {
        std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
    };
    let filled: Result<Buffer, std::convert::Infallible> = huge_region(src.len(), |out| {
        const CHUNK: usize = 2 << 20;
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
        Ok(())
    });
    match filled {
        Ok(region) => ScalarBuffer::new(region, 0, data.len()),
    }
}

/// A buffer of `bytes` bytes (aligned to 8 at least) filled by `fill`, in
/// memory advised for 2 MiB pages when it is large enough to gain from them;
/// `fill`'s error if it fails.
pub(crate) fn huge_region<E>(
    bytes: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<Buffer, E> {
    if bytes >= HUGE_MIN_BYTES {
        if let Ok(mut map) = memmap2::MmapMut::map_anon(bytes) {
            // Advice only: refused (no THP in the kernel) means ordinary pages.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            fill(&mut map[..])?;
            let ptr = std::ptr::NonNull::new(map.as_mut_ptr());
            return Ok(match ptr {
                // SAFETY: `ptr` and `bytes` describe the mapping (page
                // aligned), which the `Arc` keeps alive as long as the buffer
                // and every slice of it; nothing writes to it any more.
                Some(ptr) => unsafe { Buffer::from_custom_allocation(ptr, bytes, Arc::new(map)) },
                None => Buffer::from_vec(map.to_vec()),
            });
        }
    }
    let mut words = vec![0u64; bytes.div_ceil(8)];
    // SAFETY: the words' first `bytes` bytes, as bytes.
    let view = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, bytes) };
    fill(view)?;
    Ok(Buffer::from_vec(words).slice_with_length(0, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_the_same_values_small_or_large() {
        for n in [0usize, 5, (HUGE_MIN_BYTES / 4) + 3] {
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
            let copy = in_huge_pages(&data);
            assert_eq!(&copy[..], &data[..], "{n} values");
        }
    }

    #[test]
    fn a_failed_fill_is_its_error_small_or_large() -> Result<(), &'static str> {
        for bytes in [3usize, HUGE_MIN_BYTES + 5] {
            let r = huge_region(bytes, |out| {
                assert_eq!(out.len(), bytes);
                out[0] = 1;
                Err("short read")
            });
            assert_eq!(r.err(), Some("short read"));
            let ok = huge_region(bytes, |out| {
                out.fill(7);
                Ok::<(), ()>(())
            })
            .map_err(|_| "fill failed")?;
            assert!(ok.len() == bytes && ok.as_slice().iter().all(|&b| b == 7));
        }
        Ok(())
    }
}
