//! The properties the fuzz targets check, here so that the test suite replays the fuzz seeds
//! with exactly the same checks.
