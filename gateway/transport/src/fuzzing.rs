//! Checks shared by the fuzz target (`fuzz/fuzz_targets/proxy_protocol.rs`), the proptests and
//! the seed-corpus replay test, so that an input that once broke the parser is replayed by the
//! ordinary test run.

use crate::proxy_protocol::{Parsed, V1_MAX_LEN, V2_MAX_LEN, parse};

/// Prefix lengths checked exhaustively; longer headers are sampled at both ends.
const EXHAUSTIVE: usize = 256;

/// Parses `data` as the start of a connection and panics on any broken invariant:
/// - the parser never panics, and an error formats;
/// - `Complete` consumes at most the input and at most the spec's maximum; parsing exactly the
///   consumed bytes gives the same header, and every shorter prefix is `Incomplete` (the
///   parser neither refuses nor accepts a header before it has all of it);
/// - `Incomplete` is only returned below the spec's maximum length.
pub fn check_proxy_header(data: &[u8]) {
    match parse(data) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(Parsed::Incomplete) => {
            let max = if data.first() == Some(&b'P') {
                V1_MAX_LEN
            } else {
                V2_MAX_LEN
            };
            assert!(data.len() < max, "Incomplete after {} bytes (max {max})", data.len());
        }
        Ok(Parsed::Complete { header, consumed }) => {
            assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
            assert!(consumed <= V2_MAX_LEN, "consumed {consumed} bytes");
            match parse(&data[..consumed]) {
                Ok(Parsed::Complete {
                    header: again,
                    consumed: n,
                }) => {
                    assert_eq!(n, consumed, "re-parse consumed a different length");
                    assert_eq!(again, header, "re-parse gave a different header");
                }
                other => panic!("the consumed prefix does not parse alone: {other:?}"),
            }
            let prefixes =
                (0..consumed.min(EXHAUSTIVE)).chain(consumed.saturating_sub(EXHAUSTIVE).max(EXHAUSTIVE)..consumed);
            for k in prefixes {
                match parse(&data[..k]) {
                    Ok(Parsed::Incomplete) => {}
                    other => panic!("a {k}-byte prefix of a {consumed}-byte header gave {other:?}"),
                }
            }
        }
    }
}
