//! Feeds arbitrary datagrams to a DTLS server association, before and after an in-memory PSK
//! handshake. Nothing may panic, everything the server sends must be whole DTLS records, and no
//! datagram made without the keys may close an established association. The check lives in
//! `portico_transport::fuzzing` so that the transport's tests replay the seeds with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_transport::fuzzing::check_dtls_records(data));
