//! The admin HTTP server: `/metrics`, `/health`, `/ready`.
//!
//! It runs on its own thread with a single-threaded tokio runtime, so a
//! scrape never competes with the pipeline's worker pools for a runtime, and
//! a busy pipeline never delays a probe behind its own jobs.

pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use crew_pipeline::{Phase, PipelineHandle};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::ComponentStats;

/// The OpenMetrics text format, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct AdminState {
    registry: Registry,
    handle: PipelineHandle,
}

/// How long a stopping admin server lets open connections finish before it
/// drops them: a client that never completes its request must not keep the
/// process alive.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The admin address, bound but not serving yet: binding comes first so a
/// taken port fails `crew run` before anything else (opening, truncating
/// outputs) has happened.
pub struct AdminListener {
    listener: std::net::TcpListener,
    address: SocketAddr,
}

impl AdminListener {
    /// Binds `listen` (port 0 picks a free one).
    pub fn bind(listen: SocketAddr) -> anyhow::Result<AdminListener> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the admin server to {listen}"))?;
        listener
            .set_nonblocking(true)
            .context("setting the admin socket non-blocking")?;
        let address = listener.local_addr().context("reading the admin address")?;
        Ok(AdminListener { listener, address })
    }

    /// Serves the pipeline behind `handle` on a thread of its own, with the
    /// counters its components keep of their own (`components`, by role).
    pub fn serve(
        self,
        pipeline: &str,
        handle: PipelineHandle,
        components: &[(&'static str, ComponentStats)],
    ) -> anyhow::Result<AdminServer> {
        let AdminListener { listener, address } = self;
        let state = Arc::new(AdminState {
            registry: metrics::registry(pipeline, handle.clone(), components),
            handle,
        });
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/health", get(serve_health))
            .route("/ready", get(serve_ready))
            .with_state(state);
        let (stop_tx, stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the admin server's runtime")?;
        let thread = thread::Builder::new()
            .name("crew-admin".to_owned())
            .spawn(move || runtime.block_on(serve(listener, router, stop_rx)))
            .context("spawning the admin server thread")?;
        tracing::info!("admin server listening on http://{address} (/metrics, /health, /ready)");
        Ok(AdminServer {
            stop: stop_tx,
            thread: Some(thread),
        })
    }
}

/// Serves until stopped; then lets open connections finish for at most
/// [`SHUTDOWN_GRACE`]. Returning drops the runtime, which drops whatever
/// connection is still open.
async fn serve(listener: std::net::TcpListener, router: Router, stop: watch::Receiver<bool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the admin server could not start");
            return;
        }
    };
    let mut graceful = stop.clone();
    let mut hard = stop;
    let served = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stopped| *stopped).await;
    });
    let grace_over = async move {
        let _ = hard.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = served => {
            if let Err(error) = result {
                tracing::error!(%error, "the admin server stopped");
            }
        }
        () = grace_over => {
            tracing::debug!("admin connections still open after the grace period; dropping them");
        }
    }
}

/// A running admin server; dropping it stops the server (within about a
/// second, whatever its clients do).
pub struct AdminServer {
    stop: watch::Sender<bool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
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
