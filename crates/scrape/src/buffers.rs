//! A small process-wide pool of body buffers.
//!
//! A scrape loop needs its body buffer only from the fetch until the append
//! is done — a few milliseconds per interval. Keeping one buffer per loop
//! would cost every target its largest body forever (200 targets × 250 KiB
//! = 50 MiB); the pool keeps only as many as are in use at once, plus a few
//! idle ones, and drops outsized buffers instead of hoarding them. A fetch
//! also borrows one for a gzip'd body's compressed bytes while it inflates.
//!
//! Body buffers have a pool of their own and keep their bytes when they go
//! back to it (see [`BodyBuf`]): inflating a page into a buffer that held a
//! page before then writes over initialised memory instead of zeroing a
//! quarter of a megabyte first.

use parking_lot::Mutex;

/// Idle buffers kept for reuse.
const MAX_IDLE: usize = 4;
/// Buffers that grew beyond this are freed rather than pooled.
const MAX_POOLED_CAPACITY: usize = 4 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static BODIES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer, reused when one is idle.
pub(crate) fn take() -> Vec<u8> {
    POOL.lock().pop().unwrap_or_default()
}

/// Returns a buffer for reuse.
pub(crate) fn give_back(mut buf: Vec<u8>) {
    buf.clear();
    park(&POOL, buf);
}

/// An empty body buffer, reused (with its old bytes) when one is idle.
pub(crate) fn take_body() -> BodyBuf {
    let bytes = BODIES.lock().pop().unwrap_or_default();
    BodyBuf {
        bytes,
        len: Some(0),
    }
}

/// Returns a body buffer for reuse, old bytes and all.
pub(crate) fn give_back_body(body: BodyBuf) {
    park(&BODIES, body.bytes);
}

/// Heap bytes held by idle buffers of both pools: a fixed cost, at most
/// `2 × MAX_IDLE` buffers whatever the number of series, which a count of
/// bytes per series leaves out.
pub fn idle_buffer_bytes() -> usize {
    pooled_bytes(&POOL) + pooled_bytes(&BODIES)
}

fn pooled_bytes(pool: &Mutex<Vec<Vec<u8>>>) -> usize {
    pool.lock().iter().map(Vec::capacity).sum()
}

fn park(pool: &Mutex<Vec<Vec<u8>>>, buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_POOLED_CAPACITY {
        return;
    }
    let mut pool = pool.lock();
    if pool.len() < MAX_IDLE {
        pool.push(buf);
    }
}

/// A scrape's body. Its vector may hold more bytes than the body — what an
/// earlier body left — so that the one-shot inflate can write into memory
/// that is already initialised; only the body itself is ever visible
/// ([`BodyBuf::as_slice`]), so no byte of an earlier scrape (of this or
/// another target) can reach the parser or the targets page.
#[derive(Debug, Default)]
pub struct BodyBuf {
    bytes: Vec<u8>,
    /// The body's length, or `None` when it is all of `bytes` (written by
    /// appending through [`BodyBuf::appender`]).
    len: Option<usize>,
}

impl BodyBuf {
    /// The body.
    pub fn as_slice(&self) -> &[u8] {
        match self.len {
            Some(n) => self.bytes.get(..n).unwrap_or_default(),
            None => &self.bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Empties the body; the bytes stay for the next one.
    pub fn clear(&mut self) {
        self.len = Some(0);
    }

    /// An empty vector to append the body to (old bytes are dropped).
    pub fn appender(&mut self) -> &mut Vec<u8> {
        self.bytes.clear();
        self.len = None;
        &mut self.bytes
    }

    /// The body as `size` bytes to be written over, zeroing only what no
    /// earlier body initialised. The caller must overwrite all of them or
    /// [`BodyBuf::clear`] the body.
    pub fn overwrite(&mut self, size: usize) -> &mut [u8] {
        if self.bytes.len() < size {
            self.bytes.resize(size, 0);
        }
        self.len = Some(size);
        self.bytes.get_mut(..size).unwrap_or_default()
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

    /// On a pool of its own: the process-wide ones are shared with the
    /// crate's other tests, running at the same time.
    #[test]
    fn pooled_bytes_are_the_idle_buffers_capacities() {
        let pool = Mutex::new(Vec::new());
        assert_eq!(pooled_bytes(&pool), 0);
        park(&pool, Vec::with_capacity(1000));
        park(&pool, Vec::with_capacity(3000));
        park(&pool, vec![0u8; MAX_POOLED_CAPACITY + 1]);
        assert_eq!(pooled_bytes(&pool), 4000, "an outsized buffer is not kept");
        for _ in 0..MAX_IDLE {
            park(&pool, Vec::with_capacity(10));
        }
        assert_eq!(pooled_bytes(&pool), 4000 + (MAX_IDLE - 2) * 10);
    }

    #[test]
    fn a_body_never_shows_an_earlier_bodys_bytes() {
        let mut b = BodyBuf::default();
        b.appender().extend_from_slice(b"first body, long");
        assert_eq!(b.as_slice(), b"first body, long");
        b.clear();
        assert!(b.is_empty());
        // Written over in place: the old bytes beyond the new body stay
        // hidden, and nothing beyond them is zeroed.
        b.overwrite(5).copy_from_slice(b"short");
        assert_eq!(b.as_slice(), b"short");
        assert_eq!(b.bytes.len(), 16);
        let grown = b.overwrite(20);
        assert_eq!(&grown[16..], [0; 4]);
        grown.copy_from_slice(b"twenty bytes of body");
        assert_eq!(b.as_slice(), b"twenty bytes of body");
        b.appender().extend_from_slice(b"plain");
        assert_eq!(b.as_slice(), b"plain");
        b.clear();
        assert_eq!(b.as_slice(), b"");
    }
}
