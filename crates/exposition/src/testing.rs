//! A tiny protobuf writer for building `io.prometheus.client` exposition
//! bodies in tests (this crate's and the scrape and end-to-end tests of
//! others). Not used by the parser itself.

/// A message under construction; builder methods append one field each.
#[derive(Default, Clone, Debug)]
pub struct Msg(pub Vec<u8>);

/// Appends a base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    pub fn key(mut self, field: u32, wire: u8) -> Self {
        put_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
        self
    }

    pub fn varint(self, field: u32, v: u64) -> Self {
        let mut m = self.key(field, 0);
        put_varint(&mut m.0, v);
        m
    }

    /// A zigzag-encoded `sint32`/`sint64`.
    pub fn sint(self, field: u32, v: i64) -> Self {
        self.varint(field, ((v << 1) ^ (v >> 63)) as u64)
    }

    pub fn double(self, field: u32, v: f64) -> Self {
        let mut m = self.key(field, 1);
        m.0.extend_from_slice(&v.to_le_bytes());
        m
    }

    pub fn bytes(self, field: u32, b: &[u8]) -> Self {
        let mut m = self.key(field, 2);
        put_varint(&mut m.0, b.len() as u64);
        m.0.extend_from_slice(b);
        m
    }

    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

/// A varint-delimited stream of `MetricFamily` messages, as a target serves it.
pub fn delimited(families: &[Msg]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        put_varint(&mut out, f.0.len() as u64);
        out.extend_from_slice(&f.0);
    }
    out
}
