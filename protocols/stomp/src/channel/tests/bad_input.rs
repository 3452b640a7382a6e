//! Bad input: every limit, missing required headers, unknown commands, frames out of order.

use super::*;

#[test]
fn frames_before_connect_are_refused() {
    let h = Harness::new();
    for frame in [
        "SEND\ndestination:a\n\nx\0",
        "SUBSCRIBE\nid:1\ndestination:a\n\n\0",
        "BEGIN\ntransaction:t\n\n\0",
    ] {
        let mut c = h.client();
        let got = c.input(frame, 0);
        assert_error(&got, "Not connected");
    }
}

#[test]
fn limits_end_the_connection_with_an_error_naming_the_key() {
    let h = Harness::with(StompSettings {
        limits: Limits {
            max_headers: 3,
            max_header_length: 32,
            max_body_length: 16,
        },
        ..StompSettings::default()
    });
    for (wire, key) in [
        ("SEND\na:1\nb:2\nc:3\nd:4\n\n\0", "max_headers"),
        (
            "SEND\ndestination:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n\0",
            "max_headers_length",
        ),
        ("SEND\ndestination:a\n\n01234567890123456789\0", "max_body_length"),
        ("SEND\ndestination:a\ncontent-length:17\n\n", "max_body_length"),
    ] {
        let mut c = h.connected("1.2");
        let got = c.input(wire, 1);
        let error = assert_error(&got, "Frame error");
        let body = String::from_utf8_lossy(&error.body).into_owned();
        assert!(body.contains(key), "{body}");
    }
    let malformed = h
        .broker
        .metrics()
        .packets_malformed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(malformed, 4);
}

#[test]
fn unknown_commands_and_bad_escapes_are_frame_errors() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    let got = c.input("PUBLISH\n\n\0", 1);
    let error = assert_error(&got, "Frame error");
    assert!(String::from_utf8_lossy(&error.body).contains("unknown command"));
    let mut c = h.connected("1.2");
    let got = c.input("SEND\ndestination:a\\tb\n\n\0", 1);
    assert_error(&got, "Frame error");
    // A server frame from a client is not a decode error but still refused.
    let mut c = h.connected("1.2");
    let got = c.input("MESSAGE\ndestination:a\n\n\0", 1);
    assert_error(&got, "Unexpected frame");
    // NACK does not exist in 1.0.
    let mut c = h.connected("1.0");
    let got = c.input("NACK\nmessage-id:1\n\n\0", 1);
    assert_error(&got, "Unexpected frame");
}

#[test]
fn missing_required_headers() {
    let h = Harness::new();
    for (wire, message) in [
        ("SEND\n\nx\0", "Missing destination"),
        ("SUBSCRIBE\nid:1\n\n\0", "Missing destination"),
        ("SUBSCRIBE\ndestination:a\n\n\0", "Missing id"),
        ("UNSUBSCRIBE\n\n\0", "Missing id"),
        ("ACK\n\n\0", "Missing id"),
        ("BEGIN\n\n\0", "Missing transaction"),
        ("COMMIT\n\n\0", "Missing transaction"),
        ("ABORT\nreceipt:9\n\n\0", "Missing transaction"),
    ] {
        let mut c = h.connected("1.2");
        let got = c.input(wire, 1);
        let error = assert_error(&got, message);
        if wire.contains("receipt:9") {
            assert_eq!(error.header("receipt-id"), Some("9"));
        }
    }
    // 1.0 subscriptions need no id.
    let mut c = h.connected("1.0");
    assert!(c.input("SUBSCRIBE\ndestination:a\n\n\0", 1).is_empty());
}

#[test]
fn a_second_connect_is_refused() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    let got = c.input("CONNECT\naccept-version:1.2\n\n\0", 1);
    assert_error(&got, "Already connected");
}

#[test]
fn invalid_destinations_and_ack_modes() {
    let h = Harness::new();
    for (wire, message) in [
        ("SEND\ndestination:a/+\n\nx\0", "Invalid destination"),
        ("SEND\ndestination:\n\nx\0", "Invalid destination"),
        ("SUBSCRIBE\nid:1\ndestination:a/#/b\n\n\0", "Invalid destination"),
        (
            "SUBSCRIBE\nid:1\ndestination:a\nack:sometimes\n\n\0",
            "Invalid ack mode",
        ),
    ] {
        let mut c = h.connected("1.2");
        assert_error(&c.input(wire, 1), message);
    }
}

#[test]
fn duplicate_subscription_ids_and_destinations() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    assert!(c.input("SUBSCRIBE\nid:1\ndestination:a\n\n\0", 1).is_empty());
    let got = c.input("SUBSCRIBE\nid:1\ndestination:b\n\n\0", 2);
    assert_error(&got, "Duplicate subscription id");
    let mut c = h.connected("1.2");
    assert!(c.input("SUBSCRIBE\nid:1\ndestination:a\n\n\0", 1).is_empty());
    let got = c.input("SUBSCRIBE\nid:2\ndestination:a\n\n\0", 2);
    assert_error(&got, "Duplicate subscription");
}

#[test]
fn subscription_and_transaction_limits() {
    let h = Harness::with(StompSettings {
        max_subscriptions: 2,
        max_transactions: 1,
        max_transaction_frames: 2,
        max_transaction_bytes: 10,
        ..StompSettings::default()
    });
    let mut c = h.connected("1.2");
    c.input(
        "SUBSCRIBE\nid:1\ndestination:a\n\n\0SUBSCRIBE\nid:2\ndestination:b\n\n\0",
        1,
    );
    assert_error(
        &c.input("SUBSCRIBE\nid:3\ndestination:c\n\n\0", 2),
        "Too many subscriptions",
    );

    let mut c = h.connected("1.2");
    c.input("BEGIN\ntransaction:t\n\n\0", 1);
    assert_error(&c.input("BEGIN\ntransaction:u\n\n\0", 2), "Too many transactions");

    let mut c = h.connected("1.2");
    c.input("BEGIN\ntransaction:t\n\n\0", 1);
    assert_error(&c.input("BEGIN\ntransaction:t\n\n\0", 2), "Transaction already started");

    let mut c = h.connected("1.2");
    let got = c.input(
        "BEGIN\ntransaction:t\n\n\0SEND\ndestination:a\ntransaction:t\n\n1\0ACK\nid:5\ntransaction:t\n\n\0",
        1,
    );
    assert!(got.is_empty(), "{got:?}");
    assert_error(
        &c.input("SEND\ndestination:a\ntransaction:t\n\n1\0", 2),
        "Transaction too large",
    );

    let mut c = h.connected("1.2");
    c.input("BEGIN\ntransaction:t\n\n\0", 1);
    assert_error(
        &c.input("SEND\ndestination:a\ntransaction:t\n\n0123456789A\0", 2),
        "Transaction too large",
    );

    let mut c = h.connected("1.2");
    assert_error(
        &c.input("COMMIT\ntransaction:nope\nreceipt:r\n\n\0", 1),
        "Transaction not found",
    );
    let mut c = h.connected("1.2");
    assert_error(
        &c.input("SEND\ndestination:a\ntransaction:nope\n\nx\0", 1),
        "Transaction not found",
    );
}
