//! Many [`Session`]s decoded together: jobs (one question's loop each) written as plain
//! sequential `async` code over a [`Row`], run `batch` at a time on the rows of one KV cache.
//! Whenever every running job waits on the model, the single-token steps without captures (a
//! draft's greedy decoding, most of the work) run as one batched forward with a column per row
//! ([`decode_rows`]); every other request (a prefill, a re-encoded suffix, a retrieval pass with
//! captures) runs on its own row as [`Session::feed`] runs it.
//!
//! Deterministic: one thread, jobs polled and requests served in row order, rows handed to the
//! next job in row order, so which steps share a forward depends only on the jobs, never on
//! timing. With `batch` 1 every request is a plain [`Session::feed`] (the one-by-one path).
use std::cell::RefCell;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tch::Tensor;

use super::kv_cache::KvCache;
use super::model::{CaptureRequest, Model, StepOutput};
use super::session::{decode_rows, Session, SessionError};

/// A request of a job to the model, waiting for its turn.
struct Request {
    ids: Vec<u32>,
    hidden: Vec<Range<usize>>,
    capture: CaptureRequest,
}

struct Shared<'m> {
    sessions: Vec<Session<'m>>,
    /// Steps of each row's current job served by a batched forward.
    batched: Vec<usize>,
    pending: Vec<Option<Request>>,
    done: Vec<Option<Result<StepOutput, SessionError>>>,
}

/// A job's handle on its row: the session's bookkeeping now, its forwards when the batch runs.
pub struct Row<'m> {
    shared: Rc<RefCell<Shared<'m>>>,
    row: usize,
}

impl<'m> Row<'m> {
    /// The token ids in the row's cache.
    pub fn ids(&self) -> Vec<u32> {
        self.shared.borrow().sessions[self.row].ids().to_vec()
    }

    /// How many of this job's steps a batched forward served so far.
    pub fn batched_steps(&self) -> usize {
        self.shared.borrow().batched[self.row]
    }

    /// See [`Session::truncate`].
    pub fn truncate(&self, len: usize) -> Result<(), SessionError> {
        self.shared.borrow_mut().sessions[self.row].truncate(len)
    }

    /// See [`Session::feed`]: resolves once the batch has run it.
    pub async fn feed(&self, ids: &[u32], hidden: &[Range<usize>], capture: CaptureRequest) -> Result<StepOutput, SessionError> {
        self.shared.borrow_mut().pending[self.row] = Some(Request { ids: ids.to_vec(), hidden: hidden.to_vec(), capture });
        Turn { row: self }.await
    }

    /// See [`Session::greedy`] (the same steps, each one a [`Row::feed`]).
    pub async fn greedy(&self, input: &[u32], hidden: &[Range<usize>], max_new: usize, eos: &[u32], mut each: impl FnMut(&StepOutput, u32)) -> Result<(Vec<u32>, bool), SessionError> {
        let mut out = self.feed(input, hidden, CaptureRequest::default()).await?;
        let mut tokens = Vec::with_capacity(max_new);
        for i in 0..max_new {
            let tok = i64::try_from(out.logits.argmax(-1, false).view([-1]).get(0))? as u32;
            each(&out, tok);
            tokens.push(tok);
            if eos.contains(&tok) {
                return Ok((tokens, true));
            }
            if i + 1 < max_new {
                out = self.feed(&[tok], hidden, CaptureRequest::default()).await?;
            }
        }
        Ok((tokens, false))
    }
}

/// Resolves when the row's request has been served.
struct Turn<'r, 'm> {
    row: &'r Row<'m>,
}

impl Future for Turn<'_, '_> {
    type Output = Result<StepOutput, SessionError>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.row.shared.borrow_mut().done[self.row.row].take() {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }
}

/// A job's future, borrowing what the job reads for `'a`.
pub type Job<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `jobs` jobs (`make(i, row)` builds job `i` on a fresh row), `batch` at a time, over one
/// batch cache of `capacity` positions per row; `finished(i)` is called as job `i` ends.
/// Returns the outputs in job order.
pub fn run_jobs<'a, 'm: 'a, T>(model: &'m Model, batch: usize, capacity: usize, jobs: usize, mut make: impl FnMut(usize, Row<'m>) -> Job<'a, T>, mut finished: impl FnMut(usize)) -> Vec<T> {
    let batch = batch.clamp(1, jobs.max(1));
    // One spare column per row: rows without a step of a batched forward write there.
    let mut cache: KvCache = model.new_cache(batch as i64, capacity as i64 + 1);
    let sessions = (0..batch as i64)
        .map(|r| {
            let mut c = cache.rows_view(r, 1);
            c.capacity -= 1;
            Session::over(model, c)
        })
        .collect();
    let shared = Rc::new(RefCell::new(Shared { sessions, batched: vec![0; batch], pending: (0..batch).map(|_| None).collect(), done: (0..batch).map(|_| None).collect() }));
    let batched = batch > 1 && model.rope_long_switch().is_none();
    let mut running: Vec<Option<(usize, Job<'a, T>)>> = (0..batch).map(|_| None).collect();
    let mut results: Vec<Option<T>> = (0..jobs).map(|_| None).collect();
    let mut next = 0;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        // Advance every job until it waits on the model; start the next job on a freed row.
        for (r, slot) in running.iter_mut().enumerate() {
            loop {
                if slot.is_none() {
                    if next == jobs {
                        break;
                    }
                    let mut s = shared.borrow_mut();
                    s.sessions[r].truncate(0).expect("0 is always a valid length");
                    s.batched[r] = 0;
                    drop(s);
                    *slot = Some((next, make(next, Row { shared: shared.clone(), row: r })));
                    next += 1;
                }
                let (i, job) = slot.as_mut().expect("set above");
                match job.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => {
                        finished(*i);
                        results[*i] = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => {
                        assert!(shared.borrow().pending[r].is_some(), "a job waits only on its row's requests");
                        break;
                    }
                }
            }
        }
        if running.iter().all(Option::is_none) {
            break;
        }
        let mut s = shared.borrow_mut();
        let Shared { sessions, pending, done, batched: served } = &mut *s;
        // Requests a batched step cannot serve (or would refuse) go one by one below, which
        // reports their error.
        let vocab = model.config.vocab_size;
        let steps: Vec<(usize, u32, Vec<Range<usize>>)> = pending
            .iter()
            .enumerate()
            .filter_map(|(r, p)| {
                let q = p.as_ref().filter(|q| q.ids.len() == 1 && q.capture.is_empty())?;
                let fits = sessions[r].len() < sessions[r].capacity() && (q.ids[0] as usize) < vocab;
                fits.then(|| (r, q.ids[0], q.hidden.clone()))
            })
            .collect();
        if batched && steps.len() > 1 {
            match decode_rows(model, &mut cache, sessions, &steps) {
                Ok(logits) => {
                    for (i, (r, _, _)) in steps.iter().enumerate() {
                        pending[*r] = None;
                        served[*r] += 1;
                        done[*r] = Some(Ok(StepOutput::logits_only(logits.narrow(0, i as i64, 1))));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (r, _, _) in &steps {
                        pending[*r] = None;
                        done[*r] = Some(Err(SessionError::Batch(msg.clone())));
                    }
                }
            }
        }
        for r in 0..batch {
            if let Some(q) = pending[r].take() {
                done[r] = Some(sessions[r].feed(&q.ids, &q.hidden, &q.capture));
            }
        }
    }
    results.into_iter().map(|r| r.expect("every job ran to its end")).collect()
}

/// A logits-only [`StepOutput`] (a batched step's row).
impl StepOutput {
    pub(crate) fn logits_only(logits: Tensor) -> Self {
        StepOutput { logits, argmax: None, argmax_weight: None, top_k: None, span_mass: None, reasoning: None, hidden: vec![], tokens: None, last_rows: None, attention: None }
    }
}
