//! ao-http
