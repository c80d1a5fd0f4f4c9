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
    /// A greedy step: the next token (and, if `Some(true)`, the next-token entropy) is wanted.
    next: Option<bool>,
}

/// A served request: the output and, for a greedy step, the next token and its entropy,
/// computed on the device for every row of the forward at once (only they leave the device).
pub(crate) struct Served {
    pub out: StepOutput,
    pub token: Option<u32>,
    pub entropy: Option<f64>,
}

struct Shared<'m> {
    sessions: Vec<Session<'m>>,
    /// Steps of each row's current job served by a batched forward.
    batched: Vec<usize>,
    pending: Vec<Option<Request>>,
    done: Vec<Option<Result<Served, SessionError>>>,
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
        Ok(self.request(ids, hidden, capture, None).await?.out)
    }

    async fn request(&self, ids: &[u32], hidden: &[Range<usize>], capture: CaptureRequest, next: Option<bool>) -> Result<Served, SessionError> {
        self.shared.borrow_mut().pending[self.row] = Some(Request { ids: ids.to_vec(), hidden: hidden.to_vec(), capture, next });
        Turn { row: self }.await
    }

    /// See [`Session::greedy`]: the same steps (each a request of this row), and with
    /// `entropies` each step's next-token entropy ([`next_token_stats`]).
    pub async fn greedy(&self, input: &[u32], hidden: &[Range<usize>], max_new: usize, eos: &[u32], mut entropies: Option<&mut Vec<f64>>) -> Result<(Vec<u32>, bool), SessionError> {
        let want = Some(entropies.is_some());
        let mut served = self.request(input, hidden, CaptureRequest::default(), want).await?;
        let mut tokens = Vec::with_capacity(max_new);
        for i in 0..max_new {
            let tok = served.token.expect("a greedy step's token");
            if let (Some(e), Some(h)) = (entropies.as_deref_mut(), served.entropy) {
                e.push(h);
            }
            tokens.push(tok);
            if eos.contains(&tok) {
                return Ok((tokens, true));
            }
            if i + 1 < max_new {
                served = self.request(&[tok], hidden, CaptureRequest::default(), want).await?;
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
    type Output = Result<Served, SessionError>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.row.shared.borrow_mut().done[self.row.row].take() {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }
}

/// Where a [`run_jobs`] spent its time (printed to stderr with `RHX_BATCH_TIMING=1`): in the
/// jobs' own code between requests (`jobs`, including what they compute outside the batch), in
/// batched forwards, and in requests served one by one.
#[derive(Debug, Default)]
struct Timing {
    jobs: f64,
    batched: usize,
    batched_rows: usize,
    batched_s: f64,
    single: usize,
    single_tokens: usize,
    single_s: f64,
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
    let mut timing = Timing::default();
    loop {
        let t0 = std::time::Instant::now();
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
        timing.jobs += t0.elapsed().as_secs_f64();
        if running.iter().all(Option::is_none) {
            break;
        }
        let t1 = std::time::Instant::now();
        let mut s = shared.borrow_mut();
        let Shared { sessions, pending, done, batched: served } = &mut *s;
        // Requests a batched step cannot serve (or would refuse) go one by one below, which
        // reports their error.
        let vocab = model.config.vocab_size;
        let steps: Vec<(usize, u32, Vec<Range<usize>>)> = pending
            .iter()
            .enumerate()
            .filter_map(|(r, p)| {
                let q = p.as_ref().filter(|q| q.ids.len() == 1 && q.capture.is_empty() && q.next.is_some())?;
                let fits = sessions[r].len() < sessions[r].capacity() && (q.ids[0] as usize) < vocab;
                fits.then(|| (r, q.ids[0], q.hidden.clone()))
            })
            .collect();
        if batched && steps.len() > 1 {
            timing.batched += 1;
            timing.batched_rows += steps.len();
            let entropy = steps.iter().any(|(r, _, _)| pending[*r].as_ref().is_some_and(|q| q.next == Some(true)));
            match decode_rows(model, &mut cache, sessions, &steps).and_then(|logits| Ok((next_token_stats(&logits, entropy)?, logits))) {
                Ok(((tokens, entropies), logits)) => {
                    for (i, (r, _, _)) in steps.iter().enumerate() {
                        pending[*r] = None;
                        served[*r] += 1;
                        let out = StepOutput::logits_only(logits.narrow(0, i as i64, 1));
                        done[*r] = Some(Ok(Served { out, token: Some(tokens[i]), entropy: entropies.as_ref().map(|e| e[i]) }));
                    }
                }
                Err(e) => {
                    // Every job of the forward gets the error, naming the rows and the jobs.
                    let jobs: Vec<usize> = steps.iter().filter_map(|(r, _, _)| running[*r].as_ref().map(|(i, _)| *i)).collect();
                    let msg = format!("{e} (jobs {jobs:?} were in it)");
                    for (r, _, _) in &steps {
                        pending[*r] = None;
                        done[*r] = Some(Err(SessionError::Batch(msg.clone())));
                    }
                }
            }
        }
        let t2 = std::time::Instant::now();
        timing.batched_s += (t2 - t1).as_secs_f64();
        for r in 0..batch {
            if let Some(q) = pending[r].take() {
                timing.single += 1;
                timing.single_tokens += q.ids.len();
                let served = sessions[r].feed(&q.ids, &q.hidden, &q.capture).and_then(|out| {
                    let (token, entropy) = match q.next {
                        Some(entropy) => {
                            let (t, e) = next_token_stats(&out.logits.view([1, -1]), entropy)?;
                            (Some(t[0]), e.map(|e| e[0]))
                        }
                        None => (None, None),
                    };
                    Ok(Served { out, token, entropy })
                });
                done[r] = Some(served);
            }
        }
        timing.single_s += t2.elapsed().as_secs_f64();
    }
    if std::env::var_os("RHX_BATCH_TIMING").is_some() {
        eprintln!("{timing:?}");
    }
    results.into_iter().map(|r| r.expect("every job ran to its end")).collect()
}

/// Per row of `[n, V]` logits (on their device): the greedy token (argmax, the first of ties)
/// and, if `entropy`, the next-token distribution's entropy in nats as DRAGIN computes it,
/// `−Σ p ln(p + 1e-10)` with `p` the softmax (the shift by the row's max in f32, the rest in f64,
/// as [`crate::analysis::rag::entropy`]). Reduced on the device: only `n` values per
/// quantity leave it.
pub fn next_token_stats(logits: &Tensor, entropy: bool) -> Result<(Vec<u32>, Option<Vec<f64>>), SessionError> {
    let tokens: Vec<i64> = Vec::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu))?;
    let entropies = if entropy {
        let shifted = (logits - logits.amax(-1, true)).to_kind(tch::Kind::Double);
        let e = shifted.exp();
        let p = &e / e.sum_dim_intlist(-1, true, tch::Kind::Double);
        let h = -(&p * (&p + 1e-10).log()).sum_dim_intlist(-1, false, tch::Kind::Double);
        Some(Vec::<f64>::try_from(h.to_device(tch::Device::Cpu))?)
    } else {
        None
    };
    Ok((tokens.into_iter().map(|t| t as u32).collect(), entropies))
}

/// A logits-only [`StepOutput`] (a batched step's row).
impl StepOutput {
    pub(crate) fn logits_only(logits: Tensor) -> Self {
        StepOutput { logits, argmax: None, argmax_weight: None, top_k: None, span_mass: None, reasoning: None, hidden: vec![], tokens: None, last_rows: None, attention: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device reduction is DRAGIN's entropy as `analysis::rag::entropy` computes it, and the
    /// greedy token is the first of the row's largest logits.
    #[test]
    fn next_token_stats_equal_the_reference_entropy_and_argmax() {
        tch::manual_seed(7);
        let logits = Tensor::randn([6, 3000], (tch::Kind::Float, tch::Device::Cpu)) * Tensor::from_slice(&[0.1f32, 1.0, 5.0, 30.0, 200.0, 1.0]).view([6, 1]);
        // A tie (the first wins) and a row with masked entries.
        let _ = logits.get(5).get(10).fill_(1000.0);
        let _ = logits.get(5).get(20).fill_(1000.0);
        let _ = logits.get(0).narrow(0, 0, 1500).fill_(f64::NEG_INFINITY);
        let (tokens, ent) = next_token_stats(&logits, true).unwrap();
        let ent = ent.unwrap();
        for r in 0..6 {
            let row = Vec::<f32>::try_from(logits.get(r as i64)).unwrap();
            let want = crate::analysis::rag::entropy(&row);
            assert!((ent[r] - want).abs() <= 1e-12 * want.abs().max(1.0), "row {r}: {} vs {want}", ent[r]);
            let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(tokens[r] as usize, row.iter().position(|&x| x == best).unwrap(), "row {r}");
        }
        assert_eq!(tokens[5], 10);
    }
}
