//! autark-server: `autark serve`, an OpenAI-compatible HTTP server (docs/SERVER.md).
//!
//! Two halves that meet at a channel: the HTTP side (`http`, on a current-thread tokio runtime)
//! checks requests (`request`) and streams responses; one inference thread (`engine`, a plain
//! std thread) owns the model's slots and steps every running request together. tokio stays in
//! this crate: the runtime knows nothing of it.
#![forbid(unsafe_code)]

pub mod engine;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod request;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use engine::EngineParams;
pub use error::{ApiError, ServerError};

use crate::engine::Engine;
use crate::http::State;
use crate::metrics::Metrics;
use crate::request::{Limits, DEFAULT_LIMITS};

/// `autark serve`'s settings.
#[derive(Debug, Clone)]
pub struct ServeParams {
    pub model: PathBuf,
    pub host: String,
    pub port: u16,
    /// Slots: requests generated at the same time.
    pub parallel: usize,
    /// Tokens each slot holds (prompt + output).
    pub ctx_per_slot: usize,
    pub api_key: Option<String>,
    /// Worker threads of the forward pass; 0 = one per core.
    pub threads: usize,
    /// Requests that may wait for a slot; more get 503.
    pub max_queue: usize,
    /// KV cache bytes the running requests may reserve together (`None`: every slot's whole
    /// context). At least one slot's whole context.
    pub kv_budget: Option<usize>,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Time a client has to send its request headers, and its body.
    pub client_timeout: Duration,
    /// Longest a shutdown waits for running requests.
    pub drain_timeout: Duration,
    /// Web origins whose pages may call the API (CORS), e.g. `http://localhost:3000`; `*`
    /// allows any. Empty (the default): browsers refuse cross-origin calls.
    pub cors_origins: Vec<String>,
    /// Idle slots keep their last request's tokens and KV cache, and a request goes to the
    /// free slot whose tokens begin like its prompt, evaluating only the rest.
    pub prompt_cache: bool,
}

pub const DEFAULT_PORT: u16 = 8080;

impl ServeParams {
    pub fn new(model: PathBuf) -> ServeParams {
        ServeParams {
            model,
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            parallel: 4,
            ctx_per_slot: DEFAULT_LIMITS.n_ctx,
            api_key: None,
            threads: 0,
            max_queue: 64,
            kv_budget: None,
            max_body: 1 << 20,
            client_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(60),
            cors_origins: Vec::new(),
            prompt_cache: false,
        }
    }
}

/// Runs the server until SIGTERM or SIGINT, then drains: running requests finish, new ones get
/// 503, and it returns once they are done (or `drain_timeout` passed).
pub fn serve(p: ServeParams) -> Result<(), ServerError> {
    if p.parallel == 0 || p.parallel > 256 {
        return Err(ServerError::Setting { name: "parallel", what: format!("{} (must be 1..=256)", p.parallel) });
    }
    if p.ctx_per_slot < 2 {
        return Err(ServerError::Setting { name: "ctx_per_slot", what: format!("{} (must be ≥ 2)", p.ctx_per_slot) });
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run(p))
}

async fn run(p: ServeParams) -> Result<(), ServerError> {
    let addr = format!("{}:{}", p.host, p.port);
    let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
    let local: SocketAddr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let params = EngineParams {
        model: p.model.clone(),
        parallel: p.parallel,
        n_ctx: p.ctx_per_slot,
        threads: p.threads,
        max_queue: p.max_queue,
        kv_budget: p.kv_budget,
        prompt_cache: p.prompt_cache,
    };
    let (engine, loaded) = Engine::start(params, metrics)?;
    let model_name = p.model.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let state = Arc::new(State {
        engine,
        model_name,
        api_key: p.api_key.clone(),
        limits: Limits { n_ctx: p.ctx_per_slot, ..DEFAULT_LIMITS },
        max_body: p.max_body,
        body_timeout: p.client_timeout,
        draining: AtomicBool::new(false),
        inflight: Arc::new(AtomicUsize::new(0)),
        cors_origins: p.cors_origins.clone(),
    });
    eprintln!("autark serve: listening on http://{local} (loading {})", p.model.display());

    // The model loads on the inference thread while /health answers 503.
    let (load_tx, mut load_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = load_tx.send(loaded.recv().unwrap_or(Err(ServerError::EngineGone)));
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connections = Arc::new(AtomicUsize::new(0));
    let mut signals = Signals::new()?;
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(p.client_timeout).max_headers(64).max_buf_size(64 << 10);
    let mut loading = true;
    loop {
        tokio::select! {
            r = &mut load_rx, if loading => {
                loading = false;
                r.unwrap_or(Err(ServerError::EngineGone))?;
                eprintln!("autark serve: ready ({} slots of {} tokens)", p.parallel, p.ctx_per_slot);
            }
            _ = signals.recv() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let io = TokioIo::new(stream);
                let st = Arc::clone(&state);
                let service = hyper::service::service_fn(move |req| http::handle(Arc::clone(&st), req));
                let conn = builder.serve_connection(io, service);
                let mut stop = stop_rx.clone();
                let live = Arc::clone(&connections);
                live.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(async move {
                    let mut conn = std::pin::pin!(conn);
                    let stopping = tokio::select! {
                        _ = conn.as_mut() => false,
                        r = stop.wait_for(|s| *s) => r.is_ok(),
                    };
                    if stopping {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.as_mut().await;
                    }
                    live.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }

    // Drain: refuse new completions (503) while the running ones finish, still accepting
    // connections so that health checks see 503 rather than a refused connection.
    eprintln!("autark serve: shutting down; {} request(s) running", state.inflight.load(Ordering::Acquire));
    state.draining.store(true, Ordering::Release);
    let deadline = tokio::time::Instant::now() + p.drain_timeout;
    while state.inflight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let st = Arc::clone(&state);
                let service = hyper::service::service_fn(move |req| http::handle(Arc::clone(&st), req));
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("autark serve: stopped");
    Ok(())
}

/// SIGTERM and SIGINT.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
