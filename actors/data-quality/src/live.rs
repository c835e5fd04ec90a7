//! `GET /ws/monitors/{id}`: live windows of a monitor. The feed follows the shared store, not
//! one node's ingest, so it shows every part's writes (REST on any node, every source
//! partition) whichever node the client is connected to.
//!
//! Messages (JSON text frames):
//! - `{"type": "snapshot", "monitor", "version", "window_ms", "windows": [...]}` first: the
//!   newest [`SNAPSHOT`] windows, each exactly as in `/report`;
//! - `{"type": "windows", "monitor", "version", "windows": [...]}` whenever windows change
//!   (polled every [`POLL`]; at most [`MAX_PER_MESSAGE`] windows per message);
//! - a close frame (1000, "monitor deleted") when the monitor goes away.
//!
//! Re-reads overlap the previous poll by [`OVERLAP_MS`] so a write committed late in the same
//! millisecond is not missed; a window is sent again only when its newest write time changed.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::api::{Api, ReportQuery, entry, load, span};
use crate::error::QualityError;
use crate::report;

pub const POLL: Duration = Duration::from_secs(1);
pub const MAX_PER_MESSAGE: u32 = 100;
const SNAPSHOT: i64 = 24;
const OVERLAP_MS: i64 = 2_000;

/// Live windows of a monitor: a snapshot of the newest windows, then every changed window.
#[utoipa::path(get, path = "/ws/monitors/{id}", params(("id" = String, Path, description = "monitor id")),
    responses((status = 101, description = "WebSocket upgrade: JSON text frames, a `snapshot` then `windows` messages; closed with 1000 when the monitor is deleted")))]
pub async fn ws(
    State(api): State<Api>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, loom_http::ApiError> {
    entry(&api, &id).await?;
    Ok(ws.on_upgrade(move |socket| serve(socket, api, id)))
}

/// The report of the windows starting at `starts` (all groups), oldest first.
async fn windows(api: &Api, id: &str, starts: &[i64]) -> Result<Option<(i32, Vec<Value>)>, QualityError> {
    let Some(e) = api.book.get(id) else { return Ok(None) };
    let m = &e.compiled;
    let (Some(&from), Some(&last)) = (starts.iter().min(), starts.iter().max()) else {
        return Ok(Some((e.version, Vec::new())));
    };
    let all = load(&api.store, m, from, last + m.window_ms).await?;
    let out = all.iter().filter(|w| starts.contains(&w.start)).map(|w| report::window(m, w, &all)).collect();
    Ok(Some((e.version, out)))
}

async fn serve(socket: WebSocket, api: Api, id: String) {
    let (mut tx, mut rx) = socket.split();
    // The client only closes (or pings); anything else it sends is ignored.
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    });
    let snapshot = async {
        let e = entry(&api, &id).await?;
        let q = ReportQuery { from: None, to: None, group: None };
        let (from, to) = span(&api, &e.compiled, &q).await?;
        let from = from.max(to - SNAPSHOT * e.compiled.window_ms);
        let starts: Vec<i64> = (0..).map(|i| from + i * e.compiled.window_ms).take_while(|s| *s < to).collect();
        let (version, wins) = windows(&api, &id, &starts).await?.unwrap_or((e.version, Vec::new()));
        Ok::<Value, QualityError>(json!({"type": "snapshot", "monitor": id, "version": version,
            "window_ms": e.compiled.window_ms, "windows": wins}))
    };
    let mut since = loom_storage::documents::now_ms() - OVERLAP_MS;
    match snapshot.await {
        Ok(v) => {
            if tx.send(Message::Text(v.to_string().into())).await.is_err() {
                reader.abort();
                return;
            }
        }
        Err(e) => {
            let _ = tx.send(Message::Close(Some(CloseFrame { code: 1011, reason: e.to_string().into() }))).await;
            reader.abort();
            return;
        }
    }
    let mut sent: HashMap<i64, i64> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut reader => return,
        }
        if api.book.get(&id).is_none() {
            let _ = tx.send(Message::Close(Some(CloseFrame { code: 1000, reason: "monitor deleted".into() }))).await;
            break;
        }
        let changed = match api.store.changed_since(&id, since - OVERLAP_MS, MAX_PER_MESSAGE).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(monitor = %id, error = %e, "live feed: quality store unavailable");
                continue;
            }
        };
        let starts: Vec<i64> = changed.iter().filter(|(s, u)| sent.get(s) != Some(u)).map(|(s, _)| *s).collect();
        if let Some(newest) = changed.iter().map(|(_, u)| *u).max() {
            since = since.max(newest);
        }
        if starts.is_empty() {
            continue;
        }
        match windows(&api, &id, &starts).await {
            Ok(Some((version, wins))) => {
                let msg = json!({"type": "windows", "monitor": id, "version": version, "windows": wins});
                if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                    break;
                }
                sent.extend(changed.into_iter().filter(|(s, _)| starts.contains(s)));
                if sent.len() > 10_000 {
                    sent.clear();
                }
            }
            Ok(None) => continue,
            Err(e) => tracing::warn!(monitor = %id, error = %e, "live feed: windows unreadable"),
        }
    }
    reader.abort();
}
