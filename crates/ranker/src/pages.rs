//! Memory for tables read at random rows.
//!
//! An IVF search rescores its candidates on rows scattered over the whole f32
//! item table (at 10M × 64, 2.56 GB): in 4 KiB pages each row costs a TLB
//! miss and a page walk as well as its cache lines. A copy in memory advised
//! for 2 MiB transparent huge pages (Linux `madvise(MADV_HUGEPAGE)`) covers
//! the table with a thousandth of the page entries: +10% queries/s at 10M
//! (`bench topk --index ivf`). Where the kernel refuses or has no huge pages
//! the copy is in ordinary pages, which is what it would have been anyway.

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
    let bytes = std::mem::size_of_val(data);
    if bytes < HUGE_MIN_BYTES {
        return ScalarBuffer::from(data.to_vec());
    }
    let Ok(mut map) = memmap2::MmapMut::map_anon(bytes) else {
        return ScalarBuffer::from(data.to_vec());
    };
    // Advice only: refused (no THP in the kernel) means ordinary pages.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    // SAFETY: `data` is `bytes` bytes of plain numbers, read as bytes.
    let src = unsafe { std::slice::from_raw_parts(data.as_ptr() as *const u8, bytes) };
    const CHUNK: usize = 2 << 20;
    map.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
    let Ok(map) = map.make_read_only() else {
        return ScalarBuffer::from(data.to_vec());
    };
    let Some(ptr) = std::ptr::NonNull::new(map.as_ptr() as *mut u8) else {
        return ScalarBuffer::from(data.to_vec());
    };
    // SAFETY: `ptr` and `bytes` describe the mapping (page-aligned, so
    // aligned for `T`), which the `Arc` keeps alive as long as the buffer.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, bytes, Arc::new(map)) };
    ScalarBuffer::new(buffer, 0, data.len())
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
}
