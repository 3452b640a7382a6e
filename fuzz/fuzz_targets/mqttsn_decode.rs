//! Feeds arbitrary datagrams to the MQTT-SN decoder: every message that decodes must encode to
//! exactly `encoded_len` bytes and decode back to an equal message. The check itself lives in
//! `portico_mqttsn::fuzzing` so that `make test` replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_mqttsn::fuzzing::check_decode(data));
