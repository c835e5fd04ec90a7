//! Supervision for Loom's actor trees.
//!
//! ```text
//! root supervisor ("node")
//! ├── schema-registry supervisor ── core, …
//! ├── privacy-filter supervisor  ── core, …
//! ├── …                          (one per enabled service, in start order)
//! └── data-quality supervisor    ── core, …
//! ```
//!
//! Every child has a [`RestartPolicy`] (a budget of restarts within a window, exponential
//! backoff). A child that panics, errors or stops unexpectedly is restarted after its backoff;
//! when its budget is spent the supervisor stops its other children and fails, which hands the
//! problem to its own parent (escalation). The [`StatusBoard`] records every child's state and
//! restart count for `/health`, `/ready` and metrics. Shutdown stops children in reverse start
//! order, each subtree bottom-up.

mod board;
mod policy;
mod supervisor;

pub use board::{ChildState, ChildStatus, StatusBoard};
pub use policy::{Decision, RestartBudget, RestartPolicy};
pub use supervisor::{ChildSpec, StartFn, Supervisor, SupervisorArgs, SupervisorMsg};

#[cfg(test)]
mod tests;
