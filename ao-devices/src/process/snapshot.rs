//! Stored process snapshots: the slot they were taken at plus an [`ao_wasm::Snapshot`] with its
//! all-zero 4 KiB chunks left out (aos memories are mostly zeros: a 71 MB ao-loader heap
//! snapshots to a few MB). Cheap to encode (one scan) and to decode (one copy).

use ao_core::{Error, Result};

const MAGIC: &[u8; 8] = b"AOPSNAP1";
const CHUNK: usize = 4096;

fn is_zero(chunk: &[u8]) -> bool {
    let mut words = chunk.chunks_exact(8);
    words.all(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

/// Encodes `(slot, snapshot bytes)`.
pub fn encode(slot: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + data.len() / 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&slot.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        if is_zero(chunk) {
            continue;
        }
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn bad(what: &str) -> Error {
    Error::Store(format!("malformed process snapshot: {what}"))
}

/// Decodes [`encode`]'s output into `(slot, snapshot bytes)`.
pub fn decode(bytes: &[u8]) -> Result<(u64, Vec<u8>)> {
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(bad("magic"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    let slot = u64_at(8);
    let len = usize::try_from(u64_at(16)).map_err(|_| bad("length"))?;
    if len > (1 << 36) {
        return Err(bad("length"));
    }
    let mut out = vec![0u8; len];
    let mut at = 24;
    while at < bytes.len() {
        if at + 4 > bytes.len() {
            return Err(bad("chunk index"));
        }
        let i =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        at += 4;
        let start = i.checked_mul(CHUNK).ok_or_else(|| bad("chunk index"))?;
        if start >= len {
            return Err(bad("chunk index"));
        }
        let n = CHUNK.min(len - start);
        if at + n > bytes.len() {
            return Err(bad("chunk"));
        }
        out[start..start + n].copy_from_slice(&bytes[at..at + n]);
        at += n;
    }
    Ok((slot, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_elides_zeros() {
        let mut data = vec![0u8; 10 * CHUNK + 100];
        data[5] = 1;
        data[3 * CHUNK + 7] = 9;
        data[10 * CHUNK + 99] = 3;
        let enc = encode(42, &data);
        assert!(enc.len() < 4 * CHUNK);
        let (slot, dec) = decode(&enc).unwrap();
        assert_eq!(slot, 42);
        assert_eq!(dec, data);
        assert!(decode(&enc[..enc.len() - 1]).is_err());
        assert!(decode(b"nonsense").is_err());
    }
}
