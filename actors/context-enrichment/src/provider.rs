//! The weather actor: one per node, the only caller of the provider. Requests reach it only for
//! (cell, hour) keys the cache did not have; it looks in the cache again first — a request that
//! waited behind another for the same key finds it there, so concurrent lookups of one cell and
//! hour cost one provider call — then asks the provider for the rest, batched per (API, hour)
//! up to 50 coordinates per call, one call at a time (Open-Meteo's free tier allows one at a
//! time per IP and 600 a minute: the rate budget). Each call has a timeout and retries with
//! exponential backoff and jitter; consecutive failures open the circuit breaker, and while it
//! is open, the budget is spent or the provider answers garbage, the keys are answered
//! `unavailable` with the reason — the events are still enriched, never failed or blocked.
//! Observations are cached (Redis when configured, else in-process): 1 h for recent and coming
//! hours, 24 h for hours older than 2 h.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loom_service::Mailbox;
use loom_storage::Cache;
use loom_storage::documents::now_ms;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use crate::weather::{self, Api, Breaker, Budget, Key, Observation};

/// A key's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Found {
        obs: Observation,
        cached: bool,
    },
    /// The provider had no data for that hour.
    NoData,
    /// `provider_down`, `circuit_open`, `over_budget`, `invalid_response`, `not_configured`, `busy`.
    Unavailable(&'static str),
}

#[derive(RactorMessage)]
pub enum WeatherMsg {
    Fetch { keys: Vec<Key>, reply: RpcReplyPort<Vec<(Key, Outcome)>> },
}

/// The provider seen from the actor: one HTTP GET of a path and query.
#[ractor::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `Ok(body)` for a 2xx answer; `Err(true)` for a failure worth retrying (timeout, 5xx,
    /// 429, connection), `Err(false)` for one that is not (other 4xx).
    async fn get(&self, api: Api, path_and_query: &str) -> Result<Vec<u8>, bool>;
}

/// Open-Meteo over HTTP (or any server speaking its API at the configured bases).
pub struct OpenMeteo {
    pub client: reqwest::Client,
    pub forecast: String,
    pub archive: String,
}

#[ractor::async_trait]
impl Provider for OpenMeteo {
    async fn get(&self, api: Api, path_and_query: &str) -> Result<Vec<u8>, bool> {
        let base = match api {
            Api::Forecast => &self.forecast,
            Api::Archive => &self.archive,
        };
        let resp = self
            .client
            .get(format!("{}{path_and_query}", base.trim_end_matches('/')))
            .send()
            .await
            .map_err(|_| true)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status.is_server_error() || status.as_u16() == 429);
        }
        resp.bytes().await.map(|b| b.to_vec()).map_err(|_| true)
    }
}

#[derive(Debug, Default)]
pub struct WeatherStats {
    pub provider_calls: AtomicU64,
    pub provider_failures: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub coalesced: AtomicU64,
    pub unavailable: AtomicU64,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker: AtomicU64,
}

impl WeatherStats {
    pub fn breaker_name(&self) -> &'static str {
        ["closed", "open", "half_open"][self.breaker.load(Ordering::Relaxed).min(2) as usize]
    }
}

pub struct WeatherActor {
    pub mailbox: Arc<Mailbox>,
}

#[derive(Clone)]
pub struct WeatherDeps {
    pub provider: Option<Arc<dyn Provider>>,
    pub cache: Cache,
    pub timeout: Duration,
    pub retries: u32,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub budget_per_minute: u32,
    pub stats: Arc<WeatherStats>,
}

pub struct WeatherState {
    deps: WeatherDeps,
    breaker: Breaker,
    budget: Budget,
    seed: u64,
}

/// Cache time of an observation of the hour `hour_ms`.
pub fn ttl(hour_ms: i64, now_ms: i64) -> Duration {
    if hour_ms < now_ms - 2 * 3_600_000 { Duration::from_secs(86_400) } else { Duration::from_secs(3_600) }
}

/// Cached entries: an observation, or `null` for "the provider has no data".
pub fn decode(bytes: &[u8]) -> Option<Outcome> {
    match serde_json::from_slice::<Option<Observation>>(bytes).ok()? {
        Some(obs) => Some(Outcome::Found { obs, cached: true }),
        None => Some(Outcome::NoData),
    }
}

#[ractor::async_trait]
impl Actor for WeatherActor {
    type Msg = WeatherMsg;
    type State = WeatherState;
    type Arguments = WeatherDeps;

    async fn pre_start(&self, _: ActorRef<WeatherMsg>, deps: WeatherDeps) -> Result<WeatherState, ActorProcessingErr> {
        let breaker = Breaker::new(deps.breaker_failures, deps.breaker_cooldown);
        let budget = Budget::new(deps.budget_per_minute, now_ms());
        Ok(WeatherState { deps, breaker, budget, seed: now_ms() as u64 | 1 })
    }

    async fn handle(
        &self,
        _: ActorRef<WeatherMsg>,
        msg: WeatherMsg,
        s: &mut WeatherState,
    ) -> Result<(), ActorProcessingErr> {
        let WeatherMsg::Fetch { keys, reply } = msg;
        self.mailbox.handled();
        let out = fetch(s, keys).await;
        let _ = reply.send(out);
        Ok(())
    }
}

async fn fetch(s: &mut WeatherState, keys: Vec<Key>) -> Vec<(Key, Outcome)> {
    let stats = s.deps.stats.clone();
    let mut out: BTreeMap<Key, Outcome> = BTreeMap::new();
    // A request that waited behind another for the same keys finds them cached now.
    let names: Vec<String> = keys.iter().map(Key::cache_key).collect();
    let cached = s.deps.cache.get_many(&names).await.unwrap_or_else(|_| vec![None; keys.len()]);
    let mut missing = Vec::new();
    for (k, c) in keys.into_iter().zip(cached) {
        match c.as_deref().and_then(decode) {
            Some(o) => {
                stats.coalesced.fetch_add(1, Ordering::Relaxed);
                out.insert(k, o);
            }
            None => missing.push(k),
        }
    }
    let Some(provider) = s.deps.provider.clone() else {
        return out
            .into_iter()
            .chain(missing.into_iter().map(|k| (k, Outcome::Unavailable("not_configured"))))
            .collect();
    };
    let now = now_ms();
    let mut groups: BTreeMap<(Api, i64), Vec<Key>> = BTreeMap::new();
    for k in missing {
        groups.entry((k.api(now), k.hour_ms)).or_default().push(k);
    }
    for ((api, _), keys) in groups {
        for chunk in keys.chunks(weather::MAX_PER_CALL) {
            let answer = call(s, provider.as_ref(), api, chunk).await;
            for (k, o) in chunk.iter().zip(answer) {
                if let Outcome::Unavailable(_) = o {
                    stats.unavailable.fetch_add(1, Ordering::Relaxed);
                } else {
                    let value = match &o {
                        Outcome::Found { obs, .. } => serde_json::to_vec(&Some(obs)).unwrap_or_default(),
                        _ => b"null".to_vec(),
                    };
                    if let Err(e) = s.deps.cache.set(&k.cache_key(), &value, ttl(k.hour_ms, now)).await {
                        tracing::warn!(error = %e, "weather cache write failed");
                    }
                }
                out.insert(*k, o);
            }
        }
    }
    stats.breaker.store(
        match s.breaker.name() {
            "open" => 1,
            "half_open" => 2,
            _ => 0,
        },
        Ordering::Relaxed,
    );
    out.into_iter().collect()
}

/// One batch through breaker, budget, timeout and retries.
async fn call(s: &mut WeatherState, provider: &dyn Provider, api: Api, keys: &[Key]) -> Vec<Outcome> {
    let all = |why: &'static str| vec![Outcome::Unavailable(why); keys.len()];
    let Some(query) = weather::request(api, keys) else { return all("invalid_request") };
    let stats = s.deps.stats.clone();
    for attempt in 0..=s.deps.retries {
        if attempt > 0 {
            s.seed = s.seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let unit = (s.seed >> 11) as f64 / (1u64 << 53) as f64;
            tokio::time::sleep(weather::backoff(attempt, unit)).await;
        }
        if !s.breaker.allow(now_ms()) {
            // Opened by this batch's own failed attempt: what we saw is the provider down.
            return all(if attempt > 0 { "provider_down" } else { "circuit_open" });
        }
        if !s.budget.take(now_ms()) {
            return all("over_budget");
        }
        stats.provider_calls.fetch_add(1, Ordering::Relaxed);
        crate::metrics::provider_call(api.source());
        let answer = tokio::time::timeout(s.deps.timeout, provider.get(api, &query)).await.unwrap_or(Err(true));
        match answer {
            Ok(body) => match weather::parse(api, keys, &body) {
                Ok(obs) => {
                    s.breaker.record(true, now_ms());
                    return obs
                        .into_iter()
                        .map(|o| o.map_or(Outcome::NoData, |obs| Outcome::Found { obs, cached: false }))
                        .collect();
                }
                Err(e) => {
                    stats.provider_failures.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::provider_failure(api.source(), "invalid_response");
                    tracing::warn!(error = %e, code = "weather_invalid_response", "weather provider answered garbage");
                    s.breaker.record(false, now_ms());
                    return all("invalid_response");
                }
            },
            Err(retry) => {
                stats.provider_failures.fetch_add(1, Ordering::Relaxed);
                crate::metrics::provider_failure(api.source(), "down");
                s.breaker.record(false, now_ms());
                if !retry {
                    return all("provider_down");
                }
            }
        }
    }
    all("provider_down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_and_lifetimes() {
        let obs = Observation {
            temperature_c: Some(2.0),
            relative_humidity_pct: None,
            precipitation_mm: Some(1.2),
            weather_code: Some(61),
            wind_speed_kmh: None,
            source: "open-meteo-forecast".into(),
        };
        let bytes = serde_json::to_vec(&Some(&obs)).unwrap();
        assert_eq!(decode(&bytes), Some(Outcome::Found { obs, cached: true }));
        assert_eq!(decode(b"null"), Some(Outcome::NoData));
        assert_eq!(decode(b"garbage"), None);
        let now = 100 * 3_600_000;
        assert_eq!(ttl(now, now), Duration::from_secs(3_600));
        assert_eq!(ttl(now - 3 * 3_600_000, now), Duration::from_secs(86_400));
    }
}
