//! Signing and verification speed: httpsig (RSA-4096 PSS-SHA512), ANS-104 (RSA-4096
//! PSS-SHA256) and secp256k1, with both RSA signing backends.
//!
//! HyperBEAM's own figures (spec §10.2): 51 httpsig commits/s, 890 verifies/s, 55 ANS-104
//! commits/s.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use ao_core::ans104::{self, DataItem};
use ao_core::crypto::PssHash;
use ao_core::crypto::eth;
use ao_core::wallet::SigningBackend;
use ao_core::{EthWallet, Message, Wallet, msg, signature, verify};
use criterion::{Criterion, criterion_group, criterion_main};

fn wallet() -> Wallet {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/wallets/key-1.json");
    Wallet::load(&path).expect("fixture wallet")
}

fn sample() -> Message {
    msg! {
        "action" => "Eval",
        "count" => 42i64,
        "data" => "return 1+1",
        "data-protocol" => "ao",
        "type" => "Message",
        "variant" => "ao.N.1",
    }
}

fn rsa(c: &mut Criterion) {
    let mut w = wallet();
    let base = vec![b'x'; 600];
    let mut g = c.benchmark_group("rsa4096");
    for backend in [SigningBackend::Ring, SigningBackend::RustCrypto] {
        w.set_backend(backend);
        g.bench_function(format!("pss_sha512_sign/{backend:?}"), |b| {
            b.iter(|| w.sign(PssHash::Sha512, black_box(&base)).unwrap())
        });
    }
    w.set_backend(SigningBackend::Ring);
    let sig = w.sign(PssHash::Sha512, &base).unwrap();
    let key = w.public_key().clone();
    let n = key.modulus().clone();
    g.bench_function("key_from_modulus", |b| {
        b.iter(|| ao_core::crypto::rsa::RsaPublicKey::from_modulus(black_box(&n)).unwrap())
    });
    g.bench_function("pss_sha512_verify_any_salt", |b| {
        b.iter(|| {
            key.verify_pss(PssHash::Sha512, black_box(&base), &sig)
                .unwrap()
        })
    });
    g.finish();
}

fn httpsig(c: &mut Criterion) {
    let mut w = wallet();
    let m = sample();
    let mut g = c.benchmark_group("httpsig");
    for backend in [SigningBackend::Ring, SigningBackend::RustCrypto] {
        w.set_backend(backend);
        g.bench_function(format!("commit/{backend:?}"), |b| {
            b.iter(|| signature::commit(black_box(&m), &w).unwrap())
        });
    }
    let signed = signature::commit(&m, &w).unwrap();
    g.bench_function("verify", |b| {
        b.iter(|| verify::verify_signatures(black_box(&signed)).unwrap())
    });
    let http = ao_core::codec::to_http(&signed).unwrap();
    let line = signature::RequestLine::default();
    g.bench_function("verify_received", |b| {
        b.iter(|| signature::verify_received(black_box(&http), &line).unwrap())
    });
    g.finish();
}

fn ans104_bench(c: &mut Criterion) {
    let mut w = wallet();
    let m = sample();
    let mut g = c.benchmark_group("ans104");
    for backend in [SigningBackend::Ring, SigningBackend::RustCrypto] {
        w.set_backend(backend);
        g.bench_function(format!("commit/{backend:?}"), |b| {
            b.iter(|| ans104::commit(black_box(&m), &w).unwrap())
        });
    }
    let signed = ans104::commit(&m, &w).unwrap();
    let bytes = bytes::Bytes::from(ans104::encode(&signed).unwrap());
    g.bench_function("verify_message", |b| {
        b.iter(|| verify::verify_signatures(black_box(&signed)).unwrap())
    });
    g.bench_function("parse_and_verify_item", |b| {
        b.iter(|| {
            DataItem::parse(black_box(&bytes))
                .unwrap()
                .verify()
                .unwrap()
        })
    });
    g.bench_function("decode_message", |b| {
        b.iter(|| ans104::decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn ecdsa(c: &mut Criterion) {
    let w = EthWallet::from_secret(&[0x42; 32]).unwrap();
    let msg = [7u8; 48];
    let owner = w.public_key();
    let sig = w.sign(&msg).unwrap();
    let mut g = c.benchmark_group("secp256k1");
    g.bench_function("sign", |b| b.iter(|| w.sign(black_box(&msg)).unwrap()));
    g.bench_function("verify", |b| {
        b.iter(|| eth::verify_personal(&owner, black_box(&msg), &sig).unwrap())
    });
    let item = ans104::to_item(&ans104::commit_eth(&sample(), &w).unwrap()).unwrap();
    g.bench_function("ans104_verify", |b| {
        b.iter(|| black_box(&item).verify().unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = rsa, httpsig, ans104_bench, ecdsa
}
criterion_main!(benches);
