//! ANS-104 tags in Apache Avro binary form: an array of `{name: bytes, value: bytes}` records
//! (spec §5.5.1).
//!
//! Decoding never allocates more than the input can back: counts are checked against the
//! bytes that remain, and every length is checked before it is used.

use bytes::Bytes;

use super::Ans104Error;

/// One tag: name and value as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The tag name.
    pub name: Bytes,
    /// The tag value.
    pub value: Bytes,
}

impl Tag {
    /// A tag from anything byte-like.
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encodes tags: zig-zag count, the records, a `0` terminator; no tags → no bytes.
pub fn encode(tags: &[Tag]) -> Vec<u8> {
    if tags.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(
        2 + tags
            .iter()
            .map(|t| t.name.len() + t.value.len() + 4)
            .sum::<usize>(),
    );
    write_long(&mut out, tags.len() as i64);
    for t in tags {
        write_long(&mut out, t.name.len() as i64);
        out.extend_from_slice(&t.name);
        write_long(&mut out, t.value.len() as i64);
        out.extend_from_slice(&t.value);
    }
    out.push(0);
    out
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn long(&mut self) -> Result<i64, Ans104Error> {
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(Ans104Error::Truncated("tags"))?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(Ans104Error::BadVarint);
            }
            z |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(Ans104Error::BadVarint)
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, Ans104Error> {
        let len = self.long()?;
        let remaining = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= remaining)
            .ok_or(Ans104Error::AbsurdLength {
                field,
                len: len.unsigned_abs(),
            })?;
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }
}

/// Decodes exactly `declared` tags from `buf`, which must be consumed entirely. Accepts the
/// multi-block form of Avro arrays (negative block counts followed by a block size).
pub fn decode(buf: &Bytes, declared: u64) -> Result<Vec<Tag>, Ans104Error> {
    if buf.is_empty() {
        return if declared == 0 {
            Ok(Vec::new())
        } else {
            Err(Ans104Error::TagCountMismatch { declared, found: 0 })
        };
    }
    // Each tag takes at least two bytes, so a lying count cannot make us over-allocate.
    let cap = usize::try_from(declared)
        .unwrap_or(usize::MAX)
        .min(buf.len() / 2);
    let mut tags = Vec::with_capacity(cap);
    let mut r = Reader { buf, pos: 0 };
    loop {
        let mut count = r.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count.checked_neg().ok_or(Ans104Error::BadVarint)?;
            let size = r.long()?;
            if size < 0 {
                return Err(Ans104Error::AbsurdLength {
                    field: "tag block size",
                    len: size.unsigned_abs(),
                });
            }
        }
        for _ in 0..count {
            if tags.len() as u64 >= declared {
                return Err(Ans104Error::TagCountMismatch {
                    declared,
                    found: tags.len() as u64 + 1,
                });
            }
            let name = r.bytes("tag name")?;
            let value = r.bytes("tag value")?;
            tags.push(Tag { name, value });
        }
    }
    if r.pos != buf.len() {
        return Err(Ans104Error::TrailingTagBytes(buf.len() - r.pos));
    }
    if tags.len() as u64 != declared {
        return Err(Ans104Error::TagCountMismatch {
            declared,
            found: tags.len() as u64,
        });
    }
    Ok(tags)
}
