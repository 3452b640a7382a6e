//! `/authorization/sources`: the configured authorization sources, and the rules of the
//! `built_in_database` source per user name, per client id and for all clients. The rules live
//! in the server's [`AuthzDb`], which keeps every change in the durable store; the server hands
//! it over through [`crate::Control::authz_sources`].
//!
//! Every change drops the cached authorization results of every connected client, so the next
//! PUBLISH or SUBSCRIBE is checked against the new rules.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use portico_auth::authz_db::{AuthzDb, RuleError, Who};
use portico_auth::rules::{Permission, RawRule, RuleAction};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::AuthzSourceInfo;
use crate::error::{ApiError, Strict, json_rejection, query_rejection, strict_all};
use crate::paging::Page;

/// The source type that keeps rules.
const BUILT_IN: &str = "built_in_database";

/// Most principals one POST may add (the request body limit bounds it too).
const MAX_BULK: usize = 1000;

fn render_source(info: &AuthzSourceInfo) -> Value {
    let mut map = info.settings.clone();
    map.insert("type".to_owned(), json!(info.kind));
    map.insert("enable".to_owned(), json!(info.enable));
    Value::Object(map)
}

/// `GET /api/v5/authorization/sources` → `{sources: [...]}`, in check order.
pub(crate) async fn list_sources(State(state): State<crate::State>) -> Json<Value> {
    let sources: Vec<Value> = state.control.authz_sources().iter().map(render_source).collect();
    Json(json!({ "sources": sources }))
}

/// `GET /api/v5/authorization/sources/{type}`.
pub(crate) async fn get_source(
    State(state): State<crate::State>,
    Path(kind): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .control
        .authz_sources()
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| Json(render_source(s)))
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no authorization source of type {kind:?}")))
}

fn rule_db(state: &crate::State) -> Result<Arc<AuthzDb>, ApiError> {
    state
        .control
        .authz_sources()
        .into_iter()
        .find_map(|s| s.rules)
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no {BUILT_IN} authorization source is configured")))
}

/// A rule as the API takes it: EMQX's `{topic, permission, action, qos?, retain?}`, `qos` a
/// list of levels (or one), `retain` `true`, `false` or `"all"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleBody {
    topic: String,
    permission: Permission,
    action: RuleAction,
    qos: Option<Value>,
    retain: Option<Value>,
}

impl RuleBody {
    fn into_raw(self) -> Result<RawRule, String> {
        let qos = match self.qos {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(vec![qos_level(n.as_u64())?]),
            Some(Value::Array(levels)) => Some(
                levels
                    .iter()
                    .map(|l| qos_level(l.as_u64()))
                    .collect::<Result<Vec<u8>, String>>()?,
            ),
            Some(other) => return Err(format!("qos: expected a list of 0, 1, 2, got {other}")),
        };
        let retain = match self.retain {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(Value::String(s)) if s == "all" => None,
            Some(Value::String(s)) if s == "true" => Some(true),
            Some(Value::String(s)) if s == "false" => Some(false),
            Some(other) => return Err(format!("retain: expected true, false or \"all\", got {other}")),
        };
        // All three levels is the same as no limit; listing shows it so either way.
        let qos = qos.filter(|levels| !(0..=2).all(|l| levels.contains(&l)));
        Ok(RawRule {
            permission: self.permission,
            action: self.action,
            topic: self.topic,
            qos,
            retain,
        })
    }
}

fn qos_level(level: Option<u64>) -> Result<u8, String> {
    match level {
        Some(l @ 0..=2) => Ok(l as u8),
        _ => Err("qos: each level must be 0, 1 or 2".to_owned()),
    }
}

/// EMQX's rendering: `qos` always a list, `retain` `"all"` when not limited.
fn render_rule(rule: &RawRule) -> Value {
    json!({
        "topic": rule.topic,
        "permission": rule.permission,
        "action": rule.action,
        "qos": rule.qos.clone().unwrap_or_else(|| vec![0, 1, 2]),
        "retain": rule.retain.map_or_else(|| json!("all"), |r| json!(r)),
    })
}

fn render_rules(rules: &[RawRule]) -> Vec<Value> {
    rules.iter().map(render_rule).collect()
}

fn into_raw(rules: Vec<Strict<RuleBody>>) -> Result<Vec<RawRule>, ApiError> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, Strict(r))| {
            r.into_raw()
                .map_err(|why| ApiError::bad_request(format!("rules[{i}]: {why}")))
        })
        .collect()
}

fn rule_error(error: RuleError) -> ApiError {
    match error {
        RuleError::NotFound(_) => ApiError::not_found("NOT_FOUND", error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    }
}

/// Which principals a route is about.
#[derive(Clone, Copy)]
enum Kind {
    Users,
    Clients,
}

impl Kind {
    /// The JSON field naming the principal.
    fn field(self) -> &'static str {
        match self {
            Kind::Users => "username",
            Kind::Clients => "clientid",
        }
    }

    fn who(self, name: String) -> Who {
        match self {
            Kind::Users => Who::Username(name),
            Kind::Clients => Who::ClientId(name),
        }
    }

    fn name(self, who: &Who) -> Option<&str> {
        match (self, who) {
            (Kind::Users, Who::Username(name)) | (Kind::Clients, Who::ClientId(name)) => Some(name),
            _ => None,
        }
    }
}

/// Drops every client's cached authorization results after a change.
fn changed(state: &crate::State, what: &str) {
    crate::forget_journal_ticket();
    state.broker.clear_authz_caches(None);
    tracing::info!(what, "built-in authorization rules changed");
}

/// `GET .../rules/users` and `.../rules/clients` query.
#[derive(Deserialize)]
pub(crate) struct RulesQuery {
    page: Option<usize>,
    limit: Option<usize>,
    like_username: Option<String>,
    like_clientid: Option<String>,
}

async fn list_of(state: crate::State, kind: Kind, query: RulesQuery) -> Result<Json<Value>, ApiError> {
    let page = Page::new(query.page, query.limit)?;
    let db = rule_db(&state)?;
    let like = match kind {
        Kind::Users => query.like_username,
        Kind::Clients => query.like_clientid,
    };
    let keep = |who: &Who| {
        kind.name(who)
            .is_some_and(|n| like.as_deref().is_none_or(|l| n.contains(l)))
    };
    let skip = (page.page - 1).saturating_mul(page.limit);
    let (rows, count) = db.list_where(keep, skip, page.limit);
    let data: Vec<Value> = rows
        .iter()
        .map(|(who, rules)| json!({ kind.field(): kind.name(who).unwrap_or_default(), "rules": render_rules(rules) }))
        .collect();
    Ok(Json(json!({
        "data": data,
        "meta": {"page": page.page, "limit": page.limit, "count": count, "hasnext": count > skip.saturating_add(page.limit)},
    })))
}

/// `GET /api/v5/authorization/sources/built_in_database/rules/users`.
pub(crate) async fn list_users(
    State(state): State<crate::State>,
    query: Result<Query<RulesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    list_of(state, Kind::Users, query).await
}

/// `GET /api/v5/authorization/sources/built_in_database/rules/clients`.
pub(crate) async fn list_clients(
    State(state): State<crate::State>,
    query: Result<Query<RulesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    list_of(state, Kind::Clients, query).await
}

/// One principal's rules in a body: `{username | clientid, rules}`.
#[derive(Deserialize)]
pub(crate) struct Principal {
    username: Option<String>,
    clientid: Option<String>,
    rules: Vec<Strict<RuleBody>>,
}

impl Principal {
    fn name(&mut self, kind: Kind) -> Option<String> {
        match kind {
            Kind::Users => self.username.take(),
            Kind::Clients => self.clientid.take(),
        }
    }
}

/// POST: every principal checked (valid, not yet present) before any is stored; 409
/// `ALREADY_EXISTS` names those that have rules already.
async fn add_many(
    state: crate::State,
    kind: Kind,
    body: Result<Json<Vec<Strict<Principal>>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let db = rule_db(&state)?;
    let Json(principals) = body.map_err(json_rejection)?;
    let principals = strict_all(principals);
    if principals.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!("at most {MAX_BULK} entries at once")));
    }
    let mut checked = Vec::with_capacity(principals.len());
    for (index, mut principal) in principals.into_iter().enumerate() {
        let name = principal
            .name(kind)
            .ok_or_else(|| ApiError::bad_request(format!("{}: required", kind.field())).at_index(index))?;
        let rules = into_raw(principal.rules).map_err(|e| e.at_index(index))?;
        let who = kind.who(name);
        db.validate(&who, &rules).map_err(|e| rule_error(e).at_index(index))?;
        if checked.iter().any(|(w, _)| *w == who) {
            return Err(
                ApiError::bad_request(format!("{:?} is given twice", kind.name(&who).unwrap_or_default()))
                    .at_index(index),
            );
        }
        checked.push((who, rules));
    }
    let present: Vec<&str> = checked
        .iter()
        .filter(|(who, _)| db.get_rules(who).is_some())
        .filter_map(|(who, _)| kind.name(who))
        .collect();
    if !present.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("rules for {} already exist", present.join(", ")),
        ));
    }
    for (who, rules) in checked {
        db.set_rules(who, rules).map_err(rule_error)?;
    }
    changed(&state, kind.field());
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v5/authorization/sources/built_in_database/rules/users` → 204.
pub(crate) async fn add_users(
    State(state): State<crate::State>,
    body: Result<Json<Vec<Strict<Principal>>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    add_many(state, Kind::Users, body).await
}

/// `POST /api/v5/authorization/sources/built_in_database/rules/clients` → 204.
pub(crate) async fn add_clients(
    State(state): State<crate::State>,
    body: Result<Json<Vec<Strict<Principal>>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    add_many(state, Kind::Clients, body).await
}

fn get_one(state: &crate::State, kind: Kind, name: String) -> Result<Json<Value>, ApiError> {
    let db = rule_db(state)?;
    let who = kind.who(name);
    let rules = db
        .get_rules(&who)
        .ok_or_else(|| rule_error(RuleError::NotFound(who.clone())))?;
    Ok(Json(
        json!({ kind.field(): kind.name(&who).unwrap_or_default(), "rules": render_rules(&rules) }),
    ))
}

fn put_one(
    state: &crate::State,
    kind: Kind,
    name: String,
    body: Result<Json<Strict<Principal>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let db = rule_db(state)?;
    let Json(Strict(mut principal)) = body.map_err(json_rejection)?;
    if let Some(given) = principal.name(kind)
        && given != name
    {
        return Err(ApiError::bad_request(format!(
            "{}: {given:?} differs from the path's {name:?}",
            kind.field()
        )));
    }
    let rules = into_raw(principal.rules)?;
    db.set_rules(kind.who(name), rules).map_err(rule_error)?;
    changed(state, kind.field());
    Ok(StatusCode::NO_CONTENT)
}

fn delete_one(state: &crate::State, kind: Kind, name: String) -> Result<StatusCode, ApiError> {
    let db = rule_db(state)?;
    db.delete_rules(&kind.who(name)).map_err(rule_error)?;
    changed(state, kind.field());
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../rules/users/{username}`.
pub(crate) async fn get_user(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_one(&state, Kind::Users, name)
}

/// `PUT .../rules/users/{username}` with `{username?, rules}`: replaces them → 204.
pub(crate) async fn put_user(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    body: Result<Json<Strict<Principal>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    put_one(&state, Kind::Users, name, body)
}

/// `DELETE .../rules/users/{username}` → 204.
pub(crate) async fn delete_user(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_one(&state, Kind::Users, name)
}

/// `GET .../rules/clients/{clientid}`.
pub(crate) async fn get_client(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_one(&state, Kind::Clients, name)
}

/// `PUT .../rules/clients/{clientid}` with `{clientid?, rules}` → 204.
pub(crate) async fn put_client(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    body: Result<Json<Strict<Principal>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    put_one(&state, Kind::Clients, name, body)
}

/// `DELETE .../rules/clients/{clientid}` → 204.
pub(crate) async fn delete_client(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_one(&state, Kind::Clients, name)
}

/// `GET .../rules/all` → `{rules}` (empty when none).
pub(crate) async fn get_all(State(state): State<crate::State>) -> Result<Json<Value>, ApiError> {
    let db = rule_db(&state)?;
    let rules = db.get_rules(&Who::All).unwrap_or_default();
    Ok(Json(json!({ "rules": render_rules(&rules) })))
}

/// `POST .../rules/all` body.
#[derive(Deserialize)]
pub(crate) struct AllRules {
    rules: Vec<Strict<RuleBody>>,
}

/// `POST .../rules/all` with `{rules}`: replaces the rules for all clients → 204.
pub(crate) async fn set_all(
    State(state): State<crate::State>,
    body: Result<Json<Strict<AllRules>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let db = rule_db(&state)?;
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    db.set_rules(Who::All, into_raw(body.rules)?).map_err(rule_error)?;
    changed(&state, "all");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../rules/all` → 204, whether or not there were any.
pub(crate) async fn delete_all(State(state): State<crate::State>) -> Result<StatusCode, ApiError> {
    let db = rule_db(&state)?;
    let _ = db.delete_rules(&Who::All);
    changed(&state, "all");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v5/authorization/cache`: every connected client's cached authorization results
/// are dropped (each is checked again at its next PUBLISH or SUBSCRIBE).
pub(crate) async fn clear_cache(State(state): State<crate::State>) -> StatusCode {
    state.broker.clear_authz_caches(None);
    tracing::info!("authorization caches cleared through the API");
    StatusCode::NO_CONTENT
}
