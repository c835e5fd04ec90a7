//! `POST /check` on any node goes to the policy's owner (rendezvous hash of the policy id over
//! the `up` members), where one [`RestActor`] holds the `rest` part of every policy this node
//! owns and answers one request at a time. A request's verdicts are durable before it is
//! answered: the part is saved (conditionally on its sequence) after the events are recorded,
//! so a restart — or the next owner after ownership moves — continues with every key. A stale
//! save (another node wrote meanwhile) drops this copy, reloads and runs the request again.
//!
//! `"store": "redis"` policies keep their keys in Redis instead: one pipelined
//! `SET key value NX PX window GET` per request, so producers outside Loom can share the keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use loom_cluster::{Cluster, Keyed};
use loom_protocol::ServiceId;
use loom_service::{Handle, Mailbox};
use loom_storage::Cache;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::{Kind, Origin, Rule, Verdict};
use crate::error::DedupError;
use crate::part::{Part, PolicyEntry};
use crate::policy::{MissingIdentity, Policy, PolicySpec, StoreKind, Window};
use crate::stats::Stats;
use crate::store::Store;

/// Events per `/check` request.
pub const MAX_EVENTS: usize = 10_000;
pub const REST_PART: &str = "rest";

pub type Book = loom_service::book::Book<PolicySpec>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Check {
        events: Vec<Value>,
        dry_run: bool,
    },
    /// Forget every key of the policy's `rest` part (admin).
    Clear,
}

#[derive(RactorMessage)]
pub enum RestMsg {
    Run { policy: String, request: Request, reply: RpcReplyPort<Result<Value, DedupError>> },
}

pub struct RestActor {
    pub mailbox: Arc<Mailbox>,
}

#[derive(Clone)]
pub struct Deps {
    pub book: Book,
    pub store: Store,
    pub stats: Stats,
    /// Set when `LOOM_REDIS_URL` is: the shared cache that `"store": "redis"` uses.
    pub redis: Option<Cache>,
}

pub struct RestState {
    deps: Deps,
    parts: HashMap<String, Part>,
}

#[ractor::async_trait]
impl Actor for RestActor {
    type Msg = RestMsg;
    type State = RestState;
    type Arguments = Deps;

    async fn pre_start(&self, _: ActorRef<RestMsg>, deps: Deps) -> Result<RestState, ActorProcessingErr> {
        Ok(RestState { deps, parts: HashMap::new() })
    }

    async fn handle(
        &self,
        _: ActorRef<RestMsg>,
        msg: RestMsg,
        state: &mut RestState,
    ) -> Result<(), ActorProcessingErr> {
        let RestMsg::Run { policy, request, reply } = msg;
        self.mailbox.handled();
        let out = match request {
            Request::Check { events, dry_run } => check(state, &policy, &events, dry_run).await,
            Request::Clear => clear(state, &policy).await,
        };
        let _ = reply.send(out);
        Ok(())
    }
}

async fn entry(deps: &Deps, id: &str) -> Result<PolicyEntry, DedupError> {
    deps.book.get_fresh(id).await?.ok_or_else(|| DedupError::NotFound(format!("policy '{id}'")))
}

async fn part<'a>(state: &'a mut RestState, id: &str) -> Result<&'a mut Part, DedupError> {
    let entry = entry(&state.deps, id).await?;
    let fresh = state.parts.get(id).is_none_or(|p| p.entry.version != entry.version || p.poisoned);
    if fresh {
        let p = Part::load(&state.deps.store, entry, REST_PART).await?;
        state.parts.insert(id.to_owned(), p);
    }
    state.parts.get_mut(id).ok_or_else(|| DedupError::NotFound(format!("policy '{id}'")))
}

/// One event's answer when it cannot be checked at all.
fn refused(code: &str, message: impl Into<String>) -> Value {
    json!({"error": {"code": code, "message": message.into()}})
}

async fn check(state: &mut RestState, id: &str, events: &[Value], dry_run: bool) -> Result<Value, DedupError> {
    let policy = entry(&state.deps, id).await?;
    if policy.compiled.spec.store == StoreKind::Redis {
        return check_redis(&state.deps, &policy, events, dry_run).await;
    }
    for attempt in 0..2 {
        let stats = state.deps.stats.clone();
        let store = state.deps.store.clone();
        let p = part(state, id).await?;
        let now = loom_storage::documents::now_ms();
        let mut results = Vec::with_capacity(events.len());
        let mut counted = Vec::new();
        for v in events {
            let input = match p.policy().input(v, None, now) {
                Ok(i) => i,
                Err((code, message)) => {
                    counted.push(None);
                    results.push(refused(code, message));
                    continue;
                }
            };
            if input.key.is_none() && p.policy().spec.missing_identity == MissingIdentity::DeadLetter {
                counted.push(None);
                results.push(refused(
                    "missing_identity",
                    format!("identity field {} is missing", input.missing.as_deref().unwrap_or("?")),
                ));
                continue;
            }
            let seq = p.engine.records() + 1;
            let origin = Origin::Id { id: input.event_id.clone().unwrap_or_else(|| format!("#{seq}")) };
            let out = p.engine.check(&input, origin, None, !dry_run);
            let verdict = out.verdict.unwrap_or_else(unique_fallback);
            counted.push(Some((verdict.clone(), out.compared)));
            results.push(serde_json::to_value(&verdict).unwrap_or_default());
        }
        if !dry_run {
            match p.save(&store).await {
                Ok(()) => {}
                Err(DedupError::Conflict(_)) if attempt == 0 => {
                    tracing::info!(policy = id, "the rest part moved meanwhile; reloading and checking again");
                    state.parts.remove(id);
                    continue;
                }
                Err(e) => {
                    state.parts.remove(id);
                    return Err(e);
                }
            }
        }
        if !dry_run {
            let mut dead = 0;
            for c in &counted {
                match c {
                    Some((v, compared)) => stats.verdict(id, REST_PART, v, *compared),
                    None => dead += 1,
                }
            }
            if dead > 0 {
                stats.dead_lettered(id, REST_PART, dead);
            }
            stats.state(id, REST_PART, p.engine.stats());
        }
        return Ok(json!({"policy": id, "version": p.entry.version, "dry_run": dry_run, "results": results}));
    }
    Err(DedupError::Conflict("the policy's state is being written by another node; retry".into()))
}

fn unique_fallback() -> Verdict {
    Verdict { verdict: Kind::Unique, rule: Rule::Exact, score: None, of: None, first_seen_ms: None }
}

/// What a Redis key holds: where and when its identity was first seen.
#[derive(Serialize, Deserialize)]
struct RedisSeen {
    #[serde(with = "crate::engine::shown")]
    of: Option<Origin>,
    first_seen_ms: i64,
}

pub fn redis_key(policy: &str, key: u128) -> String {
    format!("loom:dedup:{policy}:{key:032x}")
}

async fn check_redis(deps: &Deps, policy: &PolicyEntry, events: &[Value], dry_run: bool) -> Result<Value, DedupError> {
    let cache = deps.redis.as_ref().ok_or(DedupError::RedisOff)?;
    let p: &Policy = &policy.compiled;
    let id = p.id();
    let Window::Time(window_ms) = p.window else { return Err(DedupError::RedisOff) };
    let now = loom_storage::documents::now_ms();
    let mut results: Vec<Option<Value>> = Vec::with_capacity(events.len());
    let mut asks: Vec<(usize, String, Vec<u8>, i64)> = Vec::new();
    for (i, v) in events.iter().enumerate() {
        match p.input(v, None, now) {
            Err((code, message)) => results.push(Some(refused(code, message))),
            Ok(input) => match input.key {
                None if p.spec.missing_identity == MissingIdentity::DeadLetter => {
                    results.push(Some(refused("missing_identity", "an identity field is missing")));
                }
                None => {
                    let v = Verdict { rule: Rule::NoIdentity, ..unique_fallback() };
                    if !dry_run {
                        deps.stats.verdict(id, "redis", &v, 0);
                    }
                    results.push(Some(serde_json::to_value(v).unwrap_or_default()));
                }
                Some(key) => {
                    let origin = Origin::Id { id: input.event_id.clone().unwrap_or_else(|| format!("{now}#{i}")) };
                    let seen = RedisSeen { of: Some(origin), first_seen_ms: input.ts };
                    asks.push((i, redis_key(id, key), serde_json::to_vec(&seen).unwrap_or_default(), input.ts));
                    results.push(None);
                }
            },
        }
    }
    // A key repeated within this request: the first occurrence decides, later ones see it.
    let answers = if dry_run {
        cache.get_many(&asks.iter().map(|a| a.1.clone()).collect::<Vec<_>>()).await
    } else {
        let entries: Vec<(String, Vec<u8>)> = asks.iter().map(|a| (a.1.clone(), a.2.clone())).collect();
        cache.set_if_absent_many(&entries, Duration::from_millis(window_ms.max(1) as u64)).await
    }
    .map_err(DedupError::Redis)?;
    let mut in_request: HashMap<&str, &[u8]> = HashMap::new();
    for ((i, key, value, _), answer) in asks.iter().zip(answers) {
        let previous = answer.or_else(|| dry_run.then(|| in_request.get(key.as_str()).map(|v| v.to_vec())).flatten());
        let verdict = match previous.and_then(|b| serde_json::from_slice::<RedisSeen>(&b).ok()) {
            Some(seen) => Verdict {
                verdict: Kind::Duplicate,
                rule: Rule::Exact,
                score: None,
                of: seen.of,
                first_seen_ms: Some(seen.first_seen_ms),
            },
            None => unique_fallback(),
        };
        in_request.entry(key.as_str()).or_insert(value.as_slice());
        if !dry_run {
            deps.stats.verdict(id, "redis", &verdict, 0);
        }
        results[*i] = Some(serde_json::to_value(verdict).unwrap_or_default());
    }
    let results: Vec<Value> = results.into_iter().map(Option::unwrap_or_default).collect();
    Ok(json!({"policy": id, "version": policy.version, "dry_run": dry_run, "results": results}))
}

async fn clear(state: &mut RestState, id: &str) -> Result<Value, DedupError> {
    let policy = entry(&state.deps, id).await?;
    if policy.compiled.spec.store == StoreKind::Redis {
        let cache = state.deps.redis.as_ref().ok_or(DedupError::RedisOff)?;
        let n = cache.delete_prefix(&format!("loom:dedup:{id}:")).await.map_err(DedupError::Redis)?;
        return Ok(json!({"policy": id, "forgotten_keys": n}));
    }
    let store = state.deps.store.clone();
    let p = part(state, id).await?;
    let n = p.engine.stats().keys;
    p.engine.clear();
    let saved = p.save(&store).await;
    if saved.is_err() {
        state.parts.remove(id);
    }
    saved?;
    state.deps.stats.drop_state(id, REST_PART);
    Ok(json!({"policy": id, "forgotten_keys": n}))
}

/// The typed client of `/check`: every call runs on the policy's owner.
#[derive(Clone)]
pub struct Checker {
    client: Keyed<Request, Value>,
}

/// Serves this node's share of the policies' `/check` through `actor` and returns the client.
pub fn serve(cluster: &Cluster, actor: Handle<RestMsg>, timeout: Duration) -> Checker {
    let client = cluster.serve_keyed(ServiceId::Dedup, move |policy: String, request: Request| {
        let actor = actor.clone();
        async move {
            let out = actor
                .call(|reply| RestMsg::Run { policy, request, reply }, timeout)
                .await
                .map_err(|e| DedupError::from(e).to_wire())?;
            out.map_err(|e| e.to_wire())
        }
    });
    Checker { client }
}

impl Checker {
    pub async fn call(&self, policy: &str, request: Request) -> Result<Value, DedupError> {
        self.client.call(policy, request).await.map(|s| s.value).map_err(DedupError::from_call)
    }
}
