//! Feeds arbitrary bytes (as lossy UTF-8) to the acl.conf parser. It must never panic; an error
//! must name a line inside the text; a file that parses must answer checks for a few clients,
//! actions and topics, and appending `{deny, all}.` must turn exactly its `Ignore` verdicts into
//! `Deny`. The check lives in `portico_auth::acl::fuzzing` so that the ordinary test run
//! replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_auth::acl::fuzzing::check(data));
