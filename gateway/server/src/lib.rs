//! The Portico gateway: configuration loading, wiring of frontends and listeners.

pub mod config;
