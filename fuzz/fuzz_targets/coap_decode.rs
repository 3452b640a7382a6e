//! Feeds arbitrary datagrams to the CoAP decoder: every message that decodes must encode to
//! exactly `encoded_len` bytes and decode back to an equal message, and request validation and
//! the option accessors must not panic on it. The check itself lives in
//! `portico_coap::fuzzing` so that the test suite replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_coap::fuzzing::check_decode(data));
