//! Feeds arbitrary bytes to the MQTT decoder: the server codec (CONNECT first) and the
//! explicit-version decoder for 3.1, 3.1.1 and 5.0. Every packet that decodes must encode in the
//! same version to exactly `encoded_len` bytes and decode back to an equal packet. The check
//! itself lives in `portico_mqtt::fuzzing` so that `make test` replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_mqtt::fuzzing::check_decode(data));
