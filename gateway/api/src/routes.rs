//! The route table. The router and the OpenAPI document are both built from [`TABLE`], so the
//! document cannot list a route that is not served or miss one that is.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::access;
use crate::error::ApiError;
use crate::handlers::{
    alarms, authn, authz, banned, clients, coap_request, configs, data, gateway_config, gateways, lwm2m, nodes,
    prometheus, publish, retainer, subscribe, topics, trace, users,
};
use crate::keys;

/// One route as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDoc {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path, with `{name}` parameters (the syntax axum and OpenAPI share).
    pub path: &'static str,
    /// OpenAPI tag (endpoint family).
    pub tag: &'static str,
    /// One line of what it does.
    pub summary: &'static str,
    /// True when a token or API key is required.
    pub auth: bool,
}

type Handler = fn() -> MethodRouter<crate::State>;

const fn doc(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: bool,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        tag,
        summary,
        auth,
    }
}

#[rustfmt::skip]
const TABLE: &[(RouteDoc, Handler)] = &[
    (doc("POST", "/api/v5/login", "dashboard", "Log in: user name and password for a bearer token", false), || post(access::login)),
    (doc("POST", "/api/v5/logout", "dashboard", "End the session of the calling token", true), || post(access::logout)),
    (doc("POST", "/api/v5/users/{username}/change_pwd", "dashboard", "Change one's own password", true), || post(access::change_password)),
    (doc("GET", "/api/v5/users", "dashboard", "List dashboard users", true), || get(users::list)),
    (doc("POST", "/api/v5/users", "dashboard", "Add a dashboard user", true), || post(users::create)),
    (doc("PUT", "/api/v5/users/{username}", "dashboard", "Change a dashboard user's description", true), || put(users::update)),
    (doc("DELETE", "/api/v5/users/{username}", "dashboard", "Delete a dashboard user (not oneself, not the last)", true), || delete(users::delete)),
    (doc("GET", "/api/v5/api_key", "api_key", "List API keys", true), || get(keys::list)),
    (doc("POST", "/api/v5/api_key", "api_key", "Create an API key (the answer holds its secret)", true), || post(keys::create)),
    (doc("GET", "/api/v5/api_key/{name}", "api_key", "An API key", true), || get(keys::get)),
    (doc("PUT", "/api/v5/api_key/{name}", "api_key", "Change an API key's description or enable flag", true), || put(keys::update)),
    (doc("DELETE", "/api/v5/api_key/{name}", "api_key", "Delete an API key", true), || delete(keys::delete)),
    (doc("GET", "/api/v5/nodes", "nodes", "The nodes", true), || get(nodes::list)),
    (doc("GET", "/api/v5/nodes/{node}", "nodes", "One node", true), || get(nodes::get)),
    (doc("GET", "/api/v5/stats", "metrics", "Statistics (current and highest values)", true), || get(nodes::stats)),
    (doc("GET", "/api/v5/metrics", "metrics", "Counters, by EMQX name", true), || get(nodes::metrics)),
    (doc("GET", "/api/v5/clients", "clients", "Clients, paged and filtered", true), || get(clients::list)),
    (doc("GET", "/api/v5/clients/{clientid}", "clients", "One client", true), || get(clients::get)),
    (doc("DELETE", "/api/v5/clients/{clientid}", "clients", "Kick a client: close its connection, end its session", true), || delete(clients::kick)),
    (doc("GET", "/api/v5/clients/{clientid}/subscriptions", "clients", "A client's subscriptions", true), || get(clients::subscriptions_of)),
    (doc("POST", "/api/v5/clients/{clientid}/subscribe", "clients", "Subscribe a client to a topic filter", true), || post(subscribe::subscribe)),
    (doc("POST", "/api/v5/clients/{clientid}/subscribe/bulk", "clients", "Subscribe a client to several topic filters", true), || post(subscribe::subscribe_bulk)),
    (doc("POST", "/api/v5/clients/{clientid}/unsubscribe", "clients", "Unsubscribe a client from a topic filter", true), || post(subscribe::unsubscribe)),
    (doc("POST", "/api/v5/clients/{clientid}/unsubscribe/bulk", "clients", "Unsubscribe a client from several topic filters", true), || post(subscribe::unsubscribe_bulk)),
    (doc("GET", "/api/v5/subscriptions", "subscriptions", "Subscriptions, paged and filtered", true), || get(clients::list_all)),
    (doc("GET", "/api/v5/topics", "topics", "Routes (subscribed topic filters), paged", true), || get(topics::list)),
    (doc("GET", "/api/v5/topics/{topic}", "topics", "One route (the filter URL-encoded)", true), || get(topics::get)),
    (doc("GET", "/api/v5/mqtt/retainer/messages", "retainer", "Retained messages, paged, optionally matching a topic filter", true), || get(retainer::list)),
    (doc("DELETE", "/api/v5/mqtt/retainer/messages", "retainer", "Delete every retained message clients published", true), || delete(retainer::clear)),
    (doc("GET", "/api/v5/mqtt/retainer/message/{topic}", "retainer", "One retained message with its payload (the topic URL-encoded)", true), || get(retainer::get)),
    (doc("DELETE", "/api/v5/mqtt/retainer/message/{topic}", "retainer", "Delete a retained message", true), || delete(retainer::delete)),
    (doc("GET", "/api/v5/banned", "banned", "Bans in force, paged", true), || get(banned::list)),
    (doc("POST", "/api/v5/banned", "banned", "Ban a client id, user name or peer address", true), || post(banned::create)),
    (doc("DELETE", "/api/v5/banned/{as}/{who}", "banned", "Lift a ban", true), || delete(banned::delete)),
    (doc("DELETE", "/api/v5/banned", "banned", "Lift every ban", true), || delete(banned::clear)),
    (doc("DELETE", "/api/v5/clients/{clientid}/authorization/cache", "clients", "Drop a client's cached authorization results", true), || delete(clients::clear_authz_cache)),
    (doc("DELETE", "/api/v5/authorization/cache", "authorization", "Drop every client's cached authorization results", true), || delete(authz::clear_cache)),
    (doc("GET", "/api/v5/alarms", "alarms", "Alarms, paged: activated=true the active ones, false the history", true), || get(alarms::list)),
    (doc("DELETE", "/api/v5/alarms", "alarms", "Clear the history of deactivated alarms", true), || delete(alarms::clear)),
    (doc("POST", "/api/v5/publish", "publish", "Publish a message", true), || post(publish::publish)),
    (doc("POST", "/api/v5/publish/bulk", "publish", "Publish several messages", true), || post(publish::publish_bulk)),
    (doc("GET", "/api/v5/gateways", "gateways", "The gateways, running or stopped", true), || get(gateways::list)),
    (doc("GET", "/api/v5/gateways/{name}", "gateways", "One gateway", true), || get(gateways::get)),
    (doc("PUT", "/api/v5/gateways/{name}/enable/{enable}", "gateways", "Start (true) or stop (false) a gateway", true), || put(gateways::enable)),
    (doc("GET", "/api/v5/gateways/{name}/listeners", "gateways", "A gateway's listeners", true), || get(gateways::listeners_of)),
    (doc("GET", "/api/v5/gateways/{name}/clients", "gateways", "A gateway's clients, paged and filtered", true), || get(gateways::clients_of)),
    (doc("GET", "/api/v5/gateways/{name}/clients/{clientid}", "gateways", "One client of a gateway", true), || get(gateways::client)),
    (doc("DELETE", "/api/v5/gateways/{name}/clients/{clientid}", "gateways", "Kick a client of a gateway", true), || delete(gateways::kick)),
    (doc("GET", "/api/v5/gateways/{name}/clients/{clientid}/lookup", "gateways", "LwM2M: the last result of a command on a path", true), || get(lwm2m::lookup)),
    (doc("POST", "/api/v5/gateways/{name}/clients/{clientid}/read", "gateways", "LwM2M: read a path on the device", true), || post(lwm2m::read)),
    (doc("POST", "/api/v5/gateways/{name}/clients/{clientid}/write", "gateways", "LwM2M: write a value to a path on the device", true), || post(lwm2m::write)),
    (doc("POST", "/api/v5/gateways/{name}/clients/{clientid}/observe", "gateways", "LwM2M: start or stop observing a path", true), || post(lwm2m::observe)),
    (doc("GET", "/api/v5/configs", "configs", "The running configuration, secrets masked", true), || get(configs::all)),
    (doc("GET", "/api/v5/configs/{section}", "configs", "One top-level section of the running configuration", true), || get(configs::section)),
    (doc("POST", "/api/v5/configs/reload", "configs", "Read the configuration file and environment again (as SIGHUP)", true), || post(configs::reload)),
    (doc("GET", "/api/v5/listeners", "listeners", "Every listener, MQTT's and the gateways'", true), || get(gateways::all_listeners)),
    (doc("POST", "/api/v5/listeners/{id}/{action}", "listeners", "Start, stop or restart an MQTT listener", true), || post(gateways::listener_action)),
    (doc("PUT", "/api/v5/gateways/{name}", "gateways", "Load or update a gateway's configuration (saved, gateway restarted)", true), || put(gateway_config::update)),
    (doc("DELETE", "/api/v5/gateways/{name}", "gateways", "Unload a gateway: stop it and keep it off", true), || delete(gateway_config::unload)),
    (doc("POST", "/api/v5/gateways/{name}/listeners", "gateways", "Add a listener to a gateway", true), || post(gateway_config::add_listener)),
    (doc("PUT", "/api/v5/gateways/{name}/listeners/{id}", "gateways", "Change a gateway's listener", true), || put(gateway_config::update_listener)),
    (doc("DELETE", "/api/v5/gateways/{name}/listeners/{id}", "gateways", "Remove a gateway's listener", true), || delete(gateway_config::remove_listener)),
    (doc("POST", "/api/v5/gateways/{name}/clients/{clientid}/request", "gateways", "CoAP: send a request to a connected client and answer with its response", true), || post(coap_request::request)),
    (doc("GET", "/api/v5/psk", "psk", "The built-in PSK database's identities", true), || get(gateways::psk_list)),
    (doc("POST", "/api/v5/psk", "psk", "Add or replace a PSK identity", true), || post(gateways::psk_put)),
    (doc("DELETE", "/api/v5/psk/{identity}", "psk", "Remove a PSK identity", true), || delete(gateways::psk_delete)),
    (doc("GET", "/api/v5/authentication", "authentication", "The authentication chain (no secrets)", true), || get(authn::list)),
    (doc("GET", "/api/v5/authentication/{id}", "authentication", "One authenticator (id URL-encoded, e.g. password_based%3Abuilt_in_database)", true), || get(authn::get)),
    (doc("GET", "/api/v5/authentication/{id}/users", "authentication", "Users of a built-in database authenticator, paged", true), || get(authn::list_users)),
    (doc("POST", "/api/v5/authentication/{id}/users", "authentication", "Add a user to a built-in database authenticator", true), || post(authn::create_user)),
    (doc("GET", "/api/v5/authentication/{id}/users/{user_id}", "authentication", "One user", true), || get(authn::get_user)),
    (doc("PUT", "/api/v5/authentication/{id}/users/{user_id}", "authentication", "Change a user's password or superuser flag", true), || put(authn::update_user)),
    (doc("DELETE", "/api/v5/authentication/{id}/users/{user_id}", "authentication", "Delete a user", true), || delete(authn::delete_user)),
    (doc("POST", "/api/v5/authentication/{id}/import_users", "authentication", "Import users (JSON array or CSV body, type=plain|hash)", true), || post(authn::import_users)),
    (doc("GET", "/api/v5/authorization/sources", "authorization", "The authorization sources (no secrets)", true), || get(authz::list_sources)),
    (doc("GET", "/api/v5/authorization/sources/{type}", "authorization", "One authorization source", true), || get(authz::get_source)),
    (doc("GET", "/api/v5/authorization/sources/built_in_database/rules/users", "authorization", "Built-in rules per user name, paged", true), || get(authz::list_users)),
    (doc("POST", "/api/v5/authorization/sources/built_in_database/rules/users", "authorization", "Add built-in rules for user names", true), || post(authz::add_users)),
    (doc("GET", "/api/v5/authorization/sources/built_in_database/rules/users/{username}", "authorization", "One user name's rules", true), || get(authz::get_user)),
    (doc("PUT", "/api/v5/authorization/sources/built_in_database/rules/users/{username}", "authorization", "Replace one user name's rules", true), || put(authz::put_user)),
    (doc("DELETE", "/api/v5/authorization/sources/built_in_database/rules/users/{username}", "authorization", "Delete one user name's rules", true), || delete(authz::delete_user)),
    (doc("GET", "/api/v5/authorization/sources/built_in_database/rules/clients", "authorization", "Built-in rules per client id, paged", true), || get(authz::list_clients)),
    (doc("POST", "/api/v5/authorization/sources/built_in_database/rules/clients", "authorization", "Add built-in rules for client ids", true), || post(authz::add_clients)),
    (doc("GET", "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}", "authorization", "One client id's rules", true), || get(authz::get_client)),
    (doc("PUT", "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}", "authorization", "Replace one client id's rules", true), || put(authz::put_client)),
    (doc("DELETE", "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}", "authorization", "Delete one client id's rules", true), || delete(authz::delete_client)),
    (doc("GET", "/api/v5/authorization/sources/built_in_database/rules/all", "authorization", "The built-in rules for all clients", true), || get(authz::get_all)),
    (doc("POST", "/api/v5/authorization/sources/built_in_database/rules/all", "authorization", "Replace the built-in rules for all clients", true), || post(authz::set_all)),
    (doc("DELETE", "/api/v5/authorization/sources/built_in_database/rules/all", "authorization", "Delete the built-in rules for all clients", true), || delete(authz::delete_all)),
    (doc("GET", "/api/v5/trace", "trace", "Log traces, newest start first", true), || get(trace::list)),
    (doc("POST", "/api/v5/trace", "trace", "Create a log trace of a client id, topic filter or IP address", true), || post(trace::create)),
    (doc("DELETE", "/api/v5/trace", "trace", "Delete every log trace and its file", true), || delete(trace::clear)),
    (doc("DELETE", "/api/v5/trace/{name}", "trace", "Delete a log trace and its file", true), || delete(trace::delete)),
    (doc("PUT", "/api/v5/trace/{name}/stop", "trace", "Stop a log trace (its file stays)", true), || put(trace::stop)),
    (doc("GET", "/api/v5/trace/{name}/download", "trace", "A log trace's file, as a plain-text attachment", true), || get(trace::download)),
    (doc("GET", "/api/v5/trace/{name}/log", "trace", "Part of a log trace's file: bytes (at most 1 MiB) from position", true), || get(trace::log)),
    (doc("POST", "/api/v5/data/export", "data", "Export the node's data to a backup file (body: optional table_sets)", true), || post(data::export)),
    (doc("GET", "/api/v5/data/files", "data", "Backup files, newest first, paged", true), || get(data::list)),
    (doc("POST", "/api/v5/data/files", "data", "Upload a backup file (multipart/form-data, field filename)", true), || post(data::upload).layer(DefaultBodyLimit::max(data::MAX_UPLOAD_BODY))),
    (doc("GET", "/api/v5/data/files/{filename}", "data", "Download a backup file", true), || get(data::download)),
    (doc("DELETE", "/api/v5/data/files/{filename}", "data", "Delete a backup file", true), || delete(data::delete)),
    (doc("POST", "/api/v5/data/import", "data", "Import a backup file of the node (an upsert)", true), || post(data::import)),
    (doc("PUT", "/api/v5/users/{username}/password", "dashboard", "Set a dashboard user's password without the old one (Portico's)", true), || put(users::set_password)),
    (doc("GET", "/api/v5/prometheus/stats", "metrics", "Prometheus text exposition", false), || get(prometheus::stats)),
    (doc("GET", "/metrics", "metrics", "Prometheus text exposition (alias)", false), || get(prometheus::stats)),
    (doc("GET", "/api-docs", "docs", "This OpenAPI document", false), || get(api_docs)),
    (doc("GET", "/api-docs/swagger.json", "docs", "This OpenAPI document (EMQX's path)", false), || get(api_docs)),
];

/// Every route served.
pub fn routes() -> impl Iterator<Item = &'static RouteDoc> {
    TABLE.iter().map(|(doc, _)| doc)
}

/// How the routes that need credentials are guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A bearer token or an API key (the dashboard's TCP listener).
    Credentials,
    /// None: the local control socket, where the filesystem authenticates; requests act as
    /// [`access::Principal::Local`].
    Local,
}

pub(crate) fn router(state: crate::State, guard: Access) -> Router {
    let mut public: BTreeMap<&str, MethodRouter<crate::State>> = BTreeMap::new();
    let mut protected: BTreeMap<&str, MethodRouter<crate::State>> = BTreeMap::new();
    for (doc, handler) in TABLE {
        let side = if doc.auth { &mut protected } else { &mut public };
        let route = match side.remove(doc.path) {
            Some(existing) => existing.merge(handler()),
            None => handler(),
        };
        side.insert(doc.path, route);
    }
    let mut open = Router::new();
    for (path, route) in public {
        open = open.route(path, route);
    }
    let mut closed = Router::new();
    for (path, route) in protected {
        closed = closed.route(path, route);
    }
    let closed = match guard {
        Access::Credentials => closed.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_auth,
        )),
        Access::Local => closed.route_layer(axum::Extension(access::Principal::Local)),
    };
    open.merge(closed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(crate::MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    ApiError::not_found("NOT_FOUND", "no such path")
}

async fn api_docs() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(crate::openapi::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once() {
        let doc = crate::openapi::openapi();
        let mut seen = std::collections::HashSet::new();
        for route in routes() {
            assert!(seen.insert((route.method, route.path)), "duplicate route {route:?}");
            let operation = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
            assert!(
                operation.is_object(),
                "{} {} missing from the document",
                route.method,
                route.path
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .map(|p| p.values().map(|m| m.as_object().map_or(0, |m| m.len())).sum())
            .unwrap_or(0);
        assert_eq!(documented, seen.len());
    }
}
