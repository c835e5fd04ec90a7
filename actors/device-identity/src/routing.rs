//! Device writes go to the owner of their key through the cluster's keyed calls, and take turns
//! there (`locks.rs`), so concurrent writers of one device serialize on one node instead of racing
//! through the shared database. A node that is not clustered owns every key and calls itself
//! through the same path. Keys:
//!
//! - registration: `register/<tenant>/<strongest identifier>/<its keyed hash>` (or the
//!   fingerprint when there is no identifier) — what two registrations of one device share;
//! - metadata/subject updates and deletion: the device id;
//! - links and unlinks: the smallest device id of the link.
//!
//! Requests carry keyed hashes, never raw identifiers. Reads answer from the database on any node.

use loom_cluster::{Cluster, Keyed, Served};
use loom_protocol::ServiceId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::devices::{Devices, SubjectChange};
use crate::error::DeviceError;
use crate::locks::KeyLocks;
use crate::register::{Prepared, Registered};

/// A write, as it travels to the key's owner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Register(Prepared),
    Update { id: String, metadata: Map<String, Value>, subject: SubjectChange },
    Delete { id: String },
    Link { ids: Vec<String>, confidence: f64, evidence: Value, shared: Vec<(String, String)> },
    Unlink { a: String, b: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Registered(Registered),
    Value(Value),
    Done,
}

/// The typed client of this service's keyed writes.
#[derive(Clone)]
pub struct Writes {
    client: Keyed<Request, Reply>,
}

/// Serves this node's share of the keys and returns the client that routes every write.
pub fn serve(cluster: &Cluster, devices: Devices) -> Writes {
    let locks = KeyLocks::default();
    let client = cluster.serve_keyed(ServiceId::DeviceIdentity, move |key: String, req: Request| {
        let (devices, locks) = (devices.clone(), locks.clone());
        async move {
            let _turn = locks.lock(&key).await;
            apply(&devices, req).await.map_err(|e| e.to_wire())
        }
    });
    Writes { client }
}

async fn apply(d: &Devices, req: Request) -> Result<Reply, DeviceError> {
    Ok(match req {
        Request::Register(p) => Reply::Registered(d.commit(p).await?),
        Request::Update { id, metadata, subject } => Reply::Value(d.update(&id, metadata, subject).await?),
        Request::Delete { id } => {
            d.delete(&id).await?;
            Reply::Done
        }
        Request::Link { ids, confidence, evidence, shared } => {
            Reply::Value(d.link(&ids, confidence, &evidence, &shared).await?)
        }
        Request::Unlink { a, b } => {
            d.unlink(&a, &b).await?;
            Reply::Done
        }
    })
}

/// The key a link (or unlink) is routed by: its smallest device id.
pub fn link_key(ids: &[String]) -> String {
    ids.iter().min().cloned().unwrap_or_default()
}

impl Writes {
    /// Runs `req` on the owner of `key`; the reply names the node that served it.
    pub async fn call(&self, key: &str, req: Request) -> Result<Served<Reply>, DeviceError> {
        self.client.call(key, req).await.map_err(DeviceError::from_call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_route_by_their_smallest_device_whatever_the_order() {
        let a = "0191e0c1-0000-7000-8000-00000000000a".to_owned();
        let b = "0191e0c1-0000-7000-8000-00000000000b".to_owned();
        let c = "0191e0c1-0000-7000-8000-00000000000c".to_owned();
        let cases = [
            (vec![a.clone(), b.clone()], &a),
            (vec![b.clone(), a.clone()], &a),
            (vec![c.clone(), b.clone()], &b),
            (vec![c.clone(), a.clone(), b.clone()], &a),
        ];
        for (ids, want) in cases {
            assert_eq!(&link_key(&ids), want, "{ids:?}");
        }
    }

    #[test]
    fn requests_survive_the_wire_encoding() {
        let req = Request::Update { id: "d".into(), metadata: Map::new(), subject: SubjectChange::Set("ab12".into()) };
        let bytes = loom_cluster::wire::encode_call(ServiceId::DeviceIdentity, "", "d", &req).unwrap();
        let incoming = loom_cluster::wire::decode_call(&bytes).unwrap();
        let back: Request = loom_cluster::wire::decode_body(incoming.body).unwrap();
        match back {
            Request::Update { subject, .. } => assert_eq!(subject, SubjectChange::Set("ab12".into())),
            other => panic!("{other:?}"),
        }
        for change in [SubjectChange::Keep, SubjectChange::Clear] {
            let text = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<SubjectChange>(&text).unwrap(), change);
        }
    }
}
