//! The admin HTTP server: `/metrics`, `/health`, `/ready`.
//!
//! It runs on its own thread with a single-threaded tokio runtime, so a
//! scrape never competes with the pipeline's worker pools for a runtime, and
//! a busy pipeline never delays a probe behind its own jobs.

pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use crew_pipeline::{Phase, PipelineHandle};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

/// The OpenMetrics text format, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct AdminState {
    registry: Registry,
    handle: PipelineHandle,
}

/// A running admin server; dropping it stops the server.
pub struct AdminServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `listen` (port 0 picks a free one) and serves the pipeline behind
    /// `handle`. Binding happens before this returns, so a taken port is an
    /// error here, not a log line later.
    pub fn start(
        listen: SocketAddr,
        pipeline: &str,
        handle: PipelineHandle,
    ) -> anyhow::Result<AdminServer> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the admin server to {listen}"))?;
        listener
            .set_nonblocking(true)
            .context("setting the admin socket non-blocking")?;
        let address = listener.local_addr().context("reading the admin address")?;
        let state = Arc::new(AdminState {
            registry: metrics::registry(pipeline, handle.clone()),
            handle,
        });
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/health", get(serve_health))
            .route("/ready", get(serve_ready))
            .with_state(state);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("starting the admin server's runtime")?;
        let thread = thread::Builder::new()
            .name("crew-admin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "the admin server could not start");
                            return;
                        }
                    };
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "the admin server stopped");
                    }
                });
            })
            .context("spawning the admin server thread")?;
        tracing::info!("admin server listening on http://{address} (/metrics, /health, /ready)");
        Ok(AdminServer {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_metrics(State(state): State<Arc<AdminState>>) -> Response {
    match metrics::encode(&state.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

/// Liveness: the process answers.
async fn serve_health() -> &'static str {
    "ok\n"
}

/// Readiness: the source is connected and the pipeline is not draining.
async fn serve_ready(State(state): State<Arc<AdminState>>) -> (StatusCode, &'static str) {
    match state.handle.phase() {
        Phase::Running => (StatusCode::OK, "ready\n"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        Phase::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped\n"),
    }
}
