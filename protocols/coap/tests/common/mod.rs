//! Generators shared by the property tests.

use bytes::Bytes;
use portico_coap::*;
use proptest::prelude::*;

/// Any message the codec can encode: a code of class 0, 2, 4 or 5 (an Empty one with nothing
/// after its message id), a token of 0..=8 bytes, options with small and large numbers and
/// values of every length form, and a payload.
pub(crate) fn arb_message() -> impl Strategy<Value = Message> {
    let mtype = prop_oneof![Just(Type::Con), Just(Type::Non), Just(Type::Ack), Just(Type::Rst)];
    let value = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..20),
        1 => proptest::collection::vec(any::<u8>(), 0..600),
    ];
    let number = prop_oneof![4 => 0u16..64, 1 => any::<u16>()];
    let options = proptest::collection::vec((number, value), 0..12);
    let code = (prop_oneof![Just(0u8), Just(2), Just(4), Just(5)], 0u8..32);
    (
        mtype,
        code,
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..=8),
        options,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(mtype, (class, detail), mid, tok, options, payload)| {
            let code = Code::new(class, detail);
            let mut m = Message::new(mtype, code, mid);
            if !code.is_empty() {
                m.token = Token::new(&tok).expect("at most 8");
                m.options = Options::from_pairs(options.into_iter().map(|(n, v)| (n, Bytes::from(v))));
                m.payload = Bytes::from(payload);
            }
            m
        })
}
