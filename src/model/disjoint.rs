//! One raw output pointer shared by parallel tasks (rayon) that each write
//! their own disjoint part of a buffer: the packed GEMMs' output tiles, the
//! fused kernels' per-sequence slots, attention's backward pass.

/// A raw `*mut f32` that parallel tasks may share. Whoever makes one
/// promises what the `unsafe impl`s below rely on: every task writes only
/// its own elements, nothing reads through the pointer while the tasks run,
/// and the buffer outlives the parallel loop.
pub(crate) struct SendPtr(pub(crate) *mut f32);

// SAFETY: by the contract above, the pointer never carries overlapping
// writes across threads and the buffer it addresses outlives its users.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: no two threads write the same element, and nothing
// reads through the pointer while the tasks run.
unsafe impl Sync for SendPtr {}
