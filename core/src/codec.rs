//! A small binary encoding for journal records and snapshots: little-endian integers, LEB128
//! varints, length-prefixed strings. Decoding never panics: truncated or malformed input is a
//! [`CodecError`].

/// Input that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed encoding: {0}")]
pub struct CodecError(pub &'static str);

pub type Decoded<T> = Result<T, CodecError>;

/// Appends encoded values to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Unsigned LEB128.
    pub fn var(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    /// Signed values zig-zag encoded, so small negatives stay small.
    pub fn ivar(&mut self, value: i64) {
        self.var(((value << 1) ^ (value >> 63)) as u64);
    }

    pub fn f64(&mut self, value: f64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn bytes(&mut self, value: &[u8]) {
        self.var(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    pub fn len(&mut self, len: usize) {
        self.var(len as u64);
    }
}

/// Reads encoded values from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet: what a decoder leaves for a later stage (a journal record's
    /// effects), to re-encode or compare it whole.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CodecError("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Decoded<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn var(&mut self) -> Decoded<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError("varint too long"))
    }

    pub fn ivar(&mut self) -> Decoded<i64> {
        let raw = self.var()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub fn f64(&mut self) -> Decoded<f64> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(array))
    }

    pub fn bytes(&mut self) -> Decoded<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    pub fn str(&mut self) -> Decoded<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError("invalid UTF-8"))
    }

    /// A length or count, bounded by the bytes left so a corrupt count cannot make a caller
    /// allocate without limit.
    pub fn len(&mut self) -> Decoded<usize> {
        let len = usize::try_from(self.var()?).map_err(|_| CodecError("length overflows"))?;
        if len > self.buf.len() {
            return Err(CodecError("length beyond the end"));
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut w = Writer::default();
        w.var(300);
        w.ivar(-5);
        w.ivar(i64::MIN);
        w.str("SKU-1");
        w.f64(-74.5);
        w.u32(7);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.var(), Ok(300));
        assert_eq!(r.ivar(), Ok(-5));
        assert_eq!(r.ivar(), Ok(i64::MIN));
        assert_eq!(r.str(), Ok("SKU-1"));
        assert_eq!(r.f64(), Ok(-74.5));
        assert_eq!(r.u32(), Ok(7));
        assert!(r.is_empty());
    }

    #[test]
    fn rest_is_what_is_not_read_yet() {
        let mut w = Writer::default();
        w.var(300);
        w.str("left");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.var(), Ok(300));
        assert_eq!(r.rest(), &w.buf[2..]);
        assert_eq!(r.str(), Ok("left"));
        assert_eq!(r.rest(), b"");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut w = Writer::default();
        w.str("a long enough string");
        for cut in 0..w.buf.len() {
            assert!(Reader::new(&w.buf[..cut]).str().is_err());
        }
        assert!(Reader::new(&[0xff; 11]).var().is_err());
    }
}
