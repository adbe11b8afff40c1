//! Integration tests: a real server on a free port, a real HTTP client.

mod bad_input;
mod basics;
mod support;
