//! The cache layout keeps every stored signature: messages whose commitments differ only in
//! their signatures (one signer, the same keys) are stored and read back intact.

use ao_core::{MemoryStore, Message, ans104, cache, signature, verify};

use crate::fixtures;

#[test]
fn messages_signed_alike_keep_their_own_signatures_in_the_store() {
    let wallet = fixtures::wallet("test-wallet.json");
    let store = MemoryStore::new();
    for sign in [
        |m: &Message, w: &ao_core::wallet::Wallet| signature::commit(m, w).unwrap(),
        |m: &Message, w: &ao_core::wallet::Wallet| ans104::commit(m, w).unwrap(),
    ] {
        let signed: Vec<Message> = (0..3)
            .map(|i| sign(&Message::new().with("n", i.to_string()), &wallet))
            .collect();
        let ids: Vec<String> = signed
            .iter()
            .map(|m| cache::write_message(&store, m).unwrap())
            .collect();
        for (m, id) in signed.iter().zip(&ids) {
            let back = cache::read_message(&store, id).unwrap().unwrap();
            assert_eq!(&back, m);
            assert_eq!(verify::verify_signatures(&back).unwrap(), 1);
        }
    }
}

/// The same holds for such messages nested in others (an assignment's `body`), written in any
/// order, and for the outer messages signed alike too.
#[test]
fn nested_messages_signed_alike_keep_their_own_signatures_in_the_store() {
    let wallet = fixtures::wallet("test-wallet.json");
    let store = MemoryStore::new();
    let bodies: Vec<Message> = (0..8)
        .map(|_| ans104::commit(&Message::new().with("data", "same"), &wallet).unwrap())
        .collect();
    let outers: Vec<Message> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let m = Message::new()
                .with("slot", i.to_string())
                .with("body", b.clone());
            signature::commit(&m, &wallet).unwrap()
        })
        .collect();
    let ids: Vec<String> = outers
        .iter()
        .map(|m| cache::write_message(&store, m).unwrap())
        .collect();
    for (m, id) in outers.iter().zip(&ids) {
        let back = cache::read_message(&store, id).unwrap().unwrap();
        let body = back.get_message("body").unwrap();
        assert_eq!(verify::verify_signatures(body).unwrap(), 1);
        assert_eq!(&back, m);
        assert_eq!(verify::verify_signatures(&back).unwrap(), 1);
    }
}

/// Writing keeps only the committed keys of a signed message (spec §8.3 step 1): a key added
/// after an HTTP signature is not stored, and the message reads back as it was signed, under
/// the same ID. (An ANS-104 commitment names no keys: its item is rebuilt from the message, so,
/// as in HyperBEAM, every key that fits the item counts as committed until the signature is
/// checked.) An unsigned message keeps every key.
#[test]
fn only_committed_keys_of_a_signed_message_are_stored() {
    let wallet = fixtures::wallet("test-wallet.json");
    let store = MemoryStore::new();
    let signed = signature::commit(&Message::new().with("a", "signed"), &wallet).unwrap();
    let extended = signed.clone().with("added", "after signing");
    let id = cache::write_message(&store, &extended).unwrap();
    assert_eq!(id, cache::write_message(&store, &signed).unwrap());
    let back = cache::read_message(&store, &id).unwrap().unwrap();
    assert_eq!(back, signed);
    assert!(back.get("added").is_none());
    assert_eq!(verify::verify_signatures(&back).unwrap(), 1);

    let unsigned = Message::new().with("a", "1").with("b", "2");
    let id = cache::write_message(&store, &unsigned).unwrap();
    assert_eq!(cache::read_message(&store, &id).unwrap(), Some(unsigned));
}
