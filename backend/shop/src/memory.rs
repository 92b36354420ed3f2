//! Hands back to the system the memory that start-up freed.
//!
//! Start-up makes and drops a lot: migrations, the OpenAPI document, the
//! templates' compilation, the reflection services' descriptors. glibc
//! keeps what is freed in its arenas for reuse, and returns only what sits
//! at the top of one; the rest stays resident, although nothing may need it
//! again. Measured after start (docs/performance.md): about 1.6 MB of an
//! idle `shop all`'s 7 MB of anonymous memory was such free space.

/// Asks glibc to return the free pages of all its arenas (`malloc_trim(0)`);
/// whether glibc says it returned any. A no-op elsewhere (other allocators return what
/// they free by themselves, or have no such call).
///
/// It walks and locks each arena in turn: call it at a quiet moment, not
/// on a request's path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "glibc's malloc_trim is a C function")]
pub fn release_freed() -> bool {
    // SAFETY: malloc_trim takes no pointer and no state of ours; glibc locks
    // each arena while it trims it, as any allocation does.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// The call reaches glibc's `malloc_trim`: with 4 MiB freed (most of
    /// it below a block still in use, which `free` itself never returns),
    /// glibc says pages went back. A no-op would fail this.
    #[test]
    fn free_space_below_a_live_block_is_returned() {
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![u8::try_from(i % 251).unwrap_or(0); 1024]).collect();
        let pinned = vec![1_u8; 1024];
        drop(blocks);
        assert!(super::release_freed(), "4 MiB freed below a live block, and nothing returned");
        assert_eq!(pinned[0], 1);
    }
}
