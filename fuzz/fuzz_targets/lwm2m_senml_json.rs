//! Feeds arbitrary bytes to the LwM2M data layer. SenML JSON and OMA LwM2M JSON: decoded records, untyped and typed, must re-encode to records that decode the same.
//! The check itself lives in `portico_lwm2m::fuzzing` so that the test suite replays the seeds
//! with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_lwm2m::fuzzing::check_senml_json(data));
