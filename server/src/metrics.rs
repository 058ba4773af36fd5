//! Counters and gauges, written by the HTTP side and the inference thread, read as Prometheus
//! text by `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Completion requests accepted into the queue.
    pub requests: AtomicU64,
    /// Responses with a 4xx or 5xx status.
    pub errors: AtomicU64,
    /// Requests refused with 503 because the queue was full.
    pub rejected: AtomicU64,
    /// Requests cancelled because their client went away.
    pub cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens found in a slot's cache (not evaluated again).
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Time the inference thread spent stepping (µs).
    pub busy_us: AtomicU64,
    /// Requests waiting for a slot.
    pub queued: AtomicU64,
    /// Slots running a request, and all slots.
    pub slots_busy: AtomicU64,
    pub slots: AtomicU64,
    /// KV cache bytes holding tokens of running requests, and allocated for all slots.
    pub kv_used_bytes: AtomicU64,
    pub kv_bytes: AtomicU64,
    pub kv_reserved_bytes: AtomicU64,
    pub kv_budget_bytes: AtomicU64,
    /// KV cache bytes idle slots keep for the prompt cache.
    pub kv_cached_bytes: AtomicU64,
}

impl Metrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let busy = self.busy_us.load(Relaxed) as f64 / 1e6;
        let generated = self.generated_tokens.load(Relaxed);
        let tps = if busy > 0.0 { generated as f64 / busy } else { 0.0 };
        let rows: [(&str, &str, &str, f64); 17] = [
            ("autark_requests_total", "counter", "Completion requests accepted.", self.requests.load(Relaxed) as f64),
            (
                "autark_request_errors_total",
                "counter",
                "Responses with an error status.",
                self.errors.load(Relaxed) as f64,
            ),
            (
                "autark_requests_rejected_total",
                "counter",
                "Requests refused because the queue was full.",
                self.rejected.load(Relaxed) as f64,
            ),
            (
                "autark_requests_cancelled_total",
                "counter",
                "Requests whose client went away.",
                self.cancelled.load(Relaxed) as f64,
            ),
            (
                "autark_prompt_tokens_total",
                "counter",
                "Prompt tokens evaluated.",
                self.prompt_tokens.load(Relaxed) as f64,
            ),
            (
                "autark_prompt_tokens_cached_total",
                "counter",
                "Prompt tokens found in a slot's cache (--prompt-cache), not evaluated.",
                self.cached_prompt_tokens.load(Relaxed) as f64,
            ),
            ("autark_generated_tokens_total", "counter", "Tokens generated.", generated as f64),
            ("autark_busy_seconds_total", "counter", "Seconds the inference thread spent stepping.", busy),
            ("autark_tokens_per_second", "gauge", "Generated tokens per busy second, since start.", tps),
            (
                "autark_queue_length",
                "gauge",
                "Choices waiting for a slot (a request with several counts each).",
                self.queued.load(Relaxed) as f64,
            ),
            ("autark_slots_busy", "gauge", "Slots running a request.", self.slots_busy.load(Relaxed) as f64),
            ("autark_slots", "gauge", "Slots.", self.slots.load(Relaxed) as f64),
            (
                "autark_kv_cache_used_bytes",
                "gauge",
                "KV cache bytes holding running requests' tokens.",
                self.kv_used_bytes.load(Relaxed) as f64,
            ),
            (
                "autark_kv_cache_reserved_bytes",
                "gauge",
                "KV cache bytes reserved by running requests (prompt + max_tokens each).",
                self.kv_reserved_bytes.load(Relaxed) as f64,
            ),
            (
                "autark_kv_cache_budget_bytes",
                "gauge",
                "KV cache bytes running requests may reserve together (--kv-budget-mib).",
                self.kv_budget_bytes.load(Relaxed) as f64,
            ),
            (
                "autark_kv_cache_prompt_cache_bytes",
                "gauge",
                "KV cache bytes idle slots keep for later prompts (--prompt-cache).",
                self.kv_cached_bytes.load(Relaxed) as f64,
            ),
            (
                "autark_kv_cache_bytes",
                "gauge",
                "KV cache and scratch bytes allocated for all slots.",
                self.kv_bytes.load(Relaxed) as f64,
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        s
    }
}
