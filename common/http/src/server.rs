//! Serving a router on a bound listener until a shutdown future resolves, then draining:
//! no new connections are accepted and in-flight requests run to completion.

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

/// Serves until `shutdown` resolves and every in-flight request has finished. The caller bounds
/// the drain with its own timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
