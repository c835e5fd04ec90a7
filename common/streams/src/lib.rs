//! The stream core every stateful stream service shares (Time Series Aggregator, Data
//! Deduplication, Data Quality Monitor): pure, synchronous logic, no I/O, no actors.
//!
//! - `duration.rs`: `"30s"`, `"1m"`, `"1d"` in specs.
//! - `time.rs`: event time from a JSON pointer or the record timestamp; unusable times are errors
//!   with a reason (dead letters), never dropped.
//! - `watermark.rs`: per-partition and per-key watermarks, combined over active members, idle
//!   members excluded after `idle_timeout`.
//! - `window.rs`: tumbling, hopping and session assigners; calendar alignment in a time zone.
//! - `aggregate.rs`: mergeable aggregate states (Welford moments, HyperLogLog++, DDSketch).
//! - `engine.rs`: keyed window state of one partition, firing, late data, budgets, checkpoints.
//!
//! Services own the I/O around it: where events come from, where emissions and late records go,
//! and where snapshots are stored together with the consumed offsets.

pub mod aggregate;
pub mod duration;
pub mod engine;
pub mod pointer;
pub mod time;
pub mod watermark;
pub mod window;

pub use aggregate::{AggFn, AggState, Input};
pub use engine::{Emission, Emit, Engine, EngineSpec, Event, Late, Rejected, Snapshot};
pub use window::{Window, WindowKind, WindowSpec};
/// The sketch crates, for services that keep their own mergeable sketches.
pub use {hyperloglogplus, sketches_ddsketch};
