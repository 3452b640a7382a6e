//! Feeds arbitrary bytes to a WebSocket listener's upgrade and framing path (the request head
//! check, tungstenite's handshake, our path/subprotocol/origin checks, then frames read as a
//! byte stream). It must never panic or hang. The check lives in `portico_transport::fuzzing`
//! so that `make test` replays the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_transport::fuzzing::check_ws_accept(data));
