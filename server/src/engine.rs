//! The inference thread: it owns the model's slots (one `Session` each, all on one worker pool)
//! and steps every running request together. A step gives each busy slot one unit of work: a
//! chunk of its prompt (`CHUNK` tokens, so a long prompt never stalls the streams beside it for
//! more than one chunk) or one generated token, and evaluates all of them in shared forward
//! passes (`Session::eval_together`): the weights are read once per pass for every sequence.
//! Requests join at step boundaries, wait in a bounded queue while every slot is busy, and leave
//! at once when their client goes away.
//!
//! Each slot's arithmetic depends only on its own request: a batch's rows never mix, each row
//! attends to its own slot's cache, and the kernels give each row the same numbers whatever
//! batch it is in and on any thread count, so a greedy or seeded request returns the same tokens
//! alone or beside others.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

use autark_runtime::{Detokenizer, Model, Sampler, Session, SessionParams, DEFAULTS};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;
use crate::request::Request;

/// Prompt tokens a slot evaluates per step (one forward batch).
pub const CHUNK: usize = 64;

/// What the engine tells a request's responder.
#[derive(Debug)]
pub enum Event {
    /// Text of the completion, as it becomes complete, with the log-probabilities of the
    /// tokens whose text begins in it (when the request asked for them).
    Text(String, Vec<TokenLogprob>),
    Done(Finish),
    Failed(ApiError),
}

#[derive(Debug, Clone, Copy)]
pub struct Finish {
    /// OpenAI's `finish_reason`: `stop` or `length`.
    pub reason: &'static str,
    pub prompt_tokens: usize,
    /// Prompt tokens the slot's cache already held (`--prompt-cache`).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// A generated token's log-probability under the model's distribution (`logprobs`).
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    /// The token's bytes (part of a character, for some tokens).
    pub bytes: Vec<u8>,
    /// `None` for an echoed prompt's first token (nothing comes before it), which has no `top`.
    pub logprob: Option<f32>,
    /// The most likely tokens, with theirs, most likely first.
    pub top: Vec<(Vec<u8>, f32)>,
    /// Where the token's text begins in the text it comes with (bytes; a character boundary).
    pub offset: usize,
}

/// One choice of a request on its way through the engine.
pub struct Job {
    pub request: Request,
    /// The choice's index in the response; its events go out tagged with it.
    pub index: usize,
    pub events: UnboundedSender<(usize, Event)>,
    /// Set when the client goes away (shared by the request's choices).
    pub cancel: Arc<AtomicBool>,
}

impl Job {
    fn send(&self, event: Event) {
        // A closed channel means the client left; the job is dropped at the next step.
        let _ = self.events.send((self.index, event));
    }
}

#[derive(Debug, Clone)]
pub struct EngineParams {
    pub model: PathBuf,
    pub parallel: usize,
    pub n_ctx: usize,
    pub threads: usize,
    /// Requests that may wait for a slot; more are refused (503).
    pub max_queue: usize,
    /// KV cache bytes the running requests may hold together (`None`: every slot's whole
    /// context). Each request reserves the KV of its prompt and `max_tokens` when it starts.
    pub kv_budget: Option<usize>,
    /// Idle slots keep their tokens' KV cache for later requests that begin the same way.
    pub prompt_cache: bool,
}

/// Reports once whether the model loaded.
pub type Loaded = mpsc::Receiver<Result<(), ServerError>>;

/// The HTTP side's handle on the inference thread.
pub struct Engine {
    tx: Mutex<mpsc::Sender<Job>>,
    model: OnceLock<Arc<Model>>,
    pub metrics: Arc<Metrics>,
    max_queue: usize,
}

impl Engine {
    /// Starts the inference thread, which loads the model; the receiver reports once whether
    /// that worked.
    pub fn start(params: EngineParams, metrics: Arc<Metrics>) -> std::io::Result<(Arc<Engine>, Loaded)> {
        let (tx, rx) = mpsc::channel();
        let (loaded_tx, loaded) = mpsc::channel();
        let engine =
            Arc::new(Engine { tx: Mutex::new(tx), model: OnceLock::new(), metrics, max_queue: params.max_queue });
        let e = Arc::clone(&engine);
        std::thread::Builder::new().name("autark-inference".into()).spawn(move || {
            let slots = match load(&params, &e) {
                Ok(s) => s,
                Err(err) => {
                    let _ = loaded_tx.send(Err(err));
                    return;
                }
            };
            let _ = loaded_tx.send(Ok(()));
            let budget = params.kv_budget.unwrap_or(usize::MAX);
            let prompt_cache = params.prompt_cache;
            Worker { slots, queue: VecDeque::new(), rx, engine: e, budget, prompt_cache }.run();
        })?;
        Ok((engine, loaded))
    }

    /// The model, once loaded.
    pub fn model(&self) -> Option<&Arc<Model>> {
        self.model.get()
    }

    /// Queues a request's jobs (its choices), or refuses them all (503) when the queue has no
    /// room for them.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        let (m, k) = (&self.metrics, jobs.len() as u64);
        if k as usize > self.max_queue {
            let what = format!("{k} choices; this server queues at most {} (--max-queue)", self.max_queue);
            return Err(ApiError::invalid(None, what));
        }
        if m.queued.fetch_add(k, Ordering::AcqRel).saturating_add(k) as usize > self.max_queue {
            m.queued.fetch_sub(k, Ordering::AcqRel);
            Metrics::add(&m.rejected, 1);
            return Err(ApiError::unavailable("every slot is busy and the queue is full; retry later"));
        }
        Metrics::add(&m.requests, 1);
        let tx = self.tx.lock().map_err(|_| ApiError::unavailable("the engine stopped"))?;
        for (i, job) in jobs.into_iter().enumerate() {
            if tx.send(job).is_err() {
                m.queued.fetch_sub(k - i as u64, Ordering::AcqRel);
                return Err(ApiError::unavailable("the engine stopped"));
            }
        }
        Ok(())
    }
}

fn load(p: &EngineParams, engine: &Engine) -> Result<Vec<Slot>, ServerError> {
    let load_err = |source| ServerError::Load { path: p.model.clone(), source };
    let model = Arc::new(Model::load(&p.model).map_err(load_err)?);
    let sp = SessionParams { n_ctx: p.n_ctx, n_threads: p.threads, n_batch: CHUNK, ..DEFAULTS.session };
    // The first slot's scratch carries every shared pass: room for a prompt chunk and one
    // token of each other slot.
    let lead = SessionParams { n_batch: CHUNK + p.parallel - 1, ..sp };
    let first = Session::new(Arc::clone(&model), lead).map_err(load_err)?;
    let mut sessions = Vec::with_capacity(p.parallel);
    for _ in 1..p.parallel {
        sessions.push(Session::new_beside(&first, sp).map_err(load_err)?);
    }
    sessions.insert(0, first);
    let full = sessions[0].kv_bytes_for(p.n_ctx);
    if let Some(budget) = p.kv_budget.filter(|&b| b < full) {
        let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
        let what = format!(
            "{:.1} MiB is less than one slot's whole context ({:.1} MiB for {} tokens); raise it or lower --ctx-per-slot",
            mib(budget),
            mib(full),
            p.n_ctx
        );
        return Err(ServerError::Setting { name: "--kv-budget-mib", what });
    }
    let m = &engine.metrics;
    let budget = p.kv_budget.unwrap_or(full.saturating_mul(p.parallel));
    m.kv_budget_bytes.store(budget.min(full.saturating_mul(p.parallel)) as u64, Ordering::Relaxed);
    m.slots.store(p.parallel as u64, Ordering::Relaxed);
    m.kv_bytes.store(sessions.iter().map(|s| s.memory_bytes() as u64).sum(), Ordering::Relaxed);
    let _ = engine.model.set(model);
    Ok(sessions.into_iter().map(|session| Slot { session, run: None }).collect())
}

struct Slot {
    session: Session,
    run: Option<Running>,
}

/// A request in a slot.
struct Running {
    job: Job,
    /// Prompt tokens evaluated so far (or found in the slot's cache).
    fed: usize,
    /// Prompt tokens found in the slot's cache.
    cached: usize,
    sampler: Sampler,
    detok: Detokenizer,
    /// Text held back while it may begin a stop string.
    pending: String,
    /// Log-probabilities of the tokens whose text begins in `pending` (offsets into it) or
    /// is still held by the detokenizer (at its end).
    pending_logprobs: Vec<TokenLogprob>,
    generated: usize,
    /// `echo` with `logprobs`: each prompt token's after the first, with its alternatives, as
    /// its chunk is evaluated (with every position's logits, outside the shared passes).
    scores: Vec<(f32, Vec<(u32, f32)>)>,
    /// Whether the prompt's text went out (`echo`).
    echoed: bool,
    /// The logits with `logit_bias` added (empty without it).
    biased: Vec<f32>,
    /// KV cache bytes reserved for this request: its prompt and `max_tokens`, at most the slot.
    reserved: usize,
}

struct Worker {
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    rx: mpsc::Receiver<Job>,
    engine: Arc<Engine>,
    /// KV cache bytes the running requests may reserve together (and idle slots' caches,
    /// which are released when a request needs their room).
    budget: usize,
    prompt_cache: bool,
}

impl Worker {
    fn run(mut self) {
        loop {
            let idle = self.slots.iter().all(|s| s.run.is_none()) && self.queue.is_empty();
            if idle {
                match self.rx.recv() {
                    Ok(job) => self.queue.push_back(job),
                    Err(_) => return, // the server is gone
                }
            }
            while let Ok(job) = self.rx.try_recv() {
                self.queue.push_back(job);
            }
            self.admit();
            let t = Instant::now();
            self.step();
            Metrics::add(&self.engine.metrics.busy_us, t.elapsed().as_micros() as u64);
            // A slot whose request ended gives its KV pages back, so that idle memory returns to
            // what it was and the running requests' pages stay within the budget (with the
            // prompt cache, it keeps them until a request needs the room: `admit`).
            let release = !self.prompt_cache;
            for slot in self.slots.iter_mut().filter(|s| release && s.run.is_none() && !s.session.tokens().is_empty()) {
                if let Err(e) = slot.session.release_memory() {
                    // The slot keeps its pages (and works on); the next request's pages are the same.
                    eprintln!("autark serve: {e}");
                    slot.session.reset();
                }
            }
            self.publish();
        }
    }

    /// Sets the gauges of the slots and their KV cache.
    fn publish(&self) {
        let m = &self.engine.metrics;
        let busy = self.slots.iter().filter(|s| s.run.is_some());
        let used: usize = busy.clone().map(|s| s.session.kv_bytes_for(s.session.tokens().len())).sum();
        m.slots_busy.store(busy.count() as u64, Ordering::Relaxed);
        m.kv_used_bytes.store(used as u64, Ordering::Relaxed);
        m.kv_reserved_bytes.store(self.reserved() as u64, Ordering::Relaxed);
        m.kv_cached_bytes.store(self.idle_cache_bytes(None) as u64, Ordering::Relaxed);
    }

    /// KV cache bytes the idle slots (but `except`) hold for the prompt cache.
    fn idle_cache_bytes(&self, except: Option<usize>) -> usize {
        let idle = self
            .slots
            .iter()
            .enumerate()
            .filter(|&(i, s)| s.run.is_none() && Some(i) != except && !s.session.tokens().is_empty());
        idle.map(|(_, s)| s.session.kv_bytes_for(s.session.tokens().len())).sum()
    }

    /// One step: each busy slot plans its unit of work (emitting the token it sampled), then all
    /// of them are evaluated together.
    fn step(&mut self) {
        let m = &self.engine.metrics;
        let feeds: Vec<Option<Feed>> = self.slots.iter_mut().map(|slot| plan(slot, m)).collect();
        // The requests that ended have had their last event: their clients may read the gauges
        // next, so they are set before the pass.
        self.publish();
        // The first slot leads every pass (its scratch is the largest), with or without tokens.
        let mut work: Vec<(&mut Session, &[u32])> = Vec::with_capacity(self.slots.len());
        let mut members = Vec::with_capacity(self.slots.len());
        for (i, (slot, feed)) in self.slots.iter_mut().zip(&feeds).enumerate() {
            let shared = feed.as_ref().filter(|f| !f.score);
            if i == 0 || shared.is_some() {
                work.push((&mut slot.session, shared.map_or(&[][..], |f| &f.tokens)));
                members.extend(shared.is_some().then_some(i));
            }
        }
        // A panic inside the runtime (a bug) fails these requests, not the server: the slots'
        // sessions are reset when they take their next requests.
        if !members.is_empty() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Session::eval_together(&mut work)));
            drop(work);
            if let Some(err) = failure(r.map(|r| r.map_err(internal))) {
                self.fail(&members, &err);
            }
        }
        // Prompt chunks whose every position is scored run on their own.
        for (i, feed) in feeds.iter().enumerate().filter_map(|(i, f)| f.as_ref().filter(|f| f.score).map(|f| (i, f))) {
            let slot = &mut self.slots[i];
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| score(slot, &feed.tokens)));
            if let Some(err) = failure(r) {
                self.fail(&[i], &err);
            }
        }
    }

    /// Ends these slots' requests with `err`, and forgets what the idle slots hold (a failed
    /// pass may have left any of them part-written).
    fn fail(&mut self, slots: &[usize], err: &ApiError) {
        for &i in slots {
            if let Some(run) = self.slots[i].run.take() {
                run.job.send(Event::Failed(err.clone()));
            }
        }
        self.slots.iter_mut().filter(|s| s.run.is_none()).for_each(|s| s.session.reset());
    }

    /// KV cache bytes the running requests reserved.
    fn reserved(&self) -> usize {
        self.slots.iter().filter_map(|s| s.run.as_ref()).map(|r| r.reserved).sum()
    }

    /// Moves queued jobs into free slots while the KV budget has room for them, first come first
    /// served (a long request at the head waits for room rather than being overtaken forever);
    /// drops those whose client left while waiting. With the prompt cache, a job goes to the
    /// free slot whose cached tokens share the longest beginning with its prompt (else to the
    /// free slot holding the fewest), and idle slots' caches are released, largest first, when
    /// the budget needs their room.
    fn admit(&mut self) {
        let m = Arc::clone(&self.engine.metrics);
        self.queue.retain(|j| {
            let gone = j.cancel.load(Ordering::Acquire) || j.events.is_closed();
            if gone {
                m.queued.fetch_sub(1, Ordering::AcqRel);
                Metrics::add(&m.cancelled, 1);
            }
            !gone
        });
        let mut reserved = self.reserved();
        while let Some(job) = self.queue.front() {
            let (prompt, req) = (&job.request.tokens, &job.request);
            // Scoring a prompt needs every position's logits: it evaluates the whole prompt.
            let reuse = self.prompt_cache && !(req.echo && req.logprobs.is_some());
            let free = self.slots.iter().enumerate().filter(|(_, s)| s.run.is_none());
            let best = free
                .map(|(i, s)| {
                    let common = if reuse { common_prefix(s.session.tokens(), prompt) } else { 0 };
                    (i, common, s.session.tokens().len())
                })
                .max_by_key(|&(i, common, held)| (common, std::cmp::Reverse(held), std::cmp::Reverse(i)));
            let Some((i, common, _)) = best else { break };
            let need = self.slots[i].session.kv_bytes_for(prompt.len().saturating_add(req.params.max_tokens));
            while reserved.saturating_add(need).saturating_add(self.idle_cache_bytes(Some(i))) > self.budget {
                let idle = self.slots.iter_mut().enumerate().filter(|(k, s)| *k != i && s.run.is_none());
                let Some((_, s)) = idle.max_by_key(|(_, s)| s.session.tokens().len()) else { break };
                if s.session.tokens().is_empty() || s.session.release_memory().is_err() {
                    s.session.reset();
                    break;
                }
            }
            if reserved.saturating_add(need) > self.budget {
                break;
            }
            reserved += need;
            let Some(job) = self.queue.pop_front() else { break };
            m.queued.fetch_sub(1, Ordering::AcqRel);
            let slot = &mut self.slots[i];
            let vocab = slot.session.model().config().vocab_size;
            let sampler = match Sampler::new(job.request.params.sampler, vocab) {
                Ok(s) => s,
                Err(e) => {
                    job.send(Event::Failed(ApiError::invalid(None, e.to_string())));
                    reserved -= need;
                    continue;
                }
            };
            // At least the prompt's last token is evaluated, for the logits of the first draw.
            let keep = common.min(job.request.tokens.len() - 1);
            if keep > 0 {
                slot.session.truncate(keep);
            } else {
                slot.session.reset();
            }
            // A sliding-window model's ring cache may not go back that far: then it held none.
            let cached = slot.session.tokens().len();
            Metrics::add(&m.cached_prompt_tokens, cached as u64);
            slot.run = Some(Running {
                job,
                fed: cached,
                cached,
                sampler,
                detok: Detokenizer::new(),
                pending: String::new(),
                pending_logprobs: Vec::new(),
                generated: 0,
                scores: Vec::new(),
                echoed: false,
                biased: Vec::new(),
                reserved: need,
            });
        }
    }
}

/// How many tokens `a` and `b` begin with alike.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A runtime error while generating: not the request's fault (500).
fn internal(e: autark_runtime::RuntimeError) -> ApiError {
    ApiError::status(500, "server_error", e.to_string())
}

/// The error of a step's evaluation that failed or panicked (a bug in the runtime).
fn failure(r: std::thread::Result<Result<(), ApiError>>) -> Option<ApiError> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(ApiError::status(500, "server_error", "internal error while generating")),
    }
}

/// Tokens a slot evaluates in a step.
struct Feed {
    tokens: Vec<u32>,
    /// A prompt chunk whose every position's logits are wanted (`echo` with `logprobs`).
    score: bool,
}

/// Evaluates a prompt chunk keeping every position's logits, and scores the prompt tokens they
/// predict.
fn score(slot: &mut Slot, chunk: &[u32]) -> Result<(), ApiError> {
    let Some(run) = slot.run.as_mut() else { return Ok(()) };
    let session = &mut slot.session;
    let vocab = session.model().config().vocab_size;
    let start = session.tokens().len();
    let mut logits = vec![0f32; chunk.len() * vocab];
    session.eval_all_logits(chunk, &mut logits).map_err(internal)?;
    let (prompt, top) = (&run.job.request.tokens, run.job.request.logprobs.unwrap_or(0));
    for (j, row) in logits.chunks_exact(vocab).enumerate() {
        if let Some(&next) = prompt.get(start + j + 1) {
            run.scores.push(autark_runtime::token_logprobs(row, next, top));
        }
    }
    Ok(())
}

/// A slot's unit of work for this step: the tokens to evaluate (a prompt chunk, or the token it
/// just sampled and emitted), or `None` when it is idle or its request just ended.
fn plan(slot: &mut Slot, m: &Metrics) -> Option<Feed> {
    let run = slot.run.as_mut()?;
    if run.job.cancel.load(Ordering::Acquire) || run.job.events.is_closed() {
        Metrics::add(&m.cancelled, 1);
        slot.run = None;
        return None;
    }
    // A panic inside the runtime (a bug) fails this request, not the server: the slot's session
    // is reset when it takes its next request.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| advance(&slot.session, run, m)))
        .unwrap_or_else(|_| Err(ApiError::status(500, "server_error", "internal error while generating")));
    match r {
        Ok(Next::Eval(feed)) => Some(feed),
        Ok(Next::Finish(reason)) => {
            let prompt_tokens = run.job.request.tokens.len();
            let finish = Finish { reason, prompt_tokens, cached_tokens: run.cached, completion_tokens: run.generated };
            run.job.send(Event::Done(finish));
            slot.run = None;
            None
        }
        Err(e) => {
            run.job.send(Event::Failed(e));
            slot.run = None;
            None
        }
    }
}

/// What a slot does next.
enum Next {
    Eval(Feed),
    Finish(&'static str),
}

/// Takes the next prompt chunk, or samples, emits and takes the next token; or the finish reason
/// when the request is complete.
fn advance(session: &Session, run: &mut Running, m: &Metrics) -> Result<Next, ApiError> {
    let req = &mut run.job.request;
    if run.fed < req.tokens.len() {
        let end = (run.fed + CHUNK).min(req.tokens.len());
        let chunk = req.tokens[run.fed..end].to_vec();
        Metrics::add(&m.prompt_tokens, (end - run.fed) as u64);
        run.fed = end;
        return Ok(Next::Eval(Feed { tokens: chunk, score: req.echo && req.logprobs.is_some() }));
    }
    let model = Arc::clone(session.model());
    let tok = model.tokenizer();
    if req.echo && !run.echoed {
        run.echoed = true;
        echo(run, tok)?;
    }
    let req = &mut run.job.request;
    if run.generated >= req.params.max_tokens {
        flush(run, tok)?;
        return Ok(Next::Finish("length"));
    }
    let next = {
        let mut logits = match req.guide.as_deref_mut() {
            Some(g) => g.mask(session.logits()).map_err(internal)?,
            None => session.logits(),
        };
        if !req.logit_bias.is_empty() {
            run.biased.clear();
            run.biased.extend_from_slice(logits);
            for &(t, b) in &req.logit_bias {
                // Checked against the vocabulary when the request was read.
                if let Some(l) = run.biased.get_mut(t as usize) {
                    *l += b;
                }
            }
            logits = &run.biased;
        }
        run.sampler.sample(logits, session.tokens())
    };
    if tok.is_end_of_generation(next) {
        flush(run, tok)?;
        return Ok(Next::Finish("stop"));
    }
    if let Some(g) = req.guide.as_deref_mut() {
        g.accept(next).map_err(internal)?;
    }
    if let Some(top) = req.logprobs {
        let (logprob, alternatives) = autark_runtime::token_logprobs(session.logits(), next, top);
        let bytes = |t| tok.token_bytes(t).unwrap_or_default();
        let top = alternatives.into_iter().map(|(t, l)| (bytes(t), l)).collect();
        let offset = run.pending.len();
        run.pending_logprobs.push(TokenLogprob { bytes: bytes(next), logprob: Some(logprob), top, offset });
    }
    run.generated += 1;
    Metrics::add(&m.generated_tokens, 1);
    let piece = run.detok.push(tok, next).map_err(internal)?;
    run.pending.push_str(&piece);
    let stop = &run.job.request.params.stop;
    if let Some(at) = stop.iter().filter_map(|s| run.pending.find(s.as_str())).min() {
        // The tokens whose text begins before the stop string come with the text before it.
        if at > 0 {
            let lps = take_logprobs(&mut run.pending_logprobs, at);
            run.job.send(Event::Text(run.pending[..at].to_string(), lps));
        }
        return Ok(Next::Finish("stop"));
    }
    let hold = stop.iter().map(|s| autark_runtime::generate::longest_suffix_prefix(&run.pending, s)).max().unwrap_or(0);
    let emit = run.pending.len() - hold;
    if emit > 0 {
        let text: String = run.pending.drain(..emit).collect();
        let lps = take_logprobs(&mut run.pending_logprobs, emit);
        run.job.send(Event::Text(text, lps));
    }
    if run.job.request.guide.as_ref().is_some_and(|g| g.is_finished()) {
        flush(run, tok)?;
        return Ok(Next::Finish("stop"));
    }
    if run.generated >= run.job.request.params.max_tokens || session.tokens().len() >= session.n_ctx() {
        flush(run, tok)?;
        return Ok(Next::Finish("length"));
    }
    Ok(Next::Eval(Feed { tokens: vec![next], score: false }))
}

/// Sends the prompt's text (`echo`), with its tokens' log-probabilities when asked: the first
/// token has none, the others' came from `score`. The prompt's text is its tokens' (decoded as
/// the completion's, which continues from it), and no stop string is looked for in it.
fn echo(run: &mut Running, tok: &autark_runtime::Tokenizer) -> Result<(), ApiError> {
    let bytes = |t| tok.token_bytes(t).unwrap_or_default();
    let req = &run.job.request;
    let mut scores = std::mem::take(&mut run.scores).into_iter();
    let mut text = String::new();
    let mut lps = Vec::new();
    for (i, &t) in req.tokens.iter().enumerate() {
        if req.logprobs.is_some() {
            let (logprob, top) = match i {
                0 => (None, Vec::new()),
                _ => {
                    let (l, top) = scores.next().unwrap_or((f32::NAN, Vec::new()));
                    (Some(l), top.into_iter().map(|(t, l)| (bytes(t), l)).collect())
                }
            };
            lps.push(TokenLogprob { bytes: bytes(t), logprob, top, offset: text.len() });
        }
        text.push_str(&run.detok.push(tok, t).map_err(internal)?);
    }
    // Tokens whose text the detokenizer still holds (an unfinished character) come with the
    // completion's first text.
    let held = lps.partition_point(|t| t.offset < text.len());
    run.pending_logprobs = lps.split_off(held).into_iter().map(|t| TokenLogprob { offset: 0, ..t }).collect();
    if !text.is_empty() {
        run.job.send(Event::Text(text, lps));
    }
    Ok(())
}

/// The log-probabilities of the tokens whose text begins within the first `end` bytes of the
/// pending text (which are being sent); the others' offsets move back by `end`.
fn take_logprobs(pending: &mut Vec<TokenLogprob>, end: usize) -> Vec<TokenLogprob> {
    let n = pending.partition_point(|t| t.offset < end);
    let taken = pending.drain(..n).collect();
    pending.iter_mut().for_each(|t| t.offset -= end);
    taken
}

/// Emits what is held back (a partial stop string, an unfinished character) at the end.
fn flush(run: &mut Running, tok: &autark_runtime::Tokenizer) -> Result<(), ApiError> {
    let rest = run.detok.flush(tok).map_err(internal)?;
    run.pending.push_str(&rest);
    if !run.pending.is_empty() || !run.pending_logprobs.is_empty() {
        let lps = std::mem::take(&mut run.pending_logprobs);
        run.job.send(Event::Text(std::mem::take(&mut run.pending), lps));
    }
    Ok(())
}
