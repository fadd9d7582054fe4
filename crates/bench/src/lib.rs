//! `conclave-bench`: a load generator that drives a running Conclave over its public HTTP
//! API and WebSocket only, as clients do, and reports throughput, send and delivery
//! latency, errors, the server's memory and CPU, and whether every acknowledged message
//! reached every member exactly once.
//!
//! Modules: [`conclave`] (the client side of Conclave's API), [`matrix`] (the same for a
//! Matrix homeserver such as Synapse, for side-by-side runs), [`run`] (scenarios and the
//! measured run), [`ledger`] (the exactly-once check), [`report`] (figures, table, JSON),
//! [`procfs`] (the server's memory and CPU from `/proc`).

pub mod conclave;
pub mod error;
pub mod ledger;
pub mod matrix;
pub mod procfs;
pub mod report;
pub mod run;

pub use error::BenchError;
pub use report::Report;
pub use run::{Plan, Scenario, System, Target, run};
