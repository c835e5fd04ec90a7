//! The health dashboard (`GET /` on 8030) in a real headless Chromium (Debian's `chromium`,
//! installed by `scripts/infra.sh`): the page loads from a real two-node cluster, shows both
//! nodes and their services, then — without reloading, live from `/ws/health` — shows the second
//! node lost (its services `impacted`, an open incident) after `kill -9`, and up again after a
//! restart, with the incident resolved. The quality dashboard (`GET /` on 8031) shows a
//! monitor's windows, charts and the drift decisions of the newest window, and a window posted
//! while it is open appears without a reload (from `/ws/monitors/{id}`). Chromium is driven
//! over the DevTools protocol; screenshots of the final pages are saved under the target
//! directory.

#![allow(clippy::print_stderr)] // detection and recovery times are the figures these tests report

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use loom_testkit::cluster::{member_options, start_member, start_member_on, wait_up};
use loom_testkit::{eventually, http};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "chromium";

fn chromium_installed() -> bool {
    std::process::Command::new(CHROMIUM).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…`.
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools endpoint");
        })
        .await
        .expect("chromium prints its DevTools endpoint within 30 s");
        // Keep draining stderr so chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = endpoint.trim_start_matches("ws://").split(['/', ':']).nth(1).expect("port").to_owned();
        let page = eventually("the page target", Duration::from_secs(15), || async {
            let targets: Vec<Value> =
                http().get(format!("http://127.0.0.1:{port}/json/list")).send().await.ok()?.json().await.ok()?;
            targets.into_iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"].as_str().map(str::to_owned)
        })
        .await;
        let (ws, _) = tokio_tungstenite::connect_async(page).await.expect("DevTools websocket");
        Browser { child, _profile: profile, ws, next_id: 0 }
    }

    /// One DevTools command and its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(Message::Text(msg.into())).await.expect("send to chromium");
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("chromium answers")
                .expect("DevTools open")
                .expect("DevTools ok");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("DevTools JSON");
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its JSON value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true })).await;
        r["result"]["value"].clone()
    }

    async fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        base64_decode(r["data"].as_str().expect("png data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Standard base64 (the screenshot); the test crate has no base64 dependency of its own.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(value(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Where a screenshot goes: `<target>/dashboard/<name>`.
fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir.join(name)
}

/// What the page shows about a node: its card's status and its services' statuses.
const NODE_VIEW: &str = r#"(node) => {
  const card = document.querySelector(`[data-node-card="${node}"]`);
  if (!card) return null;
  const services = {};
  card.querySelectorAll("li[data-service]").forEach((li) => { services[li.dataset.service] = li.dataset.status; });
  return { status: card.dataset.status, services };
}"#;

async fn node_view(browser: &mut Browser, node: &str) -> Value {
    browser.eval(&format!("({NODE_VIEW})({})", json!(node))).await
}

#[test]
fn base64_decoding_matches_known_values() {
    for (encoded, decoded) in [("", ""), ("Zg==", "f"), ("Zm8=", "fo"), ("Zm9v", "foo"), ("Zm9vYmFy", "foobar")] {
        assert_eq!(base64_decode(encoded), decoded.as_bytes(), "{encoded}");
    }
}

#[tokio::test]
async fn the_dashboard_shows_a_node_go_down_and_come_back_live() {
    assert!(
        chromium_installed(),
        "`{CHROMIUM}` is not installed: the dashboard test needs Debian's chromium package — run scripts/infra.sh up (scripts/test.sh does)"
    );
    let cookie = format!("dash-{}", std::process::id());
    let d1 = start_member("d1", member_options(&cookie, &[])).await;
    let d2 = start_member("d2", member_options(&cookie, &[&d1])).await;
    wait_up(&[&d1, &d2], &["d1", "d2"], Duration::from_secs(15)).await;

    let page = d1.url(8030, "/");
    let resp = http().get(&page).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let mut browser = Browser::open(&page).await;

    // Initial load: both nodes up, d2's services passing, the graph drawn, the stream live.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = browser.eval("document.body.dataset.live === 'true'").await;
        let v1 = node_view(&mut browser, "d1").await;
        let v2 = node_view(&mut browser, "d2").await;
        let graph = browser.eval("document.querySelectorAll('#graph-list li[data-component]').length").await;
        let ok = live == true
            && v1["status"] == "up"
            && v2["status"] == "up"
            && v2["services"]["dedup"] == "pass"
            && v2["services"]["schema-registry"] == "pass"
            && graph.as_u64().unwrap_or(0) >= 14;
        if ok {
            break;
        }
        let last = json!({ "live": live, "d1": v1, "d2": v2, "graph": graph });
        assert!(Instant::now() < deadline, "the dashboard never showed both nodes up: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A marker in the page proves later changes arrive live, not through a reload.
    browser.eval("window.__sameLoad = 1").await;
    let edges = browser.eval("document.querySelectorAll('#graph line').length").await;
    assert!(edges.as_u64().unwrap_or(0) >= 6, "graph edges drawn: {edges}");

    // d2 is killed: the page shows it lost, its services impacted, and an open incident.
    let killed_at = Instant::now();
    let address = d2.kill_into_address().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v2 = node_view(&mut browser, "d2").await;
        let incident =
            browser.eval("document.querySelector('.incident[data-state=\"open\"]')?.textContent ?? null").await;
        let lost = matches!(v2["status"].as_str(), Some("unreachable" | "down"));
        if lost && v2["services"]["dedup"] == "impacted" && incident.as_str().is_some_and(|t| t.contains("d2")) {
            eprintln!("dashboard showed d2 lost {} ms after kill -9", killed_at.elapsed().as_millis());
            break;
        }
        let last = json!({ "d2": v2, "incident": incident });
        assert!(Instant::now() < deadline, "the dashboard never showed d2 lost: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = browser.screenshot().await;

    // d2 comes back on the same address and name: up again, the incident resolved.
    let restarted_at = Instant::now();
    let _d2 = start_member_on("d2", address, member_options(&cookie, &[&d1])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v2 = node_view(&mut browser, "d2").await;
        let open = browser.eval("document.querySelectorAll('.incident[data-state=\"open\"]').length").await;
        let resolved = browser.eval("document.querySelectorAll('.incident[data-state=\"resolved\"]').length").await;
        if v2["status"] == "up" && v2["services"]["dedup"] == "pass" && open == 0 && resolved.as_u64() >= Some(1) {
            eprintln!("dashboard showed d2 back {} ms after the restart began", restarted_at.elapsed().as_millis());
            break;
        }
        let last = json!({ "d2": v2, "open": open, "resolved": resolved });
        assert!(Instant::now() < deadline, "the dashboard never showed d2 back: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(browser.eval("window.__sameLoad").await, 1, "the page was not reloaded");
    assert!(browser.eval("window.loomDashboard.deltas").await.as_u64().unwrap_or(0) > 0);

    let png = browser.screenshot().await;
    for shot in [&during, &png] {
        assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        assert!(shot.len() > 10_000, "a real page, not a blank one: {} bytes", shot.len());
    }
    let path = screenshot_path("dashboard.png");
    std::fs::write(&path, &png).expect("screenshot written");
    std::fs::write(path.with_file_name("dashboard-node-lost.png"), &during).expect("screenshot written");
    eprintln!("screenshots: {} and dashboard-node-lost.png beside it", path.display());
}

/// Quality dashboard: what the page shows (chart points, drift rows, live messages).
const QUALITY_VIEW: &str = r##"(() => {
  const drift = {};
  document.querySelectorAll("#drift tr[data-field]").forEach((tr) => { drift[tr.dataset.field + " " + tr.dataset.method] = tr.dataset.drifted; });
  return {
    status: document.getElementById("status").textContent,
    messages: Number(document.getElementById("status").dataset.messages || 0),
    volume: Number(document.getElementById("chart-volume").dataset.points || 0),
    completeness: Number(document.getElementById("chart-completeness").dataset.points || 0),
    drift,
    alerts: [...document.querySelectorAll("#alerts tr.alert")].map((tr) => tr.dataset.kind),
    open_alerts: [...document.querySelectorAll("#open-alerts tr.open-alert")].map((tr) => tr.dataset.key),
    records: document.querySelector('.kpi[data-metric="volume"] b')?.textContent,
  };
})()"##;

async fn wait_view(browser: &mut Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = browser.eval(QUALITY_VIEW).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "the quality dashboard never showed {what}: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_quality_dashboard_shows_windows_drift_and_live_updates() {
    assert!(chromium_installed(), "`{CHROMIUM}` is not installed: run scripts/infra.sh up (scripts/test.sh does)");
    let node = loom_testkit::LoomNode::start_ready("dq-dash", loom_testkit::NodeOptions::default()).await;
    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let monitor = json!({"id": "gps", "time": {"field": "/ts"}, "window": "10m",
        "fields": {"/speed": {"required": true}, "/platform": {"required": true}},
        "reference": {"fixed": {"from": iso(T0), "to": iso(T0 + 600_000)}},
        "drift": {"fields": ["/speed", "/platform"], "methods": ["ks", "psi"]}, "alerts": {}});
    let r = http().post(node.url(8031, "/monitors")).json(&monitor).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let mut seed = 11u64;
    let mut unit = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    // window w: 1,000 records; windows 2 and 3 have /speed shifted by 1 sd
    let mut window = |w: i64| -> Vec<Value> {
        (0..1000)
            .map(|i| {
                let (u, v) = (unit(), unit());
                let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                let mean = if w >= 2 { 55.0 } else { 50.0 };
                json!({"ts": iso(T0 + w * 600_000 + i * 500), "speed": mean + 5.0 * z,
                       "platform": if i % 3 == 0 { "ios" } else { "android" }})
            })
            .collect()
    };
    let post = |recs: Vec<Value>| {
        let url = node.url(8031, "/monitors/gps/records");
        async move {
            let r = http().post(url).json(&json!({"records": recs})).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for w in 0..3 {
        post(window(w)).await;
    }

    let mut browser = Browser::open(&node.url(8031, "/?monitor=gps")).await;
    let view = wait_view(&mut browser, "three windows and the drift of the newest", |v| {
        v["status"] == "live" && v["volume"] == 3 && v["drift"]["/speed ks"] == "true"
    })
    .await;
    assert_eq!(view["drift"]["/platform psi"], "false", "{view}");
    assert_eq!(view["records"], "1000", "{view}");
    assert!(view["alerts"].as_array().unwrap().iter().any(|k| k == "drift"), "{view}");
    // The stored, deduplicated alert of that drift, as the evaluator opened it.
    wait_view(&mut browser, "the open alert of /speed", |v| {
        v["open_alerts"].as_array().is_some_and(|a| a.iter().any(|k| k == "drift||/speed"))
    })
    .await;

    // A window posted while the page is open appears without a reload.
    post(window(3)).await;
    let live =
        wait_view(&mut browser, "the fourth window, live", |v| v["volume"] == 4 && v["messages"].as_u64() >= Some(2))
            .await;
    assert_eq!(live["completeness"], 4, "{live}");
    let png = browser.screenshot().await;
    std::fs::write(screenshot_path("quality.png"), &png).unwrap();
    eprintln!("quality dashboard: {live}");
}

/// With tokens configured, a plain browser signs in once through `/login` (the token becomes an
/// HttpOnly, SameSite=Strict session cookie) and then uses both dashboards, their WebSocket
/// streams included; scripts never see the token.
#[tokio::test]
async fn the_dashboards_work_in_a_browser_with_auth_on() {
    assert!(chromium_installed(), "`{CHROMIUM}` is not installed: run scripts/infra.sh up (scripts/test.sh does)");
    const READ: &str = "dash-reader-0123456789";
    let node = loom_testkit::LoomNode::start_ready(
        "dash-auth",
        loom_testkit::NodeOptions::default()
            .env("LOOM_AUTH_TOKENS", format!("viewer:read:{READ},ops:admin:dash-admin-0123456789")),
    )
    .await;
    let page = node.url(8030, "/");

    // Without credentials: a browser is sent to the form, an API client gets a 401 problem.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = plain.get(&page).header("accept", "text/html,application/xhtml+xml").send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2F");
    let r = plain.get(&page).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = plain.post(node.url(8030, "/login")).body(format!("token={READ}&next=/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["loom_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let wrong = plain.post(node.url(8030, "/login")).body("token=nope&next=/").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let mut browser = Browser::open(&page).await;
    let at = |b: &'static str| format!("location.pathname === '{b}' && document.readyState === 'complete'");
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.eval(&at("/login")).await != true {
        assert!(Instant::now() < deadline, "the browser never reached /login");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let submit = |token: &str| {
        format!(
            "document.querySelector('input[name=token]').value = {}; document.forms[0].submit(); true",
            json!(token)
        )
    };
    browser.eval(&submit("not-a-token")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.eval("document.body && document.body.innerText.includes('not recognized')").await != true {
        assert!(Instant::now() < deadline, "no refusal shown for a wrong token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.eval(&submit(READ)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = browser.eval("location.pathname === '/' && document.body.dataset.live === 'true'").await;
        let v = node_view(&mut browser, "dash-auth").await;
        if live == true && v["status"] == "up" {
            break;
        }
        assert!(Instant::now() < deadline, "the health dashboard never went live after signing in: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(browser.eval("document.cookie").await, "", "the session cookie is HttpOnly");

    // The cookie belongs to the host: the quality dashboard on 8031 opens without a new sign-in.
    browser.call("Page.navigate", json!({"url": node.url(8031, "/")})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser
        .eval("location.port === '8031' && location.pathname === '/' && document.title.includes('Data Quality')")
        .await
        != true
    {
        assert!(Instant::now() < deadline, "the quality dashboard did not open with the session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let png = browser.screenshot().await;
    std::fs::write(screenshot_path("dashboard-auth.png"), png).unwrap();
}
