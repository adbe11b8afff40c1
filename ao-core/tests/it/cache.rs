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
