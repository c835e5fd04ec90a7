//! Shared load driver for the bench binaries: N keep-alive HTTP clients hammer one URL for a
//! fixed time over real loopback sockets; reports requests/s and p50/p99 latency.

use std::time::{Duration, Instant};

pub struct Run {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Run {
    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<28} {:>10.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs\n",
            self.rps,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6
        )
    }
}

/// Drives `url` with `concurrency` clients for `duration`; `body` makes it a JSON POST. Every
/// response must be 200.
pub async fn drive(url: &str, body: Option<String>, concurrency: usize, duration: Duration) -> Run {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let send = |client: &reqwest::Client| {
        let req = match &body {
            Some(b) => client.post(url).header("content-type", "application/json").body(b.clone()),
            None => client.get(url),
        };
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
    };
    for _ in 0..200 {
        send(&client).await;
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let (url, body) = (url.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let req = match &body {
                    Some(b) => client.post(&url).header("content-type", "application/json").body(b.clone()),
                    None => client.get(&url),
                };
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    Run { rps: all.len() as f64 / elapsed.as_secs_f64(), p50: all[all.len() / 2], p99: all[all.len() * 99 / 100] }
}
