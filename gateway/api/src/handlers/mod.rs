//! Request handlers, one module per endpoint family.

pub(crate) mod alarms;
pub(crate) mod authn;
pub(crate) mod authz;
pub(crate) mod banned;
pub(crate) mod clients;
pub(crate) mod coap_request;
pub(crate) mod configs;
pub(crate) mod data;
pub(crate) mod gateway_config;
pub(crate) mod gateways;
pub(crate) mod lwm2m;
pub(crate) mod nodes;
pub(crate) mod prometheus;
pub(crate) mod publish;
pub(crate) mod retainer;
pub(crate) mod subscribe;
pub(crate) mod topics;
pub(crate) mod trace;
pub(crate) mod users;
