//! ANS-104 parsing and decoding never panic, and what parses re-serialises to an item that
//! parses to the same value.

#![no_main]

use ao_core::ans104::{self, DataItem};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let Ok(item) = DataItem::parse(&bytes) else {
        return;
    };
    let again = DataItem::parse(&Bytes::from(item.serialize())).expect("re-serialised item parses");
    assert_eq!(again, item);
    let _ = item.signature_data();
    let _ = item.unsigned_id();
    let _ = item.verify();
    if let Ok(msg) = ans104::from_item(&item) {
        // Whatever decodes must encode again (or fail with a typed error).
        let _ = ans104::to_item(&msg);
        let _ = ao_core::verify::verify_signatures(&msg);
    }
});
