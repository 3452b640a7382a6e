//! Checks shared by the fuzz target (`fuzz/fuzz_targets/store_records.rs`) and the seed-corpus
//! replay test (`tests/fuzz_seeds.rs`), so that an input that once broke a decoder is replayed by
//! the ordinary test run.

use std::fmt::Debug;

use portico_core::message::Message;

use crate::codec::{self, DecodeError};

/// Feeds `data` to every record decoder and panics on any broken invariant:
/// - no decoder panics, and an error formats and points inside the input;
/// - a record that decodes encodes to bytes that decode to the same record, and encoding that
///   again gives the same bytes;
/// - the encoding is canonical: a decoded record encodes back to exactly `data`, unless an
///   origin protocol this build does not know was read as `"unknown"`.
pub fn check_record(data: &[u8]) {
    check(data, codec::decode_message, codec::encode_message, |m| {
        unknown_protocol(m)
    });
    check(data, codec::decode_session_record, codec::encode_session_record, |r| {
        r.will.as_ref().is_some_and(|will| unknown_protocol(&will.message))
    });
    check(data, codec::decode_sub_options, codec::encode_sub_options, |_| false);
    check(data, codec::decode_entry, codec::encode_entry, |_| false);
    check(
        data,
        codec::decode_delayed,
        |(due_ms, message)| codec::encode_delayed(*due_ms, message),
        |(_, m)| unknown_protocol(m),
    );
}

fn unknown_protocol(message: &Message) -> bool {
    message.from.protocol == "unknown"
}

fn check<T: PartialEq + Debug>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
    encode: impl Fn(&T) -> Vec<u8>,
    renamed: impl Fn(&T) -> bool,
) {
    match decode(data) {
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert!(error.at <= data.len(), "error at {} of {} bytes", error.at, data.len());
        }
        Ok(record) => {
            let bytes = encode(&record);
            let again = decode(&bytes).unwrap_or_else(|e| panic!("{record:?} re-encoded does not decode: {e}"));
            assert_eq!(again, record, "re-encoding changed the record");
            assert_eq!(encode(&again), bytes, "encoding is not stable");
            assert!(
                bytes == data || renamed(&record),
                "{record:?} decoded from bytes it does not encode to"
            );
        }
    }
}
