//! Feeds arbitrary bytes to the SCRAM-SHA-256 server exchange as client messages (split at the
//! first newline into client-first and client-final, and whole as a client-final). It must
//! never panic, never accept a forged proof, and fail every step after the end. The check
//! lives in `portico_auth::scram::fuzzing` so that the ordinary test run replays the seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_auth::scram::fuzzing::check(data));
