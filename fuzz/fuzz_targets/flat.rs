//! The flat codec: arbitrary text deserialises or fails with a typed error; what deserialises
//! serialises back to text that deserialises to the same message.
#![no_main]

use ao_core::codec::flat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tabm) = flat::deserialize(data)
        && let Ok(text) = flat::serialize(&tabm)
    {
        let again = flat::deserialize(&text).expect("serialised flat text parses");
        assert_eq!(again, tabm);
        let _ = ao_core::codec::structured::from_tabm(&tabm);
    }
});
