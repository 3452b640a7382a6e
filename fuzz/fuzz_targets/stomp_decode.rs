//! Feeds arbitrary bytes to the STOMP decoder as a stream, under each version: every frame that
//! decodes must respect the limits, re-encode and decode back to itself. The check itself lives
//! in `portico_stomp::fuzzing` so that the test suite replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_stomp::fuzzing::check_decode(data));
