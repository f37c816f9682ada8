//! A cache prefetch hint, for data the dispatcher knows it will read soon
//! and that is likely out of cache (the oldest server transaction, evicted
//! by the next request when the response cache is full).

/// Asks the CPU to start loading the cache line at `p`: a hint with no
/// effect on behaviour (any address may be given, none is read). A no-op
/// on targets other than x86-64.
#[inline]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
