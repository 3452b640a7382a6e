//! Checks shared by the fuzz targets (`fuzz/fuzz_targets/proxy_protocol.rs`,
//! `fuzz/fuzz_targets/ws_accept.rs`), the proptests and the seed-corpus replay tests, so that an
//! input that once broke a parser is replayed by the ordinary test run.

use crate::proxy_protocol::{Parsed, V1_MAX_LEN, V2_MAX_LEN, parse};

/// Prefix lengths checked exhaustively; longer headers are sampled at both ends.
const EXHAUSTIVE: usize = 256;

/// Parses `data` as the start of a connection and panics on any broken invariant:
/// - the parser never panics, and an error formats;
/// - `Complete` consumes at most the input and at most the spec's maximum; parsing exactly the
///   consumed bytes gives the same header, and every shorter prefix is `Incomplete` (the
///   parser neither refuses nor accepts a header before it has all of it);
/// - `Incomplete` is only returned below the spec's maximum length.
pub fn check_proxy_header(data: &[u8]) {
    match parse(data) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(Parsed::Incomplete) => {
            let max = if data.first() == Some(&b'P') {
                V1_MAX_LEN
            } else {
                V2_MAX_LEN
            };
            assert!(data.len() < max, "Incomplete after {} bytes (max {max})", data.len());
        }
        Ok(Parsed::Complete { header, consumed }) => {
            assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
            assert!(consumed <= V2_MAX_LEN, "consumed {consumed} bytes");
            match parse(&data[..consumed]) {
                Ok(Parsed::Complete {
                    header: again,
                    consumed: n,
                }) => {
                    assert_eq!(n, consumed, "re-parse consumed a different length");
                    assert_eq!(again, header, "re-parse gave a different header");
                }
                other => panic!("the consumed prefix does not parse alone: {other:?}"),
            }
            let prefixes =
                (0..consumed.min(EXHAUSTIVE)).chain(consumed.saturating_sub(EXHAUSTIVE).max(EXHAUSTIVE)..consumed);
            for k in prefixes {
                match parse(&data[..k]) {
                    Ok(Parsed::Incomplete) => {}
                    other => panic!("a {k}-byte prefix of a {consumed}-byte header gave {other:?}"),
                }
            }
        }
    }
}

/// Feeds `data` as everything a client sends to a WebSocket listener (upgrade request, then
/// frames) and reads the resulting byte stream to its end. Whatever the bytes, the upgrade
/// either fails with an error that formats or yields a stream whose reads end; nothing panics
/// and nothing hangs (the client side closes after `data`).
pub fn check_ws_accept(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::ws::{WsSettings, accept};

    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
        return;
    };
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(16 * 1024);
        let settings = WsSettings {
            path: "/mqtt".to_owned(),
            subprotocols: vec!["mqtt".to_owned()],
            fail_if_no_subprotocol: true,
            check_origin: false,
            allow_origin_absence: true,
            origins: Vec::new(),
            proxy_address_header: Some("x-forwarded-for".to_owned()),
            proxy_port_header: Some("x-forwarded-port".to_owned()),
            max_frame_size: Some(64 * 1024),
        };
        let client_side = async {
            // The server may answer at any point; drain its bytes while sending ours.
            let (mut read, mut write) = tokio::io::split(&mut client);
            let send = async {
                let _ = write.write_all(data).await;
                let _ = write.shutdown().await;
            };
            let drain = async {
                let mut sink = [0u8; 4096];
                while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            tokio::join!(send, drain);
        };
        let server_side = async {
            match accept(server, &settings).await {
                Ok((mut stream, upgrade)) => {
                    let _ = upgrade.peer("127.0.0.1:1".parse().expect("a socket address"));
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                }
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        };
        tokio::join!(client_side, server_side);
    });
}
