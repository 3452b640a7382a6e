//! Configuration: `etc/portico.toml` plus `PORTICO_*` environment overrides (being written).
