//! EMSA-PSS verification that accepts any salt length (RFC 8017 §9.1.2).
//!
//! HyperBEAM signs with a salt as long as the digest, but verifies by recovering the salt from
//! the encoded message, so it accepts any length. Node-based clients (aoconnect, ao-core-libs,
//! hbsig) sign with the maximum salt (478 bytes for SHA-256, 446 for SHA-512 with RSA-4096),
//! which the `rsa` crate's fixed-salt verifier rejects (clients-and-crates.md §0.2).

use super::PssHash;

/// MGF1 (RFC 8017 §B.2.1) with `hash`, XORed into `out` (whose length is the mask length).
pub fn mgf1_xor(hash: PssHash, seed: &[u8], out: &mut [u8]) {
    let mut counter: u32 = 0;
    let mut offset = 0;
    while offset < out.len() {
        let block = hash.digest(&[seed, &counter.to_be_bytes()]);
        for (o, b) in out[offset..].iter_mut().zip(block.iter()) {
            *o ^= b;
        }
        offset += block.len();
        counter = counter.wrapping_add(1);
    }
}

/// Checks an encoded message `em` (the result of the RSA public operation, `ceil(em_bits/8)`
/// bytes) against `m_hash = Hash(M)`. Returns the salt length on success.
///
/// `em_bits` is the modulus size in bits minus one.
pub fn verify_any_salt(hash: PssHash, m_hash: &[u8], em: &[u8], em_bits: usize) -> Option<usize> {
    let h_len = hash.output_len();
    let em_len = em_bits.div_ceil(8);
    if m_hash.len() != h_len || em.len() != em_len || em_len < h_len + 2 {
        return None;
    }
    if em[em_len - 1] != 0xbc {
        return None;
    }
    let db_len = em_len - h_len - 1;
    let (masked_db, rest) = em.split_at(db_len);
    let h = &rest[..h_len];
    // The leftmost 8·emLen − emBits bits of the masked DB must be zero.
    let unused_bits = 8 * em_len - em_bits;
    let top_mask: u8 = if unused_bits == 0 {
        0xff
    } else {
        0xff >> unused_bits
    };
    if masked_db[0] & !top_mask != 0 {
        return None;
    }
    let mut db = masked_db.to_vec();
    mgf1_xor(hash, h, &mut db);
    db[0] &= top_mask;
    // DB = PS (zeros) ‖ 0x01 ‖ salt: the salt length is whatever follows the first 0x01.
    let sep = db.iter().position(|&b| b != 0)?;
    if db[sep] != 0x01 {
        return None;
    }
    let salt = &db[sep + 1..];
    let h2 = hash.digest(&[&[0u8; 8], m_hash, salt]);
    (h2 == h).then_some(salt.len())
}

/// EMSA-PSS encoding with a given salt (RFC 8017 §9.1.1). Used to sign through a raw RSA
/// private operation and to make test signatures with unusual salt lengths.
pub fn encode(hash: PssHash, m_hash: &[u8], salt: &[u8], em_bits: usize) -> Option<Vec<u8>> {
    let h_len = hash.output_len();
    let em_len = em_bits.div_ceil(8);
    if m_hash.len() != h_len || em_len < h_len + salt.len() + 2 {
        return None;
    }
    let h = hash.digest(&[&[0u8; 8], m_hash, salt]);
    let db_len = em_len - h_len - 1;
    let mut em = vec![0u8; em_len];
    em[db_len - salt.len() - 1] = 0x01;
    em[db_len - salt.len()..db_len].copy_from_slice(salt);
    mgf1_xor(hash, &h, &mut em[..db_len]);
    let unused_bits = 8 * em_len - em_bits;
    if unused_bits > 0 {
        em[0] &= 0xff >> unused_bits;
    }
    em[db_len..db_len + h_len].copy_from_slice(&h);
    em[em_len - 1] = 0xbc;
    Some(em)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_verify_recovers_every_salt_length() {
        let m_hash = PssHash::Sha512.digest(&[b"message"]);
        for salt_len in [0usize, 1, 32, 64, 200, 446] {
            let salt = vec![0x5a; salt_len];
            let em = encode(PssHash::Sha512, &m_hash, &salt, 4095).unwrap();
            assert_eq!(
                verify_any_salt(PssHash::Sha512, &m_hash, &em, 4095),
                Some(salt_len)
            );
        }
        // The maximum salt for RSA-4096/SHA-512 is 512 - 64 - 2 = 446.
        assert!(encode(PssHash::Sha512, &m_hash, &[0; 447], 4095).is_none());
    }

    #[test]
    fn tampering_fails() {
        let m_hash = PssHash::Sha256.digest(&[b"message"]);
        let em = encode(PssHash::Sha256, &m_hash, &[7; 32], 4095).unwrap();
        let other = PssHash::Sha256.digest(&[b"messagf"]);
        assert_eq!(verify_any_salt(PssHash::Sha256, &other, &em, 4095), None);
        for i in [0usize, 100, 479, 500, 511] {
            let mut bad = em.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                verify_any_salt(PssHash::Sha256, &m_hash, &bad, 4095),
                None,
                "{i}"
            );
        }
        assert_eq!(
            verify_any_salt(PssHash::Sha256, &m_hash, &em[1..], 4095),
            None
        );
    }
}
