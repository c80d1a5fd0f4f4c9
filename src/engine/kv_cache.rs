//! Preallocated key/value cache: `[B, H_kv, capacity, head_dim]` per layer, written in place, so
//! shapes stay stable across steps (a precondition for replaying a step as a CUDA graph) and a
//! pass can be discarded by simply not advancing `len` (the two-pass ablation of Section 3.3).
use tch::{Device, Kind, Tensor};

/// A write the cache cannot take.
#[derive(Debug, thiserror::Error)]
pub enum KvCacheError {
    #[error("per-row write: layer {layer} of a cache of {layers} layers")]
    Layer { layer: usize, layers: usize },
    #[error("per-row write: {cols} columns for a batch of {rows} rows")]
    RowCount { cols: usize, rows: i64 },
    #[error("per-row write: row {row} writes column {col}, outside the cache's {capacity} columns")]
    Column { row: usize, col: i64, capacity: i64 },
    #[error("per-row write: keys or values of shape {got:?}, the cache takes {want:?} (one new column per row)")]
    Shape { got: Vec<i64>, want: Vec<i64> },
    #[error("per-row write: libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The cache column each row of a batched step writes ([`KvCache::write_rows`]): the values on
/// the host, where they are checked against the cache without a device synchronisation, and
/// their `[B]` int64 copy on the device, which the write and the step's masks read.
pub struct RowColumns {
    cols: Vec<i64>,
    index: Tensor,
}

impl RowColumns {
    pub fn new(cols: Vec<i64>, device: Device) -> Self {
        let index = Tensor::from_slice(&cols).to_device(device);
        RowColumns { cols, index }
    }

    pub fn cols(&self) -> &[i64] {
        &self.cols
    }

    /// `[B]` int64 on the device.
    pub fn index(&self) -> &Tensor {
        &self.index
    }
}

pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Number of committed positions (equal for every sequence: prompts are left-padded).
    pub len: i64,
    pub capacity: i64,
}

impl KvCache {
    pub fn new(layers: usize, batch: i64, heads: i64, capacity: i64, head_dim: i64, kind: Kind, device: Device) -> Self {
        let mk = || Tensor::zeros([batch, heads, capacity, head_dim], (kind, device));
        Self { k: (0..layers).map(|_| mk()).collect(), v: (0..layers).map(|_| mk()).collect(), len: 0, capacity }
    }

    /// Writes `[B, H_kv, T, D]` keys and values at positions `start .. start + T`.
    pub fn write(&mut self, layer: usize, start: i64, k: &Tensor, v: &Tensor) {
        let t = k.size()[2];
        assert!(start + t <= self.capacity, "KV cache overflow: {} + {} > {}", start, t, self.capacity);
        self.k[layer].narrow(2, start, t).copy_(k);
        self.v[layer].narrow(2, start, t).copy_(v);
    }

    /// Keys and values of the first `len` positions.
    pub fn view(&self, layer: usize, len: i64) -> (Tensor, Tensor) {
        (self.k[layer].narrow(2, 0, len), self.v[layer].narrow(2, 0, len))
    }

    /// A cache over the same storage restricted to batch row `row` and to the columns from
    /// `offset` on (position 0 of the view = column `offset`). Used to prefill each left-padded
    /// prompt on its own, without padding, into its row of the batch cache.
    pub fn row_view(&self, row: i64, offset: i64) -> KvCache {
        let view = |t: &Tensor| t.narrow(0, row, 1).narrow(2, offset, self.capacity - offset);
        KvCache { k: self.k.iter().map(view).collect(), v: self.v.iter().map(view).collect(), len: 0, capacity: self.capacity - offset }
    }

    /// Writes one position per sequence, `[B, H_kv, 1, D]`, at the column held by the device
    /// tensor `col` (`[1]` int64): no host value, so a CUDA graph of the step can be replayed at
    /// every position.
    pub fn write_at(&mut self, layer: usize, col: &Tensor, k: &Tensor, v: &Tensor) {
        let _ = self.k[layer].index_copy_(2, col, k);
        let _ = self.v[layer].index_copy_(2, col, v);
    }

    /// Writes one position per sequence, `[B, H_kv, 1, D]`, each row at its own column (`cols`,
    /// one per row of the cache, each within its capacity): sequences of different lengths
    /// decoded together ([`crate::engine::session_batch`]). A write out of bounds or of another
    /// shape is refused before anything is written.
    pub fn write_rows(&mut self, layer: usize, cols: &RowColumns, k: &Tensor, v: &Tensor) -> Result<(), KvCacheError> {
        let layers = self.k.len();
        if layer >= layers {
            return Err(KvCacheError::Layer { layer, layers });
        }
        let rows = self.batch();
        if cols.cols.len() as i64 != rows {
            return Err(KvCacheError::RowCount { cols: cols.cols.len(), rows });
        }
        if let Some((row, &col)) = cols.cols.iter().enumerate().find(|(_, &c)| c < 0 || c >= self.capacity) {
            return Err(KvCacheError::Column { row, col, capacity: self.capacity });
        }
        let mut want = self.k[layer].size();
        want[2] = 1;
        for t in [k, v] {
            if t.size() != want {
                return Err(KvCacheError::Shape { got: t.size(), want });
            }
        }
        let index = cols.index.view([want[0], 1, 1, 1]).expand([want[0], want[1], 1, want[3]], false);
        let _ = self.k[layer].f_scatter_(2, &index, k)?;
        let _ = self.v[layer].f_scatter_(2, &index, v)?;
        Ok(())
    }

    /// Keys and values over the whole capacity (decode steps mask the unwritten columns).
    pub fn full(&self, layer: usize) -> (Tensor, Tensor) {
        (self.k[layer].shallow_clone(), self.v[layer].shallow_clone())
    }

    /// Batch rows `start .. start + n` over the same storage (prefill a large batch in slices).
    pub fn rows_view(&self, start: i64, n: i64) -> KvCache {
        let view = |t: &Tensor| t.narrow(0, start, n);
        KvCache { k: self.k.iter().map(view).collect(), v: self.v.iter().map(view).collect(), len: self.len, capacity: self.capacity }
    }

    /// Keeps only the batch rows `rows` (`[n]` int64 on the cache's device), in that order: the
    /// sequences still generating. Layer by layer, so the extra memory is one layer's worth.
    pub fn select_rows(&mut self, rows: &Tensor) {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.index_select(0, rows);
        }
    }

    /// Batch size.
    pub fn batch(&self) -> i64 {
        self.k.first().map(|t| t.size()[0]).unwrap_or(0)
    }

    pub fn advance(&mut self, t: i64) {
        self.len += t;
    }
}
