//! GDPR erasure jobs. `POST /gdpr/erasure {"subject_id"}` creates (or returns the open) job of
//! a subject; its runner walks the participants — this service (the subject's keys: crypto-
//! shredding of its pseudonyms and encrypted tokens; its pseudonym numbers; its audit rows) and
//! every other service that holds subject-linked data through the cluster contract in
//! `loom_protocol::erasure` (today: Device Identity) — retrying each until it reports, and ends
//! with a receipt of what was erased where and when.
//!
//! Resumable: the job is a row in `pf_erasure` with per-participant status, saved after every
//! step; a restarted node claims its own running jobs, and any node claims a job whose owner has
//! not heartbeaten for [`STALE_MS`]. Participants are idempotent, so re-running a step after a
//! crash only reports zeros. The subject id is needed to call participants, so the running job
//! keeps it encrypted under the global key; it is wiped when the job ends (the receipt names
//! the subject by its keyed index only).

use std::sync::Arc;
use std::time::Duration;

use loom_protocol::{ERASURE_ENDPOINT, ErasedItem, ErasureReport, ErasureRequest, ServiceId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::crypto::parse_token;
use crate::error::FilterError;
use crate::keys::{GLOBAL, KEYS_TOPIC, KeyRing, Lookup, PseudonymCache, subject_scope};
use crate::store::{Store, erasure, now_ms};

pub const STALE_MS: i64 = 30_000;
/// Longest subject id (as Device Identity accepts).
pub const MAX_SUBJECT_ID: usize = 256;
/// Services other than this one that hold subject-linked data.
const REMOTE_PARTICIPANTS: [ServiceId; 1] = [ServiceId::DeviceIdentity];
const RETRY: [Duration; 4] =
    [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(5)];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub service: String,
    /// `pending`, `waiting` (failed or its owner away: retried), `done`, `skipped` (no member
    /// hosted the service when the job was created), `failed` (the participant refused the
    /// request: the job ends `failed`, with the reason in the receipt).
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ErasureReport>,
}

/// What a job row keeps in `participants`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobState {
    /// The subject id under the global key while the job runs; `None` once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<String>,
    pub participants: Vec<Participant>,
}

pub fn view(row: &erasure::Model) -> Value {
    let state: JobState = serde_json::from_str(&row.participants).unwrap_or_default();
    let mut out = json!({
        "id": row.id,
        "state": row.state,
        "subject_index": row.subject,
        "node": row.node,
        "created_ms": row.created_ms,
        "finished_ms": row.finished_ms,
        "participants": state.participants,
    });
    if row.state == "completed" || row.state == "failed" {
        out["receipt"] = json!({
            "job_id": row.id,
            "subject_index": row.subject,
            "completed_ms": row.finished_ms,
            "erased": state.participants.iter().map(|p| json!({
                "service": p.service,
                "outcome": p.state,
                "items": p.report.as_ref().map(|r| r.erased.clone()).unwrap_or_default(),
                "finished_ms": p.report.as_ref().map(|r| r.finished_ms),
                "reason": p.last_error,
            })).collect::<Vec<_>>(),
        });
    }
    out
}

#[derive(Clone)]
pub struct Erasures {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub pseudonyms: Arc<PseudonymCache>,
    pub cluster: loom_cluster::Cluster,
    pub node: String,
    /// Jobs running in this process (so the resume loop restarts only abandoned ones).
    pub running: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Remote failure codes that retrying will not fix: the participant refused the request.
fn permanent(code: &str) -> bool {
    code.starts_with("invalid") || matches!(code, "undecodable_request" | "unknown_service" | "unsupported_version")
}

impl Erasures {
    /// Creates the subject's job, or returns its open one (idempotent). `true` when created.
    pub async fn create(&self, subject_id: &str) -> Result<(erasure::Model, bool), FilterError> {
        if subject_id.is_empty() || subject_id.len() > MAX_SUBJECT_ID {
            return Err(FilterError::Invalid(format!("subject_id must be 1-{MAX_SUBJECT_ID} bytes")));
        }
        let index = self.keys.subject_index(subject_id).await?;
        if let Some(open) = self.store.open_erasure_of(&index).await? {
            return Ok((open, false));
        }
        let global = self.keys.current(GLOBAL).await?;
        let token = global
            .material
            .encrypt(global.id, "SUBJECT_ID", subject_id)
            .map_err(|e| FilterError::Invalid(format!("subject_id: {e}")))?;
        let mut participants = vec![Participant {
            service: ServiceId::PrivacyFilter.name().into(),
            state: "pending".into(),
            attempts: 0,
            last_error: None,
            report: None,
        }];
        // The deployment as this node knows it now (members up or not): a participant hosted by a
        // member that is away is waited for; one the cluster does not host at all is skipped.
        let view = self.cluster.view();
        participants.extend(REMOTE_PARTICIPANTS.iter().map(|s| {
            let hosted = view.members.iter().any(|m| m.services.contains(s));
            Participant {
                service: s.name().into(),
                state: if hosted { "pending" } else { "skipped" }.into(),
                attempts: 0,
                last_error: (!hosted).then(|| format!("no member of the cluster hosted {s} when the job was created")),
                report: None,
            }
        }));
        let state = JobState { subject_token: Some(token), participants };
        let now = now_ms();
        let row = erasure::Model {
            id: uuid::Uuid::now_v7().to_string(),
            subject: index,
            state: "running".into(),
            participants: serde_json::to_string(&state).unwrap_or_default(),
            node: self.node.clone(),
            heartbeat_ms: now,
            created_ms: now,
            finished_ms: None,
        };
        self.store.insert_erasure(row.clone()).await?;
        let mut claimed = false;
        for _ in 0..3 {
            if self.store.claim_subject(&row.subject, &row.id).await? {
                claimed = true;
                break;
            }
            // Another request opened the subject's job at the same moment: that one stands,
            // unless it has ended meanwhile (then the subject is free again: claim once more).
            if let Some(open) = self.store.open_erasure_of(&row.subject).await? {
                self.store.delete_erasure(&row.id).await?;
                return Ok((open, false));
            }
        }
        if !claimed {
            self.store.delete_erasure(&row.id).await?;
            return Err(FilterError::Conflict("the subject's erasure jobs kept changing; retry".into()));
        }
        tracing::info!(job = %row.id, "GDPR erasure job created");
        tokio::spawn(self.clone().run(row.clone()));
        Ok((row, true))
    }

    /// Every 5 s: claims this node's running jobs that no task here runs (after a restart, or a
    /// runner that gave up on an error) and other nodes' jobs whose owner went silent.
    pub async fn resume_loop(self) {
        loop {
            match self.store.claim_erasures(&self.node, true, STALE_MS).await {
                Ok(jobs) => {
                    for job in jobs {
                        if self.running.lock().is_ok_and(|r| r.contains(&job.id)) {
                            continue;
                        }
                        tracing::info!(job = %job.id, "resuming GDPR erasure job");
                        tokio::spawn(self.clone().run(job));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "erasure claim failed"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    async fn run(self, row: erasure::Model) {
        let id = row.id.clone();
        if let Ok(mut r) = self.running.lock()
            && !r.insert(id.clone())
        {
            return; // already running here
        }
        // The heartbeat goes on while a step is slow, so no other node takes the job meanwhile.
        let ticker = {
            let (store, node, id) = (self.store.clone(), self.node.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let _ = store.touch_erasure(&id, &node).await;
                }
            })
        };
        match self.run_inner(row).await {
            Ok(()) => tracing::info!(job = %id, "GDPR erasure job ended"),
            Err(e) => tracing::info!(job = %id, why = %e, "GDPR erasure job paused; it will be resumed"),
        }
        ticker.abort();
        if let Ok(mut r) = self.running.lock() {
            r.remove(&id);
        }
    }

    /// Drives every participant to `done` or `skipped`; `Err` when the job is no longer ours.
    async fn run_inner(&self, row: erasure::Model) -> Result<(), String> {
        let mut state: JobState = serde_json::from_str(&row.participants).map_err(|e| e.to_string())?;
        let subject_id = self.subject_id(&state).await?;
        loop {
            let mut open = false;
            for i in 0..state.participants.len() {
                if matches!(state.participants[i].state.as_str(), "done" | "skipped" | "failed") {
                    continue;
                }
                let outcome = self.erase_with(&state.participants[i].service, &row, &subject_id).await;
                let p = &mut state.participants[i];
                p.attempts += 1;
                match outcome {
                    Step::Done(report) => {
                        p.state = "done".into();
                        p.last_error = None;
                        p.report = Some(report);
                    }
                    Step::Skipped(why) => {
                        p.state = "skipped".into();
                        p.last_error = Some(why);
                    }
                    Step::Failed(why) => {
                        p.state = "failed".into();
                        p.last_error = Some(why);
                    }
                    Step::Retry(why) => {
                        p.state = "waiting".into();
                        p.last_error = Some(why);
                        open = true;
                    }
                }
                self.save(&row.id, "running", &state, None).await?;
            }
            if !open {
                break;
            }
            let attempts = state.participants.iter().map(|p| p.attempts).max().unwrap_or(0) as usize;
            tokio::time::sleep(RETRY[attempts.saturating_sub(1).min(RETRY.len() - 1)]).await;
        }
        state.subject_token = None;
        let end = if state.participants.iter().any(|p| p.state == "failed") { "failed" } else { "completed" };
        self.save(&row.id, end, &state, Some(now_ms())).await?;
        self.store.release_subject(&row.subject, &row.id).await.map_err(|e| format!("releasing the subject: {e}"))
    }

    async fn save(&self, id: &str, job_state: &str, state: &JobState, finished: Option<i64>) -> Result<(), String> {
        let text = serde_json::to_string(state).unwrap_or_default();
        match self.store.save_erasure(id, &self.node, job_state, &text, finished).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("another node owns the job now".into()),
            Err(e) => Err(format!("saving progress: {e}")),
        }
    }

    async fn subject_id(&self, state: &JobState) -> Result<String, String> {
        let token = state.subject_token.as_deref().and_then(parse_token).ok_or("the job has no subject token")?;
        match self.keys.by_id(token.key_id).await.map_err(|e| e.to_string())? {
            Lookup::Live(key) => key.material.decrypt(&token),
            Lookup::Destroyed | Lookup::Unknown => Err("the job's subject token key is gone".into()),
        }
    }

    async fn erase_with(&self, service: &str, row: &erasure::Model, subject_id: &str) -> Step {
        if service == ServiceId::PrivacyFilter.name() {
            return match self.erase_here(&row.subject).await {
                Ok(report) => Step::Done(report),
                Err(e) => Step::Retry(e.to_string()),
            };
        }
        let Ok(id) = service.parse::<ServiceId>() else { return Step::Skipped(format!("unknown service {service}")) };
        let client = self.cluster.client::<ErasureRequest, ErasureReport>(id, ERASURE_ENDPOINT);
        let request = ErasureRequest { job_id: row.id.clone(), subject_id: subject_id.to_owned(), tenant: None };
        match client.call(subject_id, request).await {
            Ok(served) => {
                tracing::info!(job = %row.id, service, node = %served.value.service, by = %served.node, "erasure participant done");
                Step::Done(served.value)
            }
            Err(e) if permanent(e.code()) => Step::Failed(format!("{}: {e}", e.code())),
            Err(e) => Step::Retry(format!("{}: {e}", e.code())),
        }
    }

    /// This service's part: destroy the subject's keys (their tokens can no longer be decrypted),
    /// delete their pseudonym numbers and the subject's audit rows.
    pub async fn erase_here(&self, index: &str) -> Result<ErasureReport, FilterError> {
        let scope = subject_scope(index);
        let destroyed = self.keys.destroy(&scope).await?;
        let pseudonyms = self.store.delete_pseudonyms(&self.store_key_ids(&scope).await?).await?;
        let audit = self.store.delete_audit_of_subject(index).await?;
        self.pseudonyms.clear();
        self.cluster.publish(KEYS_TOPIC, b"destroyed");
        let item = |kind: &str, count: u64| ErasedItem { kind: kind.into(), count };
        Ok(ErasureReport {
            service: ServiceId::PrivacyFilter.name().into(),
            erased: vec![
                item("keys", destroyed.len() as u64),
                item("pseudonyms", pseudonyms),
                item("audit_entries", audit),
            ],
            finished_ms: now_ms(),
        })
    }

    /// The scope's destroyed keys (a subject's new key after an erasure keeps its pseudonyms).
    async fn store_key_ids(&self, scope: &str) -> Result<Vec<i64>, FilterError> {
        Ok(self.store.keys_of_scope(scope).await?.into_iter().filter(|k| k.material.is_none()).map(|k| k.id).collect())
    }
}

enum Step {
    Done(ErasureReport),
    Skipped(String),
    /// The participant refused the request; retrying will not help (shown in the receipt).
    Failed(String),
    Retry(String),
}
