//! The `conclave` server: configuration, logging, the actix-web application composed from
//! every service's routes, health checks, the OpenAPI document and its reference page, and
//! the command line (serve, migrate, config check, admin, keys, audit, retention, holds).
//!
//! Invariant: this crate composes; business rules live in the service crates, and the
//! binary's `main` only parses the command line and dispatches.

pub mod admin;
pub mod app;
pub mod cli;
pub mod compliance;
pub mod health;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod openapi;
pub mod serve;
pub mod settings;
pub mod telemetry;
pub mod tls;
pub mod web;
