//! File Processing — port 8021 (issue #18): uploads on object storage, content-addressed, and
//! jobs that derive thumbnails and metadata from them, idempotently and shared by every node
//! on the same store.
//!
//! - `sniff.rs`: the media type from the bytes, and a declared type that contradicts it (pure).
//! - `html.rs`: the text, title, language and encoding of an HTML document (pure).
//! - `ops.rs`: operations parsed strictly into canonical form; the derivation key (pure).
//! - `imaging.rs`: decoding under `image::Limits`, orientation, thumbnails, encoding, EXIF
//!   metadata (synchronous, run in blocking tasks).
//! - `store.rs`: files, derivations and job records on the object store; streaming uploads.
//! - `tools.rs`: ffmpeg/ffprobe and poppler as child processes (deadline, bounded output,
//!   killed with their job); `media.rs`: probing, frames, audio conversion and chunking, PDF
//!   info/text/page through them; `probe.rs`: pure readings of what the tools print.
//! - `jobs.rs`: submission, the worker actors, cancellation, the live job view, and which
//!   operation applies to which media.
//! - `kafka.rs`: the bridge from `files.uploaded` requests to `files.processed` results.
//! - `api.rs`: the routes; `error.rs`; `metrics.rs`.
//!
//! ```text
//! files supervisor
//! ├── core
//! ├── worker-0 … worker-N   (Worker: one job at a time; the decode runs in a blocking task,
//! │                          tools as child processes, all under files.job_timeout)
//! └── kafka-consumer        (with files.topics: the group member, a partition actor each)
//! ```

mod api;
pub mod error;
pub mod html;
pub mod imaging;
mod jobs;
mod kafka;
mod media;
mod metrics;
pub mod ops;
pub mod probe;
pub mod sniff;
mod store;
mod tools;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts, actor_child};

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::ObjectStore],
        cluster_wide: api::cluster_wide,
        state_in: Dependency::ObjectStore,
        max_body: |c| Some(usize::try_from(c.files.max_upload).unwrap_or(usize::MAX).max(c.http.body_limit_bytes)),
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::FileProcessing, env!("CARGO_PKG_VERSION"))
    }
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    metrics::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let f = &ctx.config.files;
    tools::set_tool_memory(f.tool_memory);
    tools::set_no_progress(f.no_progress_timeout.get());
    let limits = imaging::Limits { max_dimension: f.max_image_dimension, max_alloc: f.max_image_alloc };
    let store = store::FileStore::new(ctx.stores.objects.clone());
    let shared = Arc::new(jobs::Shared::new(
        store.clone(),
        limits,
        f.job_timeout.get(),
        ctx.node.name.clone(),
        ctx.config.node.data_dir.join("files-scratch"),
        f.queue,
        f.quarantine_after,
    ));
    let mut children = parts.children;
    let mut workers = Vec::with_capacity(f.workers);
    for i in 0..f.workers {
        let shared = shared.clone();
        let (handle, spec) =
            actor_child(ctx, &format!("worker-{i}"), move |mailbox| (jobs::Worker { mailbox }, shared.clone()));
        workers.push(handle);
        children.push(spec);
    }
    let objects = &ctx.config.storage.objects;
    let bucket =
        (objects.backend == loom_config::ObjectBackend::S3).then(|| objects.bucket.clone().unwrap_or_default());
    let api = api::Api { store, jobs: jobs::Jobs::new(shared, workers), max_upload: f.max_upload, limits, bucket };
    let (children, probes) = bridge(ctx, &api, children);
    let routes = parts.routes.merge(api::routes(api, ctx.config.http.body_limit_bytes));
    ServiceParts { children, routes, probes, ..parts }
}

/// With `kafka.brokers` and `files.topics` set: a supervised consumer-group member turning
/// requests into jobs, and the `kafka:reachable` readiness probe.
fn bridge(
    ctx: &ServiceContext,
    api: &api::Api,
    mut children: Vec<loom_supervisors::ChildSpec>,
) -> (Vec<loom_supervisors::ChildSpec>, Vec<loom_service::Probe>) {
    let config = &ctx.config;
    let Some(topics) = config.files.topics.clone().filter(|_| config.kafka.enabled()) else {
        return (children, Vec::new());
    };
    let Some(producer) = loom_kafka::service::bridge_producer(&config.kafka, ServiceId::FileProcessing.name()) else {
        return (children, Vec::new());
    };
    let processor = kafka::UploadedProcessor {
        api: api.clone(),
        producer: producer.clone(),
        processed: topics.processed.clone(),
        wait: config.files.job_timeout.get() * 2 + std::time::Duration::from_secs(30),
    };
    let group = config.files.group.clone();
    let (child, probe) =
        loom_kafka::service::bridge(ctx, group, vec![topics.uploaded.clone()], Arc::new(processor), producer);
    children.push(child);
    (children, vec![probe])
}
