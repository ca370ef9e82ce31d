//! A minimal, zero-copy protobuf wire-format reader.
//!
//! Only what the `io.prometheus.client` messages need: varints, 64-bit
//! fixed values, length-delimited fields and (for completeness) 32-bit
//! fixed values. Every read is bounds-checked against the enclosing
//! message, so a hostile length can never make the reader look past its
//! buffer or allocate; groups (wire types 3/4) are rejected, as no
//! Prometheus message uses them.

/// A wire-level decoding error: the body offset where it happened and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub offset: usize,
    pub message: String,
}

impl WireError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        WireError {
            offset,
            message: message.into(),
        }
    }
}

/// One field value as found on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over the fields of one message.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole body, for error positions.
    base: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    /// Body offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> WireError {
        WireError::new(self.offset(), message)
    }

    /// A base-128 varint of at most ten bytes.
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error("varint overflows 64 bits"))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.get(..len) {
            Some(bytes) => {
                self.pos += len;
                Ok(bytes)
            }
            None => Err(self.error(format!(
                "{what} of {len} bytes exceeds the {} bytes left in the message",
                rest.len()
            ))),
        }
    }

    /// The next field number and value; `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key_at = self.offset();
        let key = self.varint()?;
        let field = u32::try_from(key >> 3)
            .ok()
            .filter(|&f| f != 0 && f < (1 << 29))
            .ok_or_else(|| WireError::new(key_at, format!("illegal field tag {key}")))?;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                let bytes = self.take(8, "fixed64 value")?;
                WireValue::Fixed64(u64::from_le_bytes(le_array(bytes)))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                WireValue::Bytes(self.take(len, "length-delimited field")?)
            }
            5 => {
                let bytes = self.take(4, "fixed32 value")?;
                let mut arr = [0u8; 4];
                arr.copy_from_slice(bytes);
                WireValue::Fixed32(u32::from_le_bytes(arr))
            }
            3 | 4 => return Err(WireError::new(key_at, "protobuf groups are not supported")),
            other => return Err(WireError::new(key_at, format!("invalid wire type {other}"))),
        };
        Ok(Some((field, value)))
    }

    /// Body offset of a sub-slice of this message (for nested readers).
    pub(crate) fn offset_of(&self, inner: &[u8]) -> usize {
        self.base + (inner.as_ptr() as usize).saturating_sub(self.buf.as_ptr() as usize)
    }
}

fn le_array(bytes: &[u8]) -> [u8; 8] {
    let mut arr = [0u8; 8];
    arr.copy_from_slice(bytes);
    arr
}

fn wrong_type(field: &str) -> String {
    format!("wrong wire type for field {field}")
}

/// A `double` field.
pub(crate) fn as_f64(value: WireValue<'_>, field: &str) -> Result<f64, String> {
    match value {
        WireValue::Fixed64(bits) => Ok(f64::from_bits(bits)),
        _ => Err(wrong_type(field)),
    }
}

/// A varint field (`uint64`, `int64`, `int32`, `uint32`, enums), raw.
pub(crate) fn as_varint(value: WireValue<'_>, field: &str) -> Result<u64, String> {
    match value {
        WireValue::Varint(v) => Ok(v),
        _ => Err(wrong_type(field)),
    }
}

/// A length-delimited field (strings, bytes, sub-messages).
pub(crate) fn as_bytes<'a>(value: WireValue<'a>, field: &str) -> Result<&'a [u8], String> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        _ => Err(wrong_type(field)),
    }
}

/// A `string` field, which must be valid UTF-8.
pub(crate) fn as_str<'a>(value: WireValue<'a>, field: &str) -> Result<&'a str, String> {
    std::str::from_utf8(as_bytes(value, field)?)
        .map_err(|_| format!("field {field} is not valid UTF-8"))
}

/// Zig-zag decoding of `sint64`.
pub(crate) fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Zig-zag decoding of `sint32` (the varint is truncated to 32 bits first,
/// as protobuf decoders do).
pub(crate) fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Appends a repeated `sint64` field, packed or not.
pub(crate) fn push_sint64s(
    value: WireValue<'_>,
    field: &str,
    out: &mut Vec<i64>,
) -> Result<(), String> {
    match value {
        WireValue::Varint(v) => out.push(zigzag64(v)),
        WireValue::Bytes(packed) => {
            let mut reader = Fields::new(packed, 0);
            while reader.pos < packed.len() {
                let v = reader
                    .varint()
                    .map_err(|e| format!("packed field {field}: {}", e.message))?;
                out.push(zigzag64(v));
            }
        }
        _ => return Err(wrong_type(field)),
    }
    Ok(())
}

/// Appends a repeated `double` field, packed or not.
pub(crate) fn push_f64s(
    value: WireValue<'_>,
    field: &str,
    out: &mut Vec<f64>,
) -> Result<(), String> {
    match value {
        WireValue::Fixed64(bits) => out.push(f64::from_bits(bits)),
        WireValue::Bytes(packed) => {
            if packed.len() % 8 != 0 {
                return Err(format!(
                    "packed field {field} has {} bytes, not a multiple of 8",
                    packed.len()
                ));
            }
            out.extend(
                packed
                    .chunks_exact(8)
                    .map(|c| f64::from_bits(u64::from_le_bytes(le_array(c)))),
            );
        }
        _ => return Err(wrong_type(field)),
    }
    Ok(())
}

/// Reads the varint length prefix of a delimited message at `pos` and
/// returns the message's range. The prefix may be at most five bytes long
/// (a 32-bit length), as in Prometheus.
pub(crate) fn delimited(body: &[u8], pos: usize) -> Result<std::ops::Range<usize>, WireError> {
    let rest = body.get(pos..).unwrap_or_default();
    let mut reader = Fields::new(rest, pos);
    let len = reader.varint()?;
    let prefix = reader.pos;
    if prefix > 5 {
        return Err(WireError::new(pos, "invalid varint length prefix"));
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let available = rest.len() - prefix;
    if len > available {
        return Err(WireError::new(
            pos,
            format!("message length {len} exceeds the {available} bytes left in the body"),
        ));
    }
    Ok(pos + prefix..pos + prefix + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_overflow() {
        let mut f = Fields::new(&[0xac, 0x02], 0);
        assert_eq!(f.varint(), Ok(300));
        let mut f = Fields::new(&[0xff; 11], 0);
        assert!(f.varint().is_err());
        let mut f = Fields::new(&[0x80], 0);
        assert_eq!(
            f.varint().map_err(|e| e.message),
            Err("truncated varint".into())
        );
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Fields::new(&max, 0).varint(), Ok(u64::MAX));
    }

    #[test]
    fn zigzag() {
        assert_eq!(zigzag64(0), 0);
        assert_eq!(zigzag64(1), -1);
        assert_eq!(zigzag64(2), 1);
        assert_eq!(zigzag64(u64::MAX), i64::MIN);
        assert_eq!(zigzag32(3), -2);
        assert_eq!(zigzag32(4), 2);
    }

    #[test]
    fn oversized_lengths_are_errors() {
        // Field 1, wire type 2, length 100 with 1 byte following.
        let mut f = Fields::new(&[0x0a, 100, b'x'], 0);
        assert!(f.next_field().is_err());
        // A length prefix longer than 5 bytes.
        assert!(delimited(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 0).is_err());
        // A length larger than the body.
        assert!(delimited(&[0x05, 1, 2], 0).is_err());
        assert_eq!(delimited(&[0x02, 1, 2, 9], 0), Ok(1..3));
        // Groups and invalid wire types.
        assert!(Fields::new(&[0x0b], 0).next_field().is_err());
        assert!(Fields::new(&[0x0e], 0).next_field().is_err());
        // Field number zero.
        assert!(Fields::new(&[0x00, 0x00], 0).next_field().is_err());
    }

    #[test]
    fn packed_and_unpacked_repeated() {
        let mut ints = Vec::new();
        push_sint64s(WireValue::Bytes(&[0x02, 0x01, 0x04]), "d", &mut ints).unwrap_or_default();
        push_sint64s(WireValue::Varint(3), "d", &mut ints).unwrap_or_default();
        assert_eq!(ints, vec![1, -1, 2, -2]);
        let mut floats = Vec::new();
        assert!(push_f64s(WireValue::Bytes(&[0; 7]), "c", &mut floats).is_err());
        let bytes = 1.5f64.to_le_bytes();
        assert!(push_f64s(WireValue::Bytes(&bytes), "c", &mut floats).is_ok());
        assert_eq!(floats, vec![1.5]);
    }
}
