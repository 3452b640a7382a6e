//! Feeds arbitrary bytes to the LwM2M data layer. CoRE link format: parsed links must print to text that parses to the same links, and a registration reading must not panic.
//! The check itself lives in `portico_lwm2m::fuzzing` so that the test suite replays the seeds
//! with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_lwm2m::fuzzing::check_link(data));
