//! One sequence decoded pass by pass with full control of its KV cache: what Section 5's
//! in-context RAG needs and batched [`generate`](super::generate) does not give. Between passes
//! the cache can be rolled back to any position (retract a draft without recomputing the prompt)
//! and each pass chooses which earlier columns its queries may see (the context hidden, or only
//! some windows of it visible), so one prefill of the prompt serves every draft, retrieval and
//! regeneration of a question.
//!
//! Visibility is a property of a pass, not of the cached keys: a query at column `i` sees key
//! `j` iff `j ≤ i` and `j` is not in the pass's hidden columns (a query always sees itself, so
//! a hidden column fed in this pass never has an empty row). Keys and values already in the
//! cache stay what they were computed as; re-encoding columns under another view is a
//! [`truncate`](Session::truncate) followed by a [`feed`](Session::feed).
use std::ops::Range;

use tch::{Device, Kind, Tensor};

use super::kv_cache::{KvCache, RowColumns};
use super::model::{CaptureRequest, Model, StepOutput};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session holds {capacity} positions: {len} cached + {new} new do not fit")]
    Full { capacity: usize, len: usize, new: usize },
    #[error("cannot roll back to position {to}: only {len} are cached")]
    Rollback { to: usize, len: usize },
    #[error("a pass needs at least one token")]
    Empty,
    #[error("token id {id} is outside the vocabulary ({vocab})")]
    BadToken { id: u32, vocab: usize },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("a batched decoding step failed: {0}")]
    Batch(String),
    #[error("a batched step for row {row} of a batch of {rows}")]
    NoRow { row: usize, rows: usize },
    #[error("the batched forward of rows {rows:?} failed: {message}")]
    Forward { rows: Vec<usize>, message: String },
}

/// The cache and the token ids it holds (column `i` = position `i`: one sequence, no padding).
pub struct Session<'m> {
    model: &'m Model,
    cache: KvCache,
    ids: Vec<u32>,
    /// Each pass still in the cache: its first column and its hidden columns (to re-encode the
    /// cache when LongRoPE changes regime).
    passes: Vec<(usize, Vec<Range<usize>>)>,
    /// The cached keys were encoded with LongRoPE's long factors.
    long: bool,
}

impl<'m> Session<'m> {
    /// An empty session with room for `capacity` positions.
    pub fn new(model: &'m Model, capacity: usize) -> Self {
        Session { model, cache: model.new_cache(1, capacity as i64), ids: Vec::new(), passes: Vec::new(), long: false }
    }

    /// A session over a cache it does not allocate: one row of a batch cache
    /// ([`KvCache::rows_view`]), so that [`decode_rows`] can step it with other rows.
    pub(crate) fn over(model: &'m Model, cache: KvCache) -> Self {
        Session { model, cache, ids: Vec::new(), passes: Vec::new(), long: false }
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cache.capacity as usize
    }

    /// The token ids in the cache.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Drops every position from `len` on: the next pass writes there (retract).
    pub fn truncate(&mut self, len: usize) -> Result<(), SessionError> {
        if len > self.ids.len() {
            return Err(SessionError::Rollback { to: len, len: self.ids.len() });
        }
        self.ids.truncate(len);
        self.passes.retain(|(start, _)| *start < len);
        self.cache.len = len as i64;
        Ok(())
    }

    /// Runs `ids` at the next positions, their queries blind to the `hidden` columns (ranges of
    /// positions, earlier ones or these), and commits their keys and values. The output holds
    /// the last position's logits and what `capture` asks for.
    pub fn feed(&mut self, ids: &[u32], hidden: &[Range<usize>], capture: &CaptureRequest) -> Result<StepOutput, SessionError> {
        if ids.is_empty() {
            return Err(SessionError::Empty);
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(SessionError::BadToken { id, vocab });
        }
        let (start, t) = (self.ids.len(), ids.len());
        if start + t > self.capacity() {
            return Err(SessionError::Full { capacity: self.capacity(), len: start, new: t });
        }
        // LongRoPE (Phi-3): the factors follow the sequence's length, and HF recomputes the cache
        // when it crosses the original context; re-encode every earlier pass when the regime of
        // this one differs from the cache's (either way: a rollback can cross back).
        let long = self.model.rope_long_switch().is_some_and(|sw| (start + t) as i64 > sw);
        if long != self.long && start > 0 {
            self.reencode(long);
        }
        self.long = long;
        let out = self.run(ids, hidden, capture, (start + t - 1) as i64);
        self.passes.push((start, hidden.to_vec()));
        self.ids.extend_from_slice(ids);
        Ok(out)
    }

    /// One forward of `ids` at the cache's end, committed; `max_position` picks LongRoPE's regime.
    fn run(&mut self, ids: &[u32], hidden: &[Range<usize>], capture: &CaptureRequest, max_position: i64) -> StepOutput {
        let (start, t) = (self.cache.len as usize, ids.len());
        let device = self.model.device;
        let tokens = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).view([1, t as i64]).to_device(device);
        let positions = Tensor::arange_start(start as i64, (start + t) as i64, (Kind::Int64, device)).view([1, t as i64]);
        let bias = view_bias(start, t, hidden, device);
        let inp = super::model::StepInput { ids: &tokens, positions: &positions, max_positions: &[max_position], bias: bias.as_ref(), head_mask: None, capture, all_logits: false, write_cols: None };
        let out = self.model.forward(&inp, &mut self.cache);
        self.cache.advance(t as i64);
        out
    }

    /// Recomputes the cache pass by pass, each under its own view, in LongRoPE's `long` regime.
    fn reencode(&mut self, long: bool) {
        let sw = self.model.rope_long_switch().unwrap_or(i64::MAX);
        let max_position = if long { sw } else { 0 };
        let ids = self.ids.clone();
        let passes = self.passes.clone();
        self.cache.len = 0;
        for (i, (start, hidden)) in passes.iter().enumerate() {
            let end = passes.get(i + 1).map_or(ids.len(), |p| p.0);
            self.run(&ids[*start..end], hidden, &CaptureRequest::default(), max_position);
        }
    }

    /// Feeds `input`, then generates greedily under the same view: up to `max_new` tokens,
    /// stopping after one of `eos` (kept). `each` sees every step's output with the token its
    /// logits chose. Every generated token but the last is fed (and cached); returns the tokens
    /// and whether an `eos` id ended them.
    pub fn greedy(
        &mut self,
        input: &[u32],
        hidden: &[Range<usize>],
        max_new: usize,
        eos: &[u32],
        capture: &CaptureRequest,
        mut each: impl FnMut(&StepOutput, u32),
    ) -> Result<(Vec<u32>, bool), SessionError> {
        let mut out = self.feed(input, hidden, capture)?;
        let mut tokens = Vec::with_capacity(max_new);
        for i in 0..max_new {
            let tok = i64::try_from(out.logits.argmax(-1, false).view([-1]).get(0))? as u32;
            each(&out, tok);
            tokens.push(tok);
            if eos.contains(&tok) {
                return Ok((tokens, true));
            }
            if i + 1 < max_new {
                out = self.feed(&[tok], hidden, capture)?;
            }
        }
        Ok((tokens, false))
    }
}

/// One decoding step of several sessions at once: `steps[i] = (row, token, hidden columns)`
/// feeds one token to `sessions[row]` under its own view, as [`Session::feed`] would. Every
/// session must be [`Session::over`] row `row` of `batch`, with a capacity one column short of
/// the batch's: rows without a step run too (a batch has fixed rows), writing into that last
/// column, which no session uses, and seeing only their column 0. Not for LongRoPE models (their
/// regime switch re-encodes a whole session). Returns the steps' `[n, V]` f32 logits on the model's
/// device, in the order of `steps`.
pub(crate) fn decode_rows(model: &Model, batch: &mut KvCache, sessions: &mut [Session], steps: &[(usize, u32, Vec<Range<usize>>)]) -> Result<Tensor, SessionError> {
    assert!(model.rope_long_switch().is_none(), "LongRoPE sessions are stepped one by one");
    let rows = batch.batch() as usize;
    let spare = batch.capacity - 1;
    let vocab = model.config.vocab_size;
    for &(row, id, _) in steps {
        if row >= rows.min(sessions.len()) {
            return Err(SessionError::NoRow { row, rows: rows.min(sessions.len()) });
        }
        let s = &sessions[row];
        if id as usize >= vocab {
            return Err(SessionError::BadToken { id, vocab });
        }
        if s.len() + 1 > s.capacity() {
            return Err(SessionError::Full { capacity: s.capacity(), len: s.len(), new: 1 });
        }
    }
    let keys = steps.iter().map(|(r, _, _)| sessions[*r].len() + 1).max().unwrap_or(1);
    let (mut ids, mut pos, mut cols) = (vec![0i64; rows], vec![0i64; rows], vec![spare; rows]);
    let mut bias = vec![f32::NEG_INFINITY; rows * keys];
    for r in 0..rows {
        bias[r * keys] = 0.0;
    }
    for (row, id, hidden) in steps {
        let col = sessions[*row].len();
        (ids[*row], pos[*row], cols[*row]) = (*id as i64, col as i64, col as i64);
        let b = &mut bias[row * keys..(row + 1) * keys];
        b[..=col].iter_mut().for_each(|x| *x = 0.0);
        // As `view_bias`: each range clipped to the columns before the query (which always
        // sees itself), empty and reversed ones hiding nothing.
        for h in hidden {
            let (lo, hi) = (h.start.min(col), h.end.min(col));
            if lo < hi {
                b[lo..hi].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            }
        }
    }
    let device = model.device;
    let n = rows as i64;
    let order: Vec<i64> = steps.iter().map(|(r, _, _)| *r as i64).collect();
    // libtorch's errors (the `f_` calls) and its panics (the others) become this step's error,
    // naming the rows it would have served; no session has advanced then.
    let forward = || -> Result<Tensor, String> {
        let ids_t = Tensor::from_slice(&ids).view([n, 1]).to_device(device);
        let pos_t = Tensor::from_slice(&pos).view([n, 1]).to_device(device);
        let cols_t = RowColumns::new(cols, device);
        let bias_t = Tensor::from_slice(&bias).view([n, 1, 1, keys as i64]).to_device(device);
        let capture = CaptureRequest::default();
        let inp = super::model::StepInput { ids: &ids_t, positions: &pos_t, max_positions: &pos, bias: Some(&bias_t), head_mask: None, capture: &capture, all_logits: false, write_cols: Some(&cols_t) };
        batch.len = keys as i64 - 1;
        let out = model.forward_rows(&inp, batch).map_err(|e| e.to_string())?;
        out.logits.f_index_select(0, &Tensor::from_slice(&order).to_device(device)).map_err(|e| format!("libtorch: {e}"))
    };
    // libtorch's message without the C++ stack it appends.
    let failed = |message: String| {
        let message = message.split("\nException raised from").next().unwrap_or_default().trim_end().to_string();
        SessionError::Forward { rows: steps.iter().map(|(r, _, _)| *r).collect(), message }
    };
    let logits = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(forward)) {
        Ok(Ok(logits)) => logits,
        Ok(Err(message)) => return Err(failed(message)),
        Err(panic) => return Err(failed(panic_message(panic.as_ref()))),
    };
    for (row, id, hidden) in steps {
        let s = &mut sessions[*row];
        s.passes.push((s.ids.len(), hidden.clone()));
        s.ids.push(*id);
        s.cache.advance(1);
    }
    Ok(logits)
}

/// The message of a caught panic (tch's non-`f_` methods panic with libtorch's error).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (_, Some(s)) => s.to_string(),
        _ => "a panic without a message".to_string(),
    }
}

/// The mean attention of `heads` (`(layer, query head)`) in a pass's last-row probabilities
/// (`rows`: [`StepOutput::last_rows`], `[L, 1, Hq, S]`) over the columns `span`, reduced on the
/// device to its `k` largest: `(column − span.start, mean weight)`, largest first, ties to the
/// earlier column. Only `k` pairs leave the device.
pub fn head_rows_topk(rows: &Tensor, heads: &[(usize, usize)], span: Range<usize>, k: usize) -> Result<Vec<(usize, f32)>, SessionError> {
    let size = rows.size();
    let (layers, nq, s) = (size[0], size[2], size[3]);
    let span = span.start.min(s as usize)..span.end.min(s as usize);
    if heads.is_empty() || span.is_empty() || k == 0 {
        return Ok(Vec::new());
    }
    let idx: Vec<i64> = heads.iter().map(|&(l, h)| l as i64 * nq + h as i64).collect();
    let flat = rows.select(1, 0).reshape([layers * nq, s]);
    let mean = flat.index_select(0, &Tensor::from_slice(&idx).to_device(rows.device())).narrow(1, span.start as i64, span.len() as i64).mean_dim(0, false, Kind::Float);
    let (values, index) = mean.topk((k as i64).min(span.len() as i64), 0, true, true);
    let values = Vec::<f32>::try_from(values.to_device(Device::Cpu))?;
    let index = Vec::<i64>::try_from(index.to_device(Device::Cpu))?;
    let mut top: Vec<(usize, f32)> = index.into_iter().map(|i| i as usize).zip(values).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(top)
}

/// `[1, 1, T, S]` additive bias for queries at `start .. start + T` over keys `0 .. S`: causal,
/// and blind to the hidden columns (but never to itself); `None` (plain causal) when nothing
/// hidden lies before the last query.
fn view_bias(start: usize, t: usize, hidden: &[Range<usize>], device: Device) -> Option<Tensor> {
    let s = start + t;
    let hidden: Vec<Range<usize>> = hidden.iter().map(|r| r.start.min(s)..r.end.min(s)).filter(|r| !r.is_empty()).collect();
    if hidden.is_empty() && (start == 0 || t == 1) {
        return None;
    }
    let mut key_hidden = vec![false; s];
    for r in &hidden {
        key_hidden[r.clone()].iter_mut().for_each(|h| *h = true);
    }
    let mut bias = vec![0f32; t * s];
    for q in 0..t {
        let col = start + q;
        for (k, slot) in bias[q * s..(q + 1) * s].iter_mut().enumerate() {
            if k > col || (key_hidden[k] && k != col) {
                *slot = f32::NEG_INFINITY;
            }
        }
    }
    Some(Tensor::from_slice(&bias).view([1, 1, t as i64, s as i64]).to_device(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A libtorch error in a batched forward is the step's error, naming the rows it would have
    /// served, and leaves every session as it was (it used to panic, ending every question).
    /// Here libtorch refuses the write: the batch cache holds f64 and the model computes in f32.
    #[test]
    fn a_libtorch_error_in_a_batched_forward_names_its_rows() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama3");
        let (cfg, w) = crate::engine::weights::load_hf_dir(&dir).unwrap();
        let model = Model::new(cfg, w, Device::Cpu, Kind::Float).unwrap();
        let c = &model.config;
        let mut batch = KvCache::new(c.num_layers, 3, c.num_kv_heads as i64, 9, c.head_dim as i64, Kind::Double, Device::Cpu);
        let mut sessions: Vec<Session> = (0..3)
            .map(|r| {
                let mut row = batch.rows_view(r, 1);
                row.capacity -= 1;
                Session::over(&model, row)
            })
            .collect();
        match decode_rows(&model, &mut batch, &mut sessions, &[(0, 5, vec![]), (2, 7, vec![])]) {
            Err(e @ SessionError::Forward { .. }) => {
                let SessionError::Forward { rows, message } = &e else { unreachable!() };
                assert_eq!(rows, &[0, 2]);
                assert!(!message.is_empty() && e.to_string().starts_with("the batched forward of rows [0, 2] failed: "), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(sessions.iter().all(|s| s.is_empty()), "no session advanced");
        assert!(matches!(decode_rows(&model, &mut batch, &mut sessions, &[(3, 5, vec![])]), Err(SessionError::NoRow { row: 3, rows: 3 })));
    }

    #[test]
    fn bias_is_causal_and_blind_to_hidden_columns_but_not_to_itself() {
        let b = view_bias(2, 3, std::slice::from_ref(&(1..3)), Device::Cpu).unwrap();
        let v: Vec<f32> = Vec::try_from(b.flatten(0, -1)).unwrap();
        let inf = f32::NEG_INFINITY;
        #[rustfmt::skip]
        let want = [
            0.0, inf, 0.0, inf, inf,  // query at column 2 (hidden): itself and column 0
            0.0, inf, inf, 0.0, inf,  // column 3
            0.0, inf, inf, 0.0, 0.0,  // column 4
        ];
        assert_eq!(v, want);
        assert!(view_bias(0, 4, &[], Device::Cpu).is_none());
        assert!(view_bias(5, 1, std::slice::from_ref(&(9..12)), Device::Cpu).is_none(), "a hidden range after the query hides nothing");
    }
}
