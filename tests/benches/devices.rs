//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=target/release/loom cargo bench
//! -p loom-tests --bench devices`): Device Identity registrations/s and link operations/s on one
//! node and across a three-node cluster (all on one PostgreSQL, as a cluster runs), side by side
//! with a plain in-memory union-find doing the same operations on the same inputs in this run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, infra};
use serde_json::{Value, json};

const CONCURRENCY: usize = 16;
const DURATION: Duration = Duration::from_secs(5);

/// Runs `op(i)` from `CONCURRENCY` tasks for `DURATION`; returns completed ops per second.
async fn rate<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + DURATION;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            while Instant::now() < deadline {
                op(next.fetch_add(1, Ordering::Relaxed)).await;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn run(urls: Vec<String>, tag: &str) -> (f64, f64, Vec<String>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
    let ids: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (c, u, collected, tag_owned) = (client.clone(), urls.clone(), ids.clone(), tag.to_owned());
    let registrations = rate(move |i| {
        let (c, url, collected) = (c.clone(), format!("{}/devices", u[i % u.len()]), collected.clone());
        let body = json!({"platform": "android", "model": "Pixel 8", "serial": format!("{tag_owned}-{i}"), "app_instance_id": format!("app-{i}")});
        async move {
            let v: Value = c.post(url).json(&body).send().await.unwrap().json().await.unwrap();
            collected.lock().unwrap().push(v["device_id"].as_str().expect("registered").to_owned());
        }
    })
    .await;
    let ids = Arc::new(ids.lock().unwrap().clone());
    let n = ids.len();
    let (c, u, ids2) = (client.clone(), urls.clone(), ids.clone());
    let links = rate(move |i| {
        let pair = (2 * i) % (n - 1);
        let (c, url) = (c.clone(), format!("{}/link", u[i % u.len()]));
        let body = json!({"device_ids": [ids2[pair], ids2[pair + 1]], "confidence_score": 0.9});
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            assert!(r.status().is_success() || r.status().as_u16() == 409, "{}", r.status());
        }
    })
    .await;
    (registrations, links, ids.to_vec())
}

/// The baseline: a plain union-find with path halving over the device ids the node returned.
fn union_find(ids: &[String]) -> (f64, f64) {
    let started = Instant::now();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    for id in ids {
        let n = parent.len();
        index.insert(id, n);
        parent.push(n);
    }
    let inserts = ids.len() as f64 / started.elapsed().as_secs_f64();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let started = Instant::now();
    let ops = ids.len().max(1_000_000);
    for i in 0..ops {
        let pair = (2 * i) % (ids.len() - 1);
        let (a, b) = (index[ids[pair].as_str()], index[ids[pair + 1].as_str()]);
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra] = rb;
        }
    }
    (inserts, ops as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let db1 = infra::fresh_postgres_database("bench_devices_one").await;
    let one = start_member(
        "dev-one",
        member_options("bench-devices-cookie", &[])
            .env("LOOM_DATABASE_URL", &db1)
            .env("LOOM_DEVICE_MASTER_KEY", "22".repeat(32)),
    )
    .await;
    let (reg1, link1, ids) = run(vec![one.url(8012, "")], "one").await;
    drop(one);

    let db3 = infra::fresh_postgres_database("bench_devices_three").await;
    let cookie = "bench-devices-cluster";
    let opts = |seeds: &[&LoomNode]| {
        member_options(cookie, seeds).env("LOOM_DATABASE_URL", &db3).env("LOOM_DEVICE_MASTER_KEY", "22".repeat(32))
    };
    let a = start_member("dev-a", opts(&[])).await;
    let b = start_member("dev-b", opts(&[&a])).await;
    let c = start_member("dev-c", opts(&[&a])).await;
    wait_up(&[&a, &b, &c], &["dev-a", "dev-b", "dev-c"], Duration::from_secs(15)).await;
    let (reg3, link3, _) = run(vec![a.url(8012, ""), b.url(8012, ""), c.url(8012, "")], "three").await;

    let (uf_insert, uf_union) = union_find(&ids);
    let out = format!(
        "{CONCURRENCY} concurrent clients, {}s per phase, PostgreSQL\n\
         registrations/s: one node {reg1:.0}, three nodes {reg3:.0}; in-memory insert {uf_insert:.0}\n\
         link ops/s:      one node {link1:.0}, three nodes {link3:.0}; in-memory union {uf_union:.0}\n\
         ratio one node / in-memory: registrations {:.5}, links {:.5}\n",
        DURATION.as_secs(),
        reg1 / uf_insert,
        link1 / uf_union
    );
    // The bench's output is its product.
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
}
