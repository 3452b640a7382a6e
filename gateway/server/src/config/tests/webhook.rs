//! `webhook.*`: POST events to a web service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use portico_core::hooks::EventKind;
use portico_webhook::{EncodePayload, WebhookSettings};

use super::*;

#[test]
fn off_by_default_with_emqx_url() {
    let w = Config::default().webhook;
    assert!(!w.enable);
    assert_eq!(w.settings, WebhookSettings::default());
    assert_eq!(w.settings.url, "http://127.0.0.1:8080");
    assert_eq!(w.settings.request_timeout, Duration::from_secs(5));
    assert_eq!(w.settings.max_retries, 3);
    assert!(w.settings.rules.is_empty());
}

#[test]
fn keys_and_rules_from_file_and_env() {
    let config = load_str(
        "webhook-keys",
        "[webhook]\nenable = true\nurl = \"https://hooks.example/in\"\nencode_payload = \"base64\"\n\
         request_timeout = \"2s\"\npool_size = 2\nmax_retries = 0\nqueue_capacity = 10\n\
         headers = { Authorization = \"Bearer x\" }\n\
         [[webhook.rules]]\nevent = \"message.publish\"\ntopic = \"a/+/c\"\n\
         [[webhook.rules]]\nevent = \"client.connected\"\n",
        &[("PORTICO_WEBHOOK__RULES__3__EVENT", "message.dropped")],
    )
    .unwrap();
    let w = config.webhook;
    assert!(w.enable);
    let s = w.settings;
    assert_eq!(s.url, "https://hooks.example/in");
    assert_eq!(s.encode_payload, EncodePayload::Base64);
    assert_eq!(s.request_timeout, Duration::from_secs(2));
    assert_eq!((s.pool_size, s.max_retries, s.queue_capacity), (2, 0, 10));
    assert_eq!(s.headers, vec![("authorization".to_owned(), "Bearer x".to_owned())]);
    let events: Vec<EventKind> = s.rules.iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [
            EventKind::MessagePublish,
            EventKind::ClientConnected,
            EventKind::MessageDropped
        ]
    );
    assert_eq!(s.rules[0].topic.as_deref(), Some("a/+/c"));
}

#[test]
fn bad_values_name_their_key() {
    let errors = errors_of(load_str(
        "webhook-bad",
        "[webhook]\nurl = \"ftp://x\"\nencode_payload = \"base62\"\npool_size = 0\nrequest_timeout = \"soon\"\n\
         queue_capacity = 0\nheaders = { \"bad name\" = \"v\" }\nretries = 1\n\
         [[webhook.rules]]\nevent = \"message.sent\"\n\
         [[webhook.rules]]\nevent = \"message.publish\"\ntopic = \"a/#/b\"\n\
         [[webhook.rules]]\nevent = \"client.connected\"\ntopic = \"a\"\n\
         [[webhook.rules]]\ntopic = \"a\"\n",
        &[],
    ));
    let text = errors.to_string();
    for key in [
        "webhook.url",
        "webhook.encode_payload",
        "webhook.pool_size",
        "webhook.request_timeout",
        "webhook.queue_capacity",
        "webhook.headers",
        "webhook.retries",
        "webhook.rules[0].event",
        "webhook.rules[1].topic",
        "webhook.rules[2].topic",
        "webhook.rules[3]",
    ] {
        assert!(text.contains(key), "{key} not reported in {text}");
    }
    assert!(text.contains("unknown event \"message.sent\""), "{text}");
    assert!(text.contains("message events only"), "{text}");
    assert!(text.contains("missing required key `event`"), "{text}");
}
