//! Request handlers, one module per endpoint family.

pub(crate) mod clients;
pub(crate) mod gateways;
pub(crate) mod nodes;
pub(crate) mod prometheus;
pub(crate) mod publish;
