//! EMQX-compatible password hashing.
