//! Wallets and addresses (spec §6): the fixture wallets, keccak and EIP-55 vectors, saving and
//! generating keys.

use ao_core::crypto::PssHash;
use ao_core::crypto::eth;
use ao_core::util::b64u_decode;
use ao_core::wallet::{SigningBackend, Wallet, signature_name};

use crate::fixtures::{self, vectors};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn fixture_wallet_addresses() {
    let misc = vectors("misc.json");
    for v in misc["addresses"]["vectors"].as_array().unwrap() {
        let file = v["wallet"].as_str().unwrap().trim_start_matches("wallets/");
        let w = fixtures::wallet(file);
        assert_eq!(w.address_string(), v["address"].as_str().unwrap(), "{file}");
        assert_eq!(
            w.public_key().modulus().len() as u64,
            v["n_bytes"].as_u64().unwrap()
        );
        assert_eq!(
            signature_name(&w.address()),
            v["httpsig_signature_name"].as_str().unwrap()
        );
    }
}

#[test]
fn keccak_and_eip55() {
    let k = &vectors("misc.json")["keccak"];
    assert_eq!(
        hex(&eth::keccak256(b"testing")),
        k["keccak256_testing_hex"].as_str().unwrap().to_lowercase()
    );
    use sha3::Digest as _;
    assert_eq!(
        hex(&sha3::Sha3_256::digest(b"testing")),
        k["sha3_256_testing_hex"].as_str().unwrap().to_lowercase()
    );
    let point = b64u_decode(
        k["secp256k1_uncompressed_pubkey_b64u"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        hex(&eth::keccak256(&point[1..])),
        k["keccak256_of_point_bytes_1_to_64_hex"].as_str().unwrap()
    );
    assert_eq!(
        eth::address(&point).unwrap(),
        k["eth_address_eip55"].as_str().unwrap()
    );
}

#[test]
fn backends_sign_compatible_signatures() {
    let w = fixtures::wallet("key-1.json");
    assert_eq!(
        w.backend(),
        SigningBackend::Ring,
        "ring accepts the fixture key"
    );
    let msg = b"signature base";
    for hash in [PssHash::Sha256, PssHash::Sha512] {
        let sig = w.sign(hash, msg).unwrap();
        assert_eq!(
            w.public_key().verify_pss(hash, msg, &sig),
            Ok(hash.output_len())
        );
        // Node clients' maximum salt: 512 - digest - 2.
        let max = 512 - hash.output_len() - 2;
        let sig = w.sign_with_salt(hash, msg, max).unwrap();
        assert_eq!(w.public_key().verify_pss(hash, msg, &sig), Ok(max));
        assert!(w.public_key().verify_pss(hash, b"other", &sig).is_err());
    }
}

#[test]
fn save_load_and_generate() {
    let dir = std::env::temp_dir().join(format!("ao-core-wallet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.json");
    let w = fixtures::wallet("test-wallet.json");
    w.save(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let back = Wallet::load(&path).unwrap();
    assert_eq!(back.address(), w.address());
    // A JWK with only n and d (HyperBEAM reads no more) still loads.
    let jwk: serde_json::Value = serde_json::from_slice(&w.to_jwk()).unwrap();
    let minimal = serde_json::json!({"kty": "RSA", "n": jwk["n"], "e": jwk["e"], "d": jwk["d"]});
    let m = Wallet::from_jwk(minimal.to_string().as_bytes()).unwrap();
    assert_eq!(m.address(), w.address());
    let sig = m.sign(PssHash::Sha512, b"x").unwrap();
    assert!(
        w.public_key()
            .verify_pss(PssHash::Sha512, b"x", &sig)
            .is_ok()
    );
    // Garbage is a typed error.
    assert!(matches!(
        Wallet::from_jwk(b"{\"kty\":\"RSA\",\"n\":\"AQAB\"}"),
        Err(ao_core::Error::Wallet(_))
    ));
    assert!(matches!(
        Wallet::from_jwk(b"not json"),
        Err(ao_core::Error::Wallet(_))
    ));
    // load_or_generate makes a new 4096-bit wallet once, then loads it.
    let gen_path = dir.join("generated.json");
    let g = Wallet::load_or_generate(&gen_path).unwrap();
    assert_eq!(g.public_key().bits(), 4096);
    assert_eq!(
        Wallet::load_or_generate(&gen_path).unwrap().address(),
        g.address()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
