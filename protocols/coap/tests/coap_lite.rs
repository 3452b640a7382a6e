//! Differential test against a foreign implementation (coap-lite 0.13): every message we encode
//! must be read the same by coap-lite, and coap-lite must write the same bytes for it. Round
//! trips through our own codec alone cannot catch a misreading shared by encoder and decoder.

use coap_lite::Packet;
use portico_coap::*;
use proptest::prelude::*;

mod common;
use common::arb_message;

/// The options as (number, values in order) groups, coap-lite's shape.
fn grouped(message: &Message) -> Vec<(u16, Vec<Vec<u8>>)> {
    let mut groups: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
    for (number, value) in message.options.iter() {
        match groups.last_mut() {
            Some((last, values)) if *last == number => values.push(value.to_vec()),
            _ => groups.push((number, vec![value.to_vec()])),
        }
    }
    groups
}

fn mtype(t: coap_lite::MessageType) -> Type {
    match t {
        coap_lite::MessageType::Confirmable => Type::Con,
        coap_lite::MessageType::NonConfirmable => Type::Non,
        coap_lite::MessageType::Acknowledgement => Type::Ack,
        coap_lite::MessageType::Reset => Type::Rst,
    }
}

proptest! {
    #[test]
    fn coap_lite_reads_and_writes_our_messages_alike(message in arb_message()) {
        let ours = encode_to_bytes(&message).expect("encodes");
        let theirs = Packet::from_bytes(&ours).expect("coap-lite decodes what we encode");
        prop_assert_eq!(theirs.header.get_version(), 1);
        prop_assert_eq!(mtype(theirs.header.get_type()), message.mtype);
        prop_assert_eq!(u8::from(theirs.header.code), message.code.0);
        prop_assert_eq!(theirs.header.message_id, message.message_id);
        prop_assert_eq!(theirs.get_token(), message.token.as_bytes());
        let their_options: Vec<(u16, Vec<Vec<u8>>)> =
            theirs.options().map(|(n, values)| (*n, values.iter().cloned().collect())).collect();
        prop_assert_eq!(their_options, grouped(&message));
        prop_assert_eq!(&theirs.payload[..], &message.payload[..]);
        prop_assert_eq!(theirs.to_bytes_unlimited().expect("coap-lite encodes"), ours.to_vec());
    }
}

#[test]
fn coap_lite_agrees_on_the_rfc_examples() {
    let mut request = Message::new(Type::Con, Code::GET, 0x7d35);
    request.token = Token::new(&[0x20]).expect("short");
    request.options.push_uri_path("temperature");
    let bytes = encode_to_bytes(&request).expect("encodes");
    let theirs = Packet::from_bytes(&bytes).expect("decodes");
    assert_eq!(
        theirs.get_first_option(coap_lite::CoapOption::UriPath),
        Some(&b"temperature".to_vec())
    );
    assert_eq!(theirs.to_bytes_unlimited().expect("encodes"), bytes.to_vec());
}
