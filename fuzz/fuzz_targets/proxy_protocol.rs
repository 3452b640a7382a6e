//! Feeds arbitrary bytes to the PROXY protocol parser (v1 and v2). It must never panic; a
//! complete header must consume at most the input, parse the same from exactly its own bytes,
//! and be `Incomplete` at every shorter prefix. The check lives in
//! `portico_transport::fuzzing` so that `make test` replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_transport::fuzzing::check_proxy_header(data));
