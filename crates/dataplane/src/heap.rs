//! Giving freed memory back to the kernel. A BGP table can be 100,000
//! routes: the maps holding it (the speaker's RIB, the learned routes)
//! grow by doubling, and a burst leaves change lists and update buffers
//! behind. glibc keeps what is freed mapped unless told otherwise, so the
//! agent's resident memory would stay at the burst's peak.

/// Process-wide allocator settings, once at start: allocations of 1 MiB or
/// more are mapped on their own and unmapped when freed (glibc otherwise
/// raises that threshold as large blocks are freed, keeping later ones on
/// its heaps).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Returns the free pages of every malloc arena to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
