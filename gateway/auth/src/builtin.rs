//! The built-in user database.
