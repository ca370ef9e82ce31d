//! A small dictionary of the label text's frequent substrings, learnt from
//! the text itself.
//!
//! Once the hex ids are packed ([`crate::packed_text`]), what is left of
//! the distinct label text is mostly the same few words again and again:
//! `/var/lib/kubelet/pods/`, `/volumes/kubernetes.io~projected/`, `k8s_`,
//! deployment and namespace names, `/kubepods/burstable/pod`, and the label
//! names with their field heads, stored once per pair.
//! [`Symbols`] holds up to [`MAX_SYMBOLS`] substrings of 2 to [`MAX_LEN`]
//! bytes, each replaced by a one-byte code in the stored text.
//!
//! The dictionary is trained on a sample of the pairs the agent actually
//! stores, in the manner of FSST (Boncz, Neumann, Leis: "FSST: Fast Random
//! Access String Compression", VLDB 2020): start empty; encode the sample
//! with the current dictionary, count every token and every pair of
//! neighbouring tokens, keep the substrings that save the most bytes
//! (count × (length − 1)); repeat a few rounds, so that symbols grow from
//! pairs of bytes into whole words. Nothing about any particular workload
//! is built in: a fleet of nodes whose labels look different trains a
//! different dictionary.
//!
//! Encoding is greedy (longest symbol at each position). Training and
//! encoding run when a pair is interned, never per sample; decoding is a
//! table lookup per code.

use hashbrown::HashMap;

/// Codes available: the packed format keeps one byte per code
/// (`0x80..=0xFC`, see [`crate::packed_text`]).
pub(crate) const MAX_SYMBOLS: usize = 125;
/// Longest symbol.
pub(crate) const MAX_LEN: usize = 16;
/// Rounds of encode-count-select; each can double a symbol's length.
const ROUNDS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Symbol {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl Symbol {
    fn text(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// A symbol as the matcher compares it: its bytes read as one
/// little-endian word, so a match is an XOR and a mask, not a `memcmp`
/// call (which took 31 % of a WAL replay's time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    word: u128,
    len: u8,
    code: u8,
}

impl Candidate {
    fn matches(&self, head: u128, available: usize) -> bool {
        let len = usize::from(self.len);
        let mask = u128::MAX >> (8 * (MAX_LEN - len));
        len <= available && (head ^ self.word) & mask == 0
    }
}

/// The first [`MAX_LEN`] bytes of `text` as a little-endian word, zero
/// past its end.
fn head_word(text: &[u8]) -> u128 {
    if let Some(head) = text.first_chunk::<MAX_LEN>() {
        return u128::from_le_bytes(*head);
    }
    // Shifted in, not copied through memory: a word loaded right after
    // byte stores to it stalls.
    text.iter()
        .rev()
        .fold(0, |word, &b| word << 8 | u128::from(b))
}

/// Buckets of symbols by their first two bytes (which every symbol has).
/// Label names share their first byte (their field head), so a first-byte
/// index left dozens of candidates to try at each name.
const BUCKETS: usize = 512;
const _: () = assert!(BUCKETS.is_power_of_two());

/// The bucket of the symbols a text starting with `head` can start with.
fn bucket(head: u128) -> usize {
    let two = u32::from(head as u16);
    (two.wrapping_mul(0x9E37_79B1) >> (32 - BUCKETS.trailing_zeros())) as usize
}

/// The trained dictionary; empty until trained (then every byte is a
/// literal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbols {
    /// By code.
    symbols: Vec<Symbol>,
    /// Ordered by [`bucket`], longest symbol first among equals.
    by_bucket: Vec<Candidate>,
    /// `by_bucket[starts[b]..starts[b + 1]]` are the symbols in bucket
    /// `b`.
    starts: Vec<u16>,
}

impl Symbols {
    /// Learns a dictionary from `sample`, a set of texts.
    pub fn train(sample: &[&[u8]]) -> Symbols {
        let mut symbols = Symbols::default();
        for _ in 0..ROUNDS {
            let next = symbols.candidates(sample);
            if next == symbols {
                break;
            }
            symbols = next;
        }
        symbols
    }

    /// The bytes of `code` padded with zeros to [`MAX_LEN`], and its
    /// length: writing all of them is one store.
    pub fn padded(&self, code: u8) -> Option<(&[u8; MAX_LEN], usize)> {
        let s = self.symbols.get(usize::from(code))?;
        Some((&s.bytes, usize::from(s.len)))
    }

    /// The text of `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.symbols.get(usize::from(code)).map(Symbol::text)
    }

    /// The longest symbol `text` starts with: (code, length).
    pub fn longest_prefix(&self, text: &[u8]) -> Option<(u8, usize)> {
        self.longest_in(head_word(text), text.len())
    }

    /// The longest symbol a text starts with, given its first
    /// [`MAX_LEN`] bytes as [`head_word`] reads them and its length
    /// (nothing for an empty text).
    pub fn longest_in(&self, head: u128, len: usize) -> Option<(u8, usize)> {
        if len < 2 {
            return None;
        }
        let b = bucket(head);
        let from = usize::from(*self.starts.get(b)?);
        let to = usize::from(*self.starts.get(b + 1)?);
        self.by_bucket
            .get(from..to)?
            .iter()
            .find(|c| c.matches(head, len))
            .map(|c| (c.code, usize::from(c.len)))
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        self.symbols.capacity() * std::mem::size_of::<Symbol>()
            + self.by_bucket.capacity() * std::mem::size_of::<Candidate>()
            + self.starts.capacity() * 2
    }

    /// One training round: the best symbols among this dictionary's tokens
    /// and their concatenations with the next token.
    fn candidates(&self, sample: &[&[u8]]) -> Symbols {
        let mut count: HashMap<&[u8], u32> = HashMap::new();
        for &text in sample {
            let mut at = 0;
            let mut prev_start = None;
            while at < text.len() {
                let len = self
                    .longest_prefix(text.get(at..).unwrap_or_default())
                    .map_or(1, |(_, len)| len);
                if len > 1 {
                    *count
                        .entry(text.get(at..at + len).unwrap_or_default())
                        .or_default() += 1;
                }
                if let Some(start) = prev_start {
                    if at + len - start <= MAX_LEN {
                        let joined = text.get(start..at + len).unwrap_or_default();
                        *count.entry(joined).or_default() += 1;
                    }
                }
                prev_start = Some(at);
                at += len;
            }
        }
        let mut ranked: Vec<(&[u8], u64)> = count
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(s, n)| (s, u64::from(n) * (s.len() as u64 - 1)))
            .collect();
        // Ties broken by the text, so training is deterministic.
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Symbols::from_texts(ranked.iter().take(MAX_SYMBOLS).map(|&(s, _)| s))
    }

    fn from_texts<'a>(texts: impl Iterator<Item = &'a [u8]>) -> Symbols {
        let symbols: Vec<Symbol> = texts
            .filter(|t| (2..=MAX_LEN).contains(&t.len()))
            .take(MAX_SYMBOLS)
            .map(|t| {
                let mut bytes = [0; MAX_LEN];
                bytes
                    .get_mut(..t.len())
                    .unwrap_or_default()
                    .copy_from_slice(t);
                Symbol {
                    bytes,
                    len: t.len() as u8,
                }
            })
            .collect();
        let mut by_bucket: Vec<Candidate> = symbols
            .iter()
            .zip(0u8..)
            .map(|(s, code)| Candidate {
                word: u128::from_le_bytes(s.bytes),
                len: s.len,
                code,
            })
            .collect();
        by_bucket.sort_unstable_by_key(|c| (bucket(c.word), std::cmp::Reverse(c.len)));
        let mut starts = vec![0u16; BUCKETS + 1];
        for c in &by_bucket {
            starts[bucket(c.word) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        Symbols {
            symbols,
            by_bucket,
            starts,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mountpoints() -> Vec<Vec<u8>> {
        (0..300)
            .map(|i| {
                format!(
                    "/var/lib/kubelet/pods/{i}/volumes/kubernetes.io~projected/kube-api-access-{i}"
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn frequent_words_become_long_symbols() {
        let texts = mountpoints();
        let sample: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        let symbols = Symbols::train(&sample);
        assert!(symbols.get(0).is_some());
        assert!(symbols.symbols.len() <= MAX_SYMBOLS);
        // Encoding one value greedily: the fixed text collapses to a few codes.
        let text = b"/var/lib/kubelet/pods/7/volumes/kubernetes.io~projected/kube-api-access-7";
        let mut at = 0;
        let mut tokens = 0;
        while at < text.len() {
            at += symbols
                .longest_prefix(&text[at..])
                .map_or(1, |(_, len)| len);
            tokens += 1;
        }
        assert!(tokens <= 12, "{tokens} tokens for {} bytes", text.len());
        for code in 0..symbols.symbols.len() as u8 {
            let s = symbols.get(code).unwrap();
            assert!((2..=MAX_LEN).contains(&s.len()));
        }
    }

    #[test]
    fn training_is_deterministic_and_text_without_repeats_learns_nothing() {
        let texts = mountpoints();
        let sample: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        assert_eq!(Symbols::train(&sample), Symbols::train(&sample));
        assert_eq!(Symbols::train(&[b"abcdefgh".as_slice()]).get(0), None);
        assert_eq!(Symbols::train(&[]).get(0), None);
    }

    #[test]
    fn the_longest_matching_symbol_wins() {
        let s = Symbols::from_texts([b"ab".as_slice(), b"abcd", b"abc", b"xy"].into_iter());
        assert_eq!(s.longest_prefix(b"abcdef"), Some((1, 4)));
        assert_eq!(s.longest_prefix(b"abce"), Some((2, 3)));
        assert_eq!(s.longest_prefix(b"abx"), Some((0, 2)));
        assert_eq!(s.longest_prefix(b"a"), None);
        assert_eq!(s.longest_prefix(b""), None);
        assert_eq!(s.get(3), Some(b"xy".as_slice()));
        assert_eq!(s.get(4), None);
    }
}
