//! Feeds arbitrary bytes to the LwM2M data layer. OMA TLV: the structure must re-encode (never longer) to the same structure, and typed items under the request path the first byte picks must re-encode to the same items.
//! The check itself lives in `portico_lwm2m::fuzzing` so that the test suite replays the seeds
//! with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_lwm2m::fuzzing::check_tlv(data));
