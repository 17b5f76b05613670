//! Micro-batching of recommendation requests: a dedicated thread takes every
//! request waiting (up to a cap) and scores them in one pass over the item
//! table (`Ranker::recommend_batch`), across rayon's threads. Alone, a request
//! is a batch of one with both cores; under load, one read of the catalogue
//! serves many requests instead of one, which is what bounds throughput.

use std::sync::{Arc, Condvar, Mutex};

use reelkit_ranker::{BatchRequest, Recommendations, Request};
use tokio::sync::oneshot;

use crate::loaded::Loaded;

/// One waiting request.
pub(crate) struct Job {
    pub user: u64,
    pub k: usize,
    pub req: Request,
    pub model: Arc<Loaded>,
    pub reply: oneshot::Sender<Recommendations>,
}

/// The queue and its worker threads, which exit once [`Batcher::shut_down`]
/// is called and the queue is empty (the service's state calls it when it is
/// dropped).
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_batch: usize,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: Vec<Job>,
    closed: bool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job(user {}, k {})", self.user, self.k)
    }
}

impl Batcher {
    /// A batcher and its threads. With `workers == 0`, one thread takes
    /// batches and scans each across rayon's threads; with `workers = w > 0`,
    /// `w` threads each take their own batch and scan it alone (no straggler
    /// waits between threads, at the cost of single-thread latency).
    pub fn start(max_batch: usize, workers: usize) -> Arc<Batcher> {
        let b = Arc::new(Batcher {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            max_batch: max_batch.max(1),
        });
        for w in 0..workers.max(1) {
            let worker = b.clone();
            let solo = workers > 0;
            std::thread::Builder::new()
                .name(format!("reelkit-batcher-{w}"))
                .spawn(move || {
                    if solo {
                        match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                            Ok(pool) => pool.install(|| worker.run()),
                            Err(_) => worker.run(),
                        }
                    } else {
                        worker.run()
                    }
                })
                .expect("spawning a batcher thread");
        }
        b
    }

    /// Queues a job; after shutdown the job is dropped (its handler answers 503).
    pub fn submit(&self, job: Job) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if !q.closed {
            q.jobs.push(job);
            self.ready.notify_one();
        }
    }

    /// Lets the worker threads finish the queued jobs and exit.
    pub fn shut_down(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    fn run(&self) {
        loop {
            let mut jobs: Vec<Job> = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while q.jobs.is_empty() && !q.closed {
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.jobs.is_empty() {
                    return;
                }
                let n = q.jobs.len().min(self.max_batch);
                q.jobs.drain(..n).collect()
            };
            // One batch per model (a reload may leave jobs on two models).
            while !jobs.is_empty() {
                let model = jobs[0].model.clone();
                let (same, rest): (Vec<Job>, Vec<Job>) = jobs
                    .into_iter()
                    .partition(|j| Arc::ptr_eq(&j.model, &model));
                jobs = rest;
                // A panic must not stop the service: the jobs' senders drop
                // and their handlers answer 503.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let batch: Vec<BatchRequest<'_>> = same
                        .iter()
                        .map(|j| BatchRequest {
                            user_id: j.user,
                            k: j.k,
                            request: &j.req,
                        })
                        .collect();
                    let results = model.ranker.recommend_batch(&batch);
                    drop(batch);
                    for (job, r) in same.into_iter().zip(results) {
                        let _ = job.reply.send(r);
                    }
                }));
            }
        }
    }
}
