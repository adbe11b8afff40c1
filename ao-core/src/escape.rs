//! Key escaping in `ao-types` (HyperBEAM's `hb_escape`, spec §5.1.5).

/// Escapes every byte except `a-z 0-9 . - _ / ? & +` as `%` and two lower-case hex digits.
pub fn encode(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    encode_into(&mut out, key);
    out
}

/// Appends the escaped form of `key` to `out`.
pub fn encode_into(out: &mut Vec<u8>, key: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in key {
        if b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'.' | b'-' | b'_' | b'/' | b'?' | b'&' | b'+')
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// Appends `key` escaped for use as a key of the `ao-types` dictionary: [`encode_into`], and
/// also `/ ? & +` anywhere and `.` as the first byte, which a dictionary key cannot hold.
/// HyperBEAM emits those unescaped and then cannot parse its own dictionary (spec §5.1.5, a
/// latent bug we fix); every key HyperBEAM can round-trip is escaped identically here.
pub fn encode_types_key_into(out: &mut Vec<u8>, key: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &b) in key.iter().enumerate() {
        if matches!(b, b'/' | b'?' | b'&' | b'+') || (i == 0 && b == b'.') {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            encode_into(out, &key[i..=i]);
        }
    }
}

/// Decodes `%HH` (either case) to the byte; other bytes pass through. A `%` not followed by two
/// hex digits is kept verbatim.
pub fn decode(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        if key[i] == b'%'
            && i + 2 < key.len()
            && let (Some(h), Some(l)) = (hex(key[i + 1]), hex(key[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(key[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperbeam_vectors() {
        assert_eq!(encode(b"A"), b"%41");
        assert_eq!(encode(b"Z"), b"%5a");
        assert_eq!(encode(b"hello World"), b"hello%20%57orld");
        assert_eq!(encode(b"testABC"), b"test%41%42%43");
        assert_eq!(decode(b"%61"), b"a");
        assert_eq!(decode(b"%41"), b"A");
        assert_eq!(decode(b"%21"), b"!");
        assert_eq!(decode(b"hello%2c%20%57orld%21"), b"hello, World!");
        assert_eq!(decode(b"%2f"), b"/");
        assert_eq!(decode(b"%3f"), b"?");
        assert_eq!(decode(b"abc%"), b"abc%");
        assert_eq!(decode(b"%4"), b"%4");
    }

    #[test]
    fn types_keys_escape_what_a_dictionary_key_cannot_hold() {
        let enc = |k: &[u8]| {
            let mut out = Vec::new();
            encode_types_key_into(&mut out, k);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(enc(b"a/b?c&d+e"), "a%2fb%3fc%26d%2be");
        assert_eq!(enc(b".x.y"), "%2ex.y");
        assert_eq!(enc(b"SeqD"), "%53eq%44");
        for k in [&b"a/b?c&d+e"[..], b".x.y", b"?", b"Mixed Case"] {
            assert_eq!(decode(enc(k).as_bytes()), k);
        }
    }
}
