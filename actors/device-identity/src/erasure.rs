//! The GDPR erasure hook (contract in `loom_protocol::erasure`): served as the cluster endpoint
//! `gdpr.erasure` of this service, keyed by the subject id, and called by the Privacy Filter's
//! erasure jobs through `Cluster::client` (operators: `POST /admin/erasure`). It erases every
//! device of the subject — the device row with its fingerprint, features and metadata, its
//! identifier hashes, its links, its shared identifier associations and its subject record — and
//! reports counts per kind. A second run finds nothing and reports zeros. Logs carry the job id
//! and counts, never the subject id.

use loom_cluster::{Cluster, Keyed};
use loom_protocol::ServiceId;
use loom_protocol::erasure::{ERASURE_ENDPOINT, ErasedItem, ErasureReport, ErasureRequest};

use crate::devices::{Devices, now_ms};
use crate::error::DeviceError;

pub type ErasureClient = Keyed<ErasureRequest, ErasureReport>;

/// Kinds reported, in this order, always all of them (zeros included).
const KINDS: [&str; 6] = ["devices", "links", "identifier_hashes", "shared_identifiers", "fingerprints", "metadata"];

/// Serves the erasure endpoint on this node and returns its client.
pub fn serve(cluster: &Cluster, devices: Devices) -> ErasureClient {
    cluster.serve_endpoint(ServiceId::DeviceIdentity, ERASURE_ENDPOINT, move |_key: String, req: ErasureRequest| {
        let devices = devices.clone();
        async move { devices.erase(&req).await.map_err(|e| e.to_wire()) }
    })
}

impl Devices {
    /// Erases every device of the request's subject, in its tenant or, without one, in every
    /// tenant (the subject hash is per tenant, so each is looked up).
    pub async fn erase(&self, req: &ErasureRequest) -> Result<ErasureReport, DeviceError> {
        if req.subject_id.is_empty() || req.subject_id.len() > 256 {
            return Err(DeviceError::Invalid("`subject_id` must be 1 to 256 characters".into()));
        }
        let master = self.master()?;
        let tenants = match &req.tenant {
            Some(t) => vec![t.clone()],
            None => self.store.subject_tenants().await?,
        };
        let mut counts = [0u64; KINDS.len()];
        for tenant in &tenants {
            let hash = master.subject_hash(tenant, &req.subject_id);
            for id in self.store.devices_of_subject(tenant, &hash).await? {
                let removed = self.store.delete_device(&id).await?;
                let Some(device) = removed.device else {
                    // A subject row without its device (a delete raced): the row is gone now.
                    continue;
                };
                counts[0] += 1;
                counts[1] += removed.links;
                counts[2] += removed.identifiers;
                counts[3] += removed.shared;
                counts[4] += u64::from(!device.fingerprint.is_empty());
                counts[5] += u64::from(device.metadata != "{}" && !device.metadata.is_empty());
            }
        }
        tracing::info!(job_id = %req.job_id, devices = counts[0], links = counts[1], "subject erased from device identity");
        Ok(ErasureReport {
            service: ServiceId::DeviceIdentity.name().to_owned(),
            erased: KINDS
                .iter()
                .zip(counts)
                .map(|(kind, count)| ErasedItem { kind: (*kind).to_owned(), count })
                .collect(),
            finished_ms: now_ms(),
        })
    }
}
