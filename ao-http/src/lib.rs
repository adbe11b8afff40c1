//! # ao-http
//!
//! The HTTP front door of an AO-Core node: one catch-all warp filter turns every request into a
//! singleton message, the resolver answers it, and the result is encoded back (httpsig by
//! default, JSON when asked). Errors become responses in one place ([`ApiError`]).
//!
//! * [`handler`] — the request → singleton → resolution → response pipeline, as a plain async
//!   function ([`Node::handle`]) testable without a server.
//! * [`server`] — binding, connection limits, header-read timeouts and graceful shutdown.
//! * [`metrics`] — Prometheus text metrics, served at `/~hyperbuddy@1.0/metrics`.
//! * [`client`] — the outbound client ([`HttpClient`]): messages to peers, for `relay@1.0`,
//!   `router@1.0` and the devices that talk to other nodes.
//! * [`HttpConfig`] — limits and addresses, read from the node options.
//!
//! warp, hyper and reqwest types stay inside this crate.

pub mod address;
pub mod client;
mod config;
mod error;
pub mod handler;
pub mod hooks;
pub mod metrics;
pub mod server;

pub use client::{ClientConfig, HttpClient};
pub use config::HttpConfig;
pub use error::{ApiError, Error, Result};
pub use handler::{HttpRequest, HttpResponse, Node};
pub use server::{ServerHandle, serve};
