//! Feeds arbitrary bytes to every record decoder of the durable store (message, session record,
//! subscription options, session entry, delayed message). No decoder may panic; whatever
//! decodes must encode to bytes that decode to the same record, and (but for an origin protocol
//! this build does not know) to exactly the input. The check lives in
//! `portico_store::fuzzing` so that the ordinary test run replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_store::fuzzing::check_record(data));
