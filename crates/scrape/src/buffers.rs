//! A small process-wide pool of body buffers.
//!
//! A scrape loop needs its body buffer only from the fetch until the append
//! is done — a few milliseconds per interval. Keeping one buffer per loop
//! would cost every target its largest body forever (200 targets × 250 KiB
//! = 50 MiB); the pool keeps only as many as are in use at once, plus a few
//! idle ones, and drops outsized buffers instead of hoarding them. A fetch
//! also borrows one for a gzip'd body's compressed bytes while it inflates.

use parking_lot::Mutex;

/// Idle buffers kept for reuse.
const MAX_IDLE: usize = 4;
/// Buffers that grew beyond this are freed rather than pooled.
const MAX_POOLED_CAPACITY: usize = 4 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer, reused when one is idle.
pub(crate) fn take() -> Vec<u8> {
    POOL.lock().pop().unwrap_or_default()
}

/// Returns a buffer for reuse.
pub(crate) fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_POOLED_CAPACITY {
        return;
    }
    buf.clear();
    let mut pool = POOL.lock();
    if pool.len() < MAX_IDLE {
        pool.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let mut b = take();
        b.extend_from_slice(b"abc");
        let cap = b.capacity();
        give_back(b);
        let again = take();
        assert!(again.is_empty());
        assert!(again.capacity() >= cap.min(3));
        give_back(vec![0u8; MAX_POOLED_CAPACITY + 1]);
        for _ in 0..(MAX_IDLE * 2) {
            give_back(Vec::with_capacity(16));
        }
        assert!(POOL.lock().len() <= MAX_IDLE);
    }
}
