//! `/banned`: the banned list (client ids, user names, peer addresses or CIDR ranges). Bans go
//! through the core's list, which keeps them in the durable store; a banned client is refused
//! at its next CONNECT.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use portico_core::banned::{BanEntry, BanError, BanKind};
use portico_core::message::now_millis;
use portico_core::sys::format_rfc3339_utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Strict, json_rejection, query_rejection};
use crate::paging::Page;
use crate::time::parse_time;

/// Longest `who`, `by` and `reason` accepted.
const MAX_FIELD_LEN: usize = 1024;

/// EMQX's `as`: `peerhost_net` for a CIDR range, which the core keeps as a `peerhost` ban.
fn kind_name(entry: &BanEntry) -> &'static str {
    if entry.kind == BanKind::PeerHost && entry.who.contains('/') {
        PEERHOST_NET
    } else {
        entry.kind.as_str()
    }
}

/// EMQX's `as` for a CIDR range.
const PEERHOST_NET: &str = "peerhost_net";

fn render(entry: &BanEntry) -> Value {
    json!({
        "as": kind_name(entry),
        "who": entry.who,
        "by": entry.by,
        "reason": entry.reason,
        "at": format_rfc3339_utc(entry.at_ms),
        "until": entry.until_ms.map_or_else(|| "infinity".to_owned(), format_rfc3339_utc),
    })
}

/// EMQX's `as`; `peerhost_net` is a `peerhost` ban whose `who` is a CIDR range.
fn parse_kind(text: &str) -> Result<BanKind, ApiError> {
    if text == PEERHOST_NET {
        return Ok(BanKind::PeerHost);
    }
    BanKind::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "as: expected clientid, username, peerhost, peerhost_net, clientid_re or username_re, got {text:?}"
        ))
    })
}

/// `GET /api/v5/banned` query: paging and at most one filter, as EMQX (two filters of
/// different kinds could only match nothing).
#[derive(Deserialize)]
pub(crate) struct BannedQuery {
    page: Option<usize>,
    limit: Option<usize>,
    clientid: Option<String>,
    username: Option<String>,
    peerhost: Option<String>,
    like_clientid: Option<String>,
    like_username: Option<String>,
    like_peerhost: Option<String>,
    like_peerhost_net: Option<String>,
}

/// What a filter matches: the kind name (as listed), exact or substring, the text.
type Filter<'a> = (&'static str, bool, &'a str);

impl BannedQuery {
    fn filter(&self) -> Result<Option<Filter<'_>>, ApiError> {
        let all = [
            ("clientid", false, &self.clientid),
            ("username", false, &self.username),
            ("peerhost", false, &self.peerhost),
            ("clientid", true, &self.like_clientid),
            ("username", true, &self.like_username),
            ("peerhost", true, &self.like_peerhost),
            (PEERHOST_NET, true, &self.like_peerhost_net),
        ];
        let mut set = all
            .into_iter()
            .filter_map(|(kind, like, value)| value.as_deref().map(|v| (kind, like, v)));
        let first = set.next();
        if set.next().is_some() {
            return Err(ApiError::bad_request("too_many_filters: give at most one filter"));
        }
        Ok(first)
    }
}

fn keep(filter: Option<Filter<'_>>, entry: &BanEntry) -> bool {
    let Some((kind, like, text)) = filter else {
        return true;
    };
    kind == kind_name(entry)
        && if like {
            entry.who.contains(text)
        } else {
            entry.who == text
        }
}

/// `GET /api/v5/banned`: in force, ordered by kind then `who`.
pub(crate) async fn list(
    State(state): State<crate::State>,
    query: Result<Query<BannedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let filter = query.filter()?;
    let mut bans = state.broker.banned().list();
    bans.retain(|entry| keep(filter, entry));
    bans.sort_by(|a, b| (kind_name(a), &a.who).cmp(&(kind_name(b), &b.who)));
    Ok(Json(page.collect(bans.iter(), render)))
}

/// `POST /api/v5/banned` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBan {
    #[serde(rename = "as")]
    kind: String,
    who: String,
    by: Option<String>,
    reason: Option<String>,
    at: Option<Value>,
    until: Option<Value>,
}

fn check_len(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().count() > MAX_FIELD_LEN {
        return Err(ApiError::bad_request(format!(
            "{field}: longer than {MAX_FIELD_LEN} characters"
        )));
    }
    Ok(())
}

impl NewBan {
    fn into_entry(self) -> Result<BanEntry, ApiError> {
        let kind = parse_kind(&self.kind)?;
        if self.who.is_empty() {
            return Err(ApiError::bad_request("who: must not be empty"));
        }
        if self.kind == PEERHOST_NET && !self.who.contains('/') {
            return Err(ApiError::bad_request(
                "who: peerhost_net takes a CIDR range (10.0.0.0/8); use peerhost for one address",
            ));
        }
        let by = self.by.unwrap_or_else(|| "mgmt_api".to_owned());
        let reason = self.reason.unwrap_or_default();
        for (field, value) in [("who", &self.who), ("by", &by), ("reason", &reason)] {
            check_len(field, value)?;
        }
        let now_ms = now_millis();
        let at_ms = match &self.at {
            Some(at) => parse_time("at", at).map_err(ApiError::bad_request)?,
            None => now_ms,
        };
        let until_ms = match &self.until {
            None => None,
            Some(Value::String(text)) if text == "infinity" => None,
            Some(until) => Some(parse_time("until", until).map_err(ApiError::bad_request)?),
        };
        if let Some(until) = until_ms
            && until <= now_ms
        {
            return Err(ApiError::bad_request("until: must be in the future"));
        }
        if until_ms.is_some_and(|until| until <= at_ms) {
            return Err(ApiError::bad_request("until: must be after at"));
        }
        Ok(BanEntry {
            kind,
            who: self.who,
            by,
            reason,
            at_ms,
            until_ms,
        })
    }
}

/// `POST /api/v5/banned`: 200 with the ban; 409 `ALREADY_EXISTS` when one is in force.
pub(crate) async fn create(
    State(state): State<crate::State>,
    body: Result<Json<Strict<NewBan>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    let entry = body.into_entry()?;
    let answer = render(&entry);
    match state.broker.banned().create(entry) {
        Ok(()) => {
            tracing::info!(
                kind = answer["as"].as_str(),
                who = answer["who"].as_str(),
                "ban added through the API"
            );
            Ok(Json(answer))
        }
        Err(error @ BanError::AlreadyExists(..)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", error.to_string()))
        }
        Err(error) => Err(ApiError::bad_request(format!("who: {error}"))),
    }
}

/// `DELETE /api/v5/banned/{as}/{who}`.
pub(crate) async fn delete(
    State(state): State<crate::State>,
    Path((as_text, who)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = parse_kind(&as_text)?;
    if state.broker.banned().remove(kind, &who) {
        tracing::info!(kind = %as_text, %who, "ban lifted through the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("NOT_FOUND", format!("{as_text}: {who} not found")))
    }
}

/// `DELETE /api/v5/banned`: lifts every ban (each lift is kept in the durable store).
pub(crate) async fn clear(State(state): State<crate::State>) -> StatusCode {
    let banned = state.broker.banned();
    let mut lifted = 0usize;
    for entry in banned.list() {
        lifted += usize::from(banned.remove(entry.kind, &entry.who));
    }
    crate::forget_journal_ticket();
    tracing::info!(lifted, "every ban lifted through the API");
    StatusCode::NO_CONTENT
}
