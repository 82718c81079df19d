//! Threads that serve connections, each on its own single-threaded runtime.

/// A connection to serve, handed from the accept loop to a worker.
pub(super) type Job = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Threads that serve connections, each on its own single-threaded runtime: a connection, the
/// upstream connections its requests use, and their timers all live on one thread, so a
/// proxied request involves no cross-thread wake-ups (on a busy multi-threaded runtime those
/// cost more than the proxying itself). Connections are dealt round-robin.
pub(super) struct Workers {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Job>>,
    next: usize,
}

impl Workers {
    pub(super) fn start(count: usize) -> Self {
        let mut queues = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            // The runtime is built on the worker thread itself: a runtime must never be dropped
            // on the async accept loop (tokio panics), which is where a closure that failed to
            // start as a thread would be dropped.
            let spawned = std::thread::Builder::new()
                .name(format!("sealgate-worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            // The queue closes with `rx`: its connections go to the others.
                            tracing::error!(error = %e, index, "cannot start a worker runtime");
                            return;
                        }
                    };
                    // Returns when the accept loop is gone (after the graceful shutdown), which
                    // drops whatever connections are left.
                    runtime.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            tokio::spawn(job);
                        }
                    });
                });
            match spawned {
                Ok(_) => queues.push(tx),
                Err(e) => {
                    tracing::error!(error = %e, index, "cannot start a worker thread");
                }
            }
        }
        if queues.is_empty() {
            tracing::error!("no worker thread started; serving on the main runtime");
        }
        Self { queues, next: 0 }
    }

    /// Runs `job` on the next worker (on the calling runtime if no worker takes it).
    pub(super) fn run(&mut self, mut job: Job) {
        for _ in 0..self.queues.len() {
            self.next = (self.next + 1) % self.queues.len();
            match self.queues[self.next].send(job) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::SendError(back)) => job = back,
            }
        }
        tokio::spawn(job);
    }
}
