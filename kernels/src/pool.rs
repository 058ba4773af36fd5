//! The fork-join pool a session's matrix products and attention run on.
//!
//! A forward pass is a few hundred short parallel loops (SmolLM2 decode: 240 per token, ~10 µs
//! each). Under rayon the helper threads went to sleep between them and were woken by the
//! kernel each time (a quarter of two-thread decode in the scheduler), and its work splitting
//! gave each thread scattered pieces of a matrix. Here helpers spin for a while (`SPIN`) after
//! each loop, so the next one starts without a system call, and park on a condition variable
//! only when the session is idle; matrix loops give each thread one contiguous share of the
//! rows (two-thread SmolLM2 decode: 408 t/s under rayon, 560 here; docs/RUNTIME.md).
//!
//! `Pool::install(f)` runs `f` with the pool as the current one of this thread (as rayon's
//! `install`); inside it `for_each(n, task)` runs `task(0..n)` on the calling thread and the
//! helpers, tasks claimed one at a time from a shared counter; outside any pool, or while the
//! pool is busy with another caller's loop, it runs them on the calling thread. A loop returns
//! only after every helper has left it, so tasks may borrow the caller's stack. A panicking task
//! is re-raised on the calling thread after the loop ends. Results never depend on which thread
//! ran a task (tasks write disjoint outputs).

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The cores this process may run on (`std::thread::available_parallelism`, read once: it reads
/// cgroup files on each call, tens of µs, too slow for a per-token question).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(200);

type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// A task loop's closure with its lifetime erased (see `Pool::run` for why that is sound).
#[derive(Clone, Copy)]
struct JobRef(*const Task<'static>);

/// A value alone on its cache line (helpers poll `epoch` while tasks are claimed from `next`).
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Shared {
    /// Incremented to start a loop (or to stop the helpers).
    epoch: Line<AtomicU64>,
    /// The current loop's tasks: written by the caller before `epoch` is incremented (release),
    /// read by helpers after they see the new epoch (acquire), cleared after all have left.
    job: UnsafeCell<Option<JobRef>>,
    n_tasks: AtomicUsize,
    /// Participants (the caller and the helpers).
    parts: usize,
    /// Each participant takes a contiguous share of the tasks (else all claim from `next`).
    contiguous: AtomicBool,
    next: Line<AtomicUsize>,
    /// Contiguous loops: participant p's next task, from the start of its share (p·n/parts)
    /// to its end; a participant done with its own share claims the others' next tasks.
    cursors: Box<[Line<AtomicUsize>]>,
    /// Helpers that have left the current loop.
    done: Line<AtomicUsize>,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    panicked: AtomicBool,
}

// SAFETY: `job` is the only non-Sync field; it is written only by the thread that holds
// `Pool::busy` while no helper reads it (before `epoch` is published, or after every helper
// has incremented `done`), and read by helpers only between those points. The pointee is a
// `Sync` closure.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer inside is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// A pool of `threads − 1` helper threads plus the thread that calls it.
pub struct Pool {
    shared: Arc<Shared>,
    helpers: Vec<std::thread::JoinHandle<()>>,
    busy: Mutex<()>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.threads()).finish()
    }
}

thread_local! {
    static CURRENT: Cell<*const Pool> = const { Cell::new(std::ptr::null()) };
}

impl Pool {
    /// A pool that computes on `threads` threads (the caller and `threads − 1` helpers).
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            epoch: Line(AtomicU64::new(0)),
            job: UnsafeCell::new(None),
            n_tasks: AtomicUsize::new(0),
            parts: threads.max(1),
            contiguous: AtomicBool::new(false),
            next: Line(AtomicUsize::new(0)),
            cursors: (0..threads.max(1)).map(|_| Line(AtomicUsize::new(0))).collect(),
            done: Line(AtomicUsize::new(0)),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let mut pool = Pool { shared, helpers: Vec::new(), busy: Mutex::new(()) };
        for i in 1..threads.max(1) {
            let s = Arc::clone(&pool.shared);
            // On an error `pool` is dropped, which stops the helpers already started.
            pool.helpers.push(std::thread::Builder::new().name(format!("autark-{i}")).spawn(move || helper(&s, i))?);
        }
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `f` with this pool as the calling thread's current pool.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const Pool);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(self)));
        f()
    }

    fn run(&self, n: usize, contiguous: bool, task: &Task<'_>) {
        // Under `dispatch::with_isa`, the helpers run this loop's tasks with the caller's table.
        match crate::dispatch::overridden() {
            Some(table) => self.run_tasks(n, contiguous, &|i| crate::dispatch::with_table(Some(table), || task(i))),
            None => self.run_tasks(n, contiguous, task),
        }
    }

    fn run_tasks(&self, n: usize, contiguous: bool, task: &Task<'_>) {
        let busy = if self.helpers.is_empty() || n < 2 { None } else { self.busy.try_lock().ok() };
        let Some(_busy) = busy else {
            (0..n).for_each(task);
            return;
        };
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased. The pointer is published to helpers below and
        // this function returns only after every helper has incremented `done` for this loop,
        // i.e. stopped using it, and after clearing it; `task` outlives this call.
        let job = JobRef(unsafe { std::mem::transmute::<*const Task<'_>, *const Task<'static>>(task) });
        // SAFETY: we hold `busy` and no helper is inside a loop (all left the previous one).
        unsafe { *s.job.get() = Some(job) };
        s.n_tasks.store(n, Ordering::Relaxed);
        s.contiguous.store(contiguous, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        for (p, c) in s.cursors.iter().enumerate() {
            c.store(p * n / s.parts, Ordering::Relaxed);
        }
        s.done.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(s, task, 0)));
        while s.done.load(Ordering::Acquire) < self.helpers.len() {
            std::hint::spin_loop();
        }
        // SAFETY: every helper has left the loop (acquire above pairs with their release).
        unsafe { *s.job.get() = None };
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a task of a parallel loop panicked on a helper thread");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs participant `part`'s tasks of the current loop: its contiguous share, in order, then
/// the next unclaimed tasks of the other shares (so that a thread the host has slowed down does
/// not keep the others waiting at the end of every loop); or tasks from the shared counter until
/// none is left. Every task runs exactly once: each index is claimed through one counter.
fn claim(s: &Shared, task: &Task<'_>, part: usize) {
    let n = s.n_tasks.load(Ordering::Relaxed);
    if s.contiguous.load(Ordering::Relaxed) {
        for k in 0..s.parts {
            let q = (part + k) % s.parts;
            let end = (q + 1) * n / s.parts;
            loop {
                let i = s.cursors[q].fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                task(i);
            }
        }
        return;
    }
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        task(i);
    }
}

fn helper(s: &Shared, part: usize) {
    let mut seen = 0u64;
    loop {
        let t0 = Instant::now();
        let mut spins = 0u32;
        loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            spins += 1;
            if !spins.is_multiple_of(256) || t0.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.epoch.load(Ordering::SeqCst) == seen {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            drop(g);
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the caller wrote `job` before publishing this epoch (acquired above) and
        // keeps it and its closure alive until this helper increments `done`.
        let job = unsafe { *s.job.get() };
        if let Some(JobRef(task)) = job {
            // SAFETY: as above: the closure lives until `done` is incremented below.
            let task = unsafe { &*task };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(s, task, part))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

/// Threads of the current pool (1 outside any pool).
pub fn current_threads() -> usize {
    CURRENT.with(|c| {
        let p = c.get();
        // SAFETY: a non-null pointer was set by `install`, whose `&self` outlives the closure
        // that runs on this thread while it is set; `install` restores the previous value.
        if p.is_null() {
            1
        } else {
            unsafe { (*p).threads() }
        }
    })
}

/// `task(i)` for `i` in `0..n` on the current pool (see the module documentation), each thread
/// a contiguous share of `0..n`: for equal tasks that stream memory in order (matrix rows), so
/// every thread reads one run of the matrix, as the hardware prefetcher likes. A thread that
/// finishes its share early takes the next tasks of the others'.
pub fn for_each(n: usize, task: &(dyn Fn(usize) + Sync)) {
    run(n, true, task)
}

/// As `for_each`, tasks claimed one at a time: for tasks of unequal cost (causal attention).
pub fn for_each_dynamic(n: usize, task: &(dyn Fn(usize) + Sync)) {
    run(n, false, task)
}

fn run(n: usize, contiguous: bool, task: &(dyn Fn(usize) + Sync)) {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        (0..n).for_each(task);
    } else {
        // SAFETY: as in `current_threads`.
        unsafe { (*p).run(n, contiguous, task) }
    }
}

/// A task of `for_each_chunks2`: chunk index and the two chunks.
pub type ChunkTask<'a, A, B> = dyn Fn(usize, &mut [A], &mut [B]) + Sync + 'a;

/// Two buffers cut into `n` chunks (`a` of `ca` elements, `b` of `cb`), chunk `i` of both
/// handed to `task(i, …)`: a parallel loop over tokens that writes each token's outputs.
/// `contiguous`: each thread a contiguous share, as `for_each` (equal tasks: element-wise
/// steps), or tasks claimed one at a time, as `for_each_dynamic` (causal attention).
pub fn for_each_chunks2<A: Send, B: Send>(
    a: &mut [A],
    ca: usize,
    b: &mut [B],
    cb: usize,
    n: usize,
    contiguous: bool,
    task: &ChunkTask<'_, A, B>,
) {
    assert!(ca * n <= a.len() && cb * n <= b.len(), "for_each_chunks2: {n} chunks exceed the buffers");
    let (pa, pb) = (SendPtr(a.as_mut_ptr()), SendPtr(b.as_mut_ptr()));
    run(n, contiguous, &|i| {
        let (pa, pb) = (&pa, &pb);
        // SAFETY: chunk i of each buffer lies inside it (asserted above) and chunks of
        // different i are disjoint; each i is handed to exactly one task, and the buffers are
        // borrowed mutably for the whole loop.
        let (x, y) = unsafe {
            (std::slice::from_raw_parts_mut(pa.0.add(i * ca), ca), std::slice::from_raw_parts_mut(pb.0.add(i * cb), cb))
        };
        task(i, x, y)
    });
}

struct SendPtr<T>(*mut T);
// SAFETY: used only by `for_each_chunks2`, whose tasks touch disjoint chunks of `Send` data.
unsafe impl<T: Send> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_on_any_pool() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads).unwrap();
            for n in [0, 1, 2, 5, 64, 1000] {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                pool.install(|| {
                    for_each(n, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    })
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "threads {threads} n {n}");
            }
            assert_eq!(pool.install(current_threads), threads);
        }
        assert_eq!(current_threads(), 1);
    }

    #[test]
    fn a_thread_done_early_takes_the_rest_of_a_slow_share() {
        let pool = Pool::new(2).unwrap();
        let caller = std::thread::current().id();
        let by_helper: Vec<AtomicBool> = (0..16).map(|_| AtomicBool::new(false)).collect();
        pool.install(|| {
            for_each(16, &|i| {
                if std::thread::current().id() == caller {
                    // The caller's share (tasks 0–7) runs slowly: the helper finishes 8–15 first.
                    std::thread::sleep(Duration::from_millis(20));
                } else {
                    by_helper[i].store(true, Ordering::Relaxed);
                }
            })
        });
        let stolen = (0..8).filter(|&i| by_helper[i].load(Ordering::Relaxed)).count();
        assert!(stolen > 0, "the helper took none of the caller's share");
    }

    #[test]
    fn parked_helpers_wake_and_nested_loops_run_inline() {
        let pool = Pool::new(2).unwrap();
        std::thread::sleep(SPIN * 3); // the helper parks
        let sum = AtomicUsize::new(0);
        pool.install(|| {
            for_each(8, &|i| {
                // A loop inside a task finds the pool busy and runs on this thread.
                for_each(4, &|j| {
                    sum.fetch_add(i * 4 + j, Ordering::Relaxed);
                });
            })
        });
        assert_eq!(sum.load(Ordering::Relaxed), (0..32).sum::<usize>());
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_survives() {
        let pool = Pool::new(2).unwrap();
        for _ in 0..4 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| for_each(16, &|i| assert!(i != 7, "task 7")))
            }));
            assert!(r.is_err());
            let n = AtomicUsize::new(0);
            pool.install(|| {
                for_each(16, &|_| {
                    n.fetch_add(1, Ordering::Relaxed);
                })
            });
            assert_eq!(n.load(Ordering::Relaxed), 16);
        }
    }

    #[test]
    fn helpers_run_a_loop_with_the_callers_with_isa_table() {
        use crate::dispatch::{kernels, with_isa};
        use crate::Isa;
        let pool = Pool::new(2).unwrap();
        let caller = std::thread::current().id();
        let isas: Vec<Mutex<Option<(Isa, bool)>>> = (0..64).map(|_| Mutex::new(None)).collect();
        let record = |i: usize| {
            std::thread::sleep(Duration::from_micros(200)); // so that the helper takes a share
            *isas[i].lock().unwrap() = Some((kernels().isa, std::thread::current().id() == caller));
        };
        with_isa(Isa::Scalar, || pool.install(|| for_each(64, &record)));
        let got: Vec<(Isa, bool)> = isas.iter().map(|m| m.lock().unwrap().expect("every task ran")).collect();
        assert!(got.iter().any(|&(_, on_caller)| !on_caller), "no task ran on the helper");
        assert!(got.iter().all(|&(isa, _)| isa == Isa::Scalar), "{got:?}");
        // Outside `with_isa` the helpers use the process-wide table again.
        let outside = Mutex::new(Vec::new());
        pool.install(|| {
            for_each(64, &|_| {
                std::thread::sleep(Duration::from_micros(200));
                outside.lock().unwrap().push(kernels().isa);
            })
        });
        assert!(outside.into_inner().unwrap().iter().all(|&i| i == crate::dispatch::kernels().isa));
    }

    #[test]
    fn chunks2_hands_out_disjoint_chunks() {
        let pool = Pool::new(2).unwrap();
        let (mut a, mut b) = (vec![0u32; 30], vec![0u64; 20]);
        pool.install(|| {
            for_each_chunks2(&mut a, 3, &mut b, 2, 10, false, &|i, x, y| {
                x.iter_mut().for_each(|v| *v = i as u32);
                y.iter_mut().for_each(|v| *v = 2 * i as u64);
            })
        });
        assert!(a.chunks(3).enumerate().all(|(i, c)| c.iter().all(|&v| v == i as u32)));
        assert!(b.chunks(2).enumerate().all(|(i, c)| c.iter().all(|&v| v == 2 * i as u64)));
    }
}
