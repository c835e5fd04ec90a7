//! File Processing's Prometheus series.

pub const UPLOADS: &str = "loom_files_uploads_total";
pub const UPLOAD_BYTES: &str = "loom_files_upload_bytes_total";
pub const JOBS: &str = "loom_files_jobs_total";
pub const JOB_SECONDS: &str = "loom_files_job_duration_seconds";
pub const DERIVATIONS_REUSED: &str = "loom_files_derivations_reused_total";
pub const QUARANTINED: &str = "loom_files_quarantined_total";
pub const NO_PROGRESS: &str = "loom_files_tool_stalls_total";

pub fn describe() {
    metrics::describe_counter!(UPLOADS, "Uploads stored, by outcome (new, known).");
    metrics::describe_counter!(UPLOAD_BYTES, "Bytes received in uploads.");
    metrics::describe_counter!(JOBS, "Jobs that ended, by operation and final state.");
    metrics::describe_counter!(
        NO_PROGRESS,
        "ffmpeg runs killed for reporting no progress within files.no_progress_timeout."
    );
    metrics::describe_histogram!(JOB_SECONDS, "Time a job's work took, by operation.");
    metrics::describe_counter!(DERIVATIONS_REUSED, "Jobs answered from a stored derivation, by operation.");
    metrics::describe_counter!(QUARANTINED, "Files quarantined after repeated parser crashes or timeouts.");
}
