//! `webhook.*`: POST the broker's events to a web service (EMQX 4 `web.hook.*`, as TOML). See
//! `docs/webhooks.md`.
//!
//! ```toml
//! [webhook]
//! enable = true
//! url = "http://127.0.0.1:8080/hook"
//! [[webhook.rules]]
//! event = "message.publish"
//! topic = "sensors/#"
//! ```

use portico_webhook::{EncodePayload, Rule, RuleError, WebhookSettings, check_header, check_url};
use toml::Value;

use super::schema::{Ctx, Section, one_of};
use super::value;

/// `webhook.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebhookConfig {
    /// `webhook.enable`: off by default.
    pub enable: bool,
    /// Every other key.
    pub settings: WebhookSettings,
}

pub(super) fn webhook(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> WebhookConfig {
    let d = WebhookSettings::default();
    let enable = s.field(ctx, "enable", false, value::boolean);
    let url = s.field(ctx, "url", d.url, |v| {
        let url = value::non_empty_string(v)?;
        check_url(&url)?;
        Ok(url)
    });
    let headers = s.field(ctx, "headers", d.headers, headers);
    let encode_payload = s.field(ctx, "encode_payload", d.encode_payload, |v| {
        one_of(v, &[(EncodePayload::Plain, "plain"), (EncodePayload::Base64, "base64")])
    });
    let pool_size = s.field(ctx, "pool_size", d.pool_size, |v| value::int_in(v, 1, 1024));
    let request_timeout = s.field(ctx, "request_timeout", d.request_timeout, value::positive_duration);
    let max_retries = s.field(ctx, "max_retries", d.max_retries, |v| value::int_in(v, 0, 100));
    let queue_capacity = s.field(ctx, "queue_capacity", d.queue_capacity, |v| {
        value::int_in(v, 1, 100_000_000)
    });
    let rules = s
        .array_of_tables(ctx, "rules")
        .into_iter()
        .filter_map(|rule| self::rule(rule, ctx))
        .collect();
    s.finish(ctx);
    WebhookConfig {
        enable,
        settings: WebhookSettings {
            url,
            headers,
            encode_payload,
            pool_size,
            request_timeout,
            max_retries,
            queue_capacity,
            rules,
        },
    }
}

/// `headers = { "x-name" = "value", ... }`: names lower-cased, values as written.
fn headers(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Table(table) = v else {
        return Err("expected a table of header = \"value\"".to_owned());
    };
    table
        .iter()
        .map(|(name, value)| {
            let Value::String(text) = value else {
                return Err(format!("header {name:?}: expected a string"));
            };
            check_header(name, text)?;
            Ok((name.to_ascii_lowercase(), text.clone()))
        })
        .collect()
}

/// One `webhook.rules[i]`; `None` once a problem is reported.
fn rule(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> Option<Rule> {
    let event = s.required(ctx, "event", value::non_empty_string);
    let topic = s.read(ctx, "topic", value::non_empty_string);
    let (event_key, topic_key) = (s.key("event"), s.key("topic"));
    s.finish(ctx);
    let (event, topic) = (event?, topic.ok()?);
    match Rule::new(&event, topic.as_deref()) {
        Ok(rule) => Some(rule),
        Err(error @ RuleError::UnknownEvent(_)) => {
            ctx.invalid(&event_key, format!("{event:?}"), error.to_string());
            None
        }
        Err(error) => {
            ctx.invalid(
                &topic_key,
                format!("{:?}", topic.unwrap_or_default()),
                error.to_string(),
            );
            None
        }
    }
}
