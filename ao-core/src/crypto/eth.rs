//! Ethereum keys: Keccak-256, EIP-55 addresses and EIP-191 `personal_sign` signatures over
//! secp256k1 (ANS-104 signature type 3, spec §6).

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest as _, Keccak256};

/// Length of an uncompressed SEC1 public key (`04 ‖ x ‖ y`): the ANS-104 `owner` of type 3.
pub const PUBLIC_KEY_LEN: usize = 65;

/// Length of a recoverable signature `r ‖ s ‖ v` (`v` = 27 or 28).
pub const SIGNATURE_LEN: usize = 65;

/// Why an Ethereum key or signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// Not a valid uncompressed secp256k1 point.
    #[error("not an uncompressed secp256k1 public key")]
    BadPublicKey,
    /// Malformed signature bytes or recovery id.
    #[error("malformed secp256k1 signature")]
    MalformedSignature,
    /// The signature recovers another key.
    #[error("secp256k1 signature does not verify")]
    BadSignature,
}

/// Keccak-256 (the pre-standard SHA-3 padding Ethereum uses).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The 20-byte address of an uncompressed public key: the last 20 bytes of
/// `keccak256(x ‖ y)`.
pub fn address_bytes(uncompressed: &[u8]) -> Result<[u8; 20], EthError> {
    if uncompressed.len() != PUBLIC_KEY_LEN || uncompressed[0] != 0x04 {
        return Err(EthError::BadPublicKey);
    }
    let hash = keccak256(&uncompressed[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    Ok(out)
}

/// `0x` + the EIP-55 mixed-case checksum hex of a 20-byte address (42 characters).
pub fn eip55(address: &[u8; 20]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let lower: Vec<u8> = address
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
        .collect();
    let hash = keccak256(&lower);
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, &c) in lower.iter().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 15;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
            c.to_ascii_uppercase() as char
        } else {
            c as char
        });
    }
    out
}

/// The EIP-55 address of an uncompressed public key.
pub fn address(uncompressed: &[u8]) -> Result<String, EthError> {
    Ok(eip55(&address_bytes(uncompressed)?))
}

/// The EIP-191 hash `keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message)`.
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

/// Signs `message` EIP-191 style: 65 bytes `r ‖ s ‖ (27 + recovery id)`.
pub fn sign_personal(key: &SigningKey, message: &[u8]) -> Result<[u8; 65], EthError> {
    let (sig, recid) = key
        .sign_prehash_recoverable(&personal_message_hash(message))
        .map_err(|_| EthError::MalformedSignature)?;
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recid.to_byte();
    Ok(out)
}

/// Verifies an EIP-191 signature against an uncompressed public key by recovering the signer.
pub fn verify_personal(owner: &[u8], message: &[u8], sig: &[u8]) -> Result<(), EthError> {
    if owner.len() != PUBLIC_KEY_LEN {
        return Err(EthError::BadPublicKey);
    }
    let expected = VerifyingKey::from_sec1_bytes(owner).map_err(|_| EthError::BadPublicKey)?;
    if sig.len() != SIGNATURE_LEN {
        return Err(EthError::MalformedSignature);
    }
    let v = match sig[64] {
        v @ 27..=28 => v - 27,
        v @ 0..=1 => v,
        _ => return Err(EthError::MalformedSignature),
    };
    let recid = RecoveryId::from_byte(v).ok_or(EthError::MalformedSignature)?;
    let signature = Signature::from_slice(&sig[..64]).map_err(|_| EthError::MalformedSignature)?;
    let recovered =
        VerifyingKey::recover_from_prehash(&personal_message_hash(message), &signature, recid)
            .map_err(|_| EthError::BadSignature)?;
    if recovered == expected {
        Ok(())
    } else {
        Err(EthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_address() {
        // Private key 1 → the generator point → 0x7E5F…5BdF.
        let key = SigningKey::from_slice(&[[0u8; 31].as_slice(), &[1]].concat()).unwrap();
        let pk = key.verifying_key().to_encoded_point(false);
        assert_eq!(
            address(pk.as_bytes()).unwrap(),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        );
    }

    #[test]
    fn sign_verify() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = key.verifying_key().to_encoded_point(false);
        let sig = sign_personal(&key, b"hello").unwrap();
        verify_personal(pk.as_bytes(), b"hello", &sig).unwrap();
        assert_eq!(
            verify_personal(pk.as_bytes(), b"hellp", &sig),
            Err(EthError::BadSignature)
        );
    }
}
