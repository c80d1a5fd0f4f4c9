//! Prefill: every prompt column but the last goes into the KV cache before decoding (the last
//! prompt token is fed by step 0, so that every step has one query row).
use tch::Tensor;

use super::batch::Batch;
use super::{EngineOptions, Prompt};
use crate::engine::kv_cache::KvCache;
use crate::engine::model::{CaptureRequest, HeadMask, Model, StepInput};

/// Prefills all but the last prompt column and advances the cache past them. A batch without
/// padding or hidden spans goes in slices of rows with plain causal attention (at most
/// `eng.prefill_chunk_tokens` tokens per call); otherwise each prompt is prefilled on its own
/// into its row of the cache (no padded rows: the fused kernel's causal mode, and no compute
/// spent on padding), and only decoding is batched.
pub(super) fn prefill(model: &Model, prompts: &[Prompt], batch: &Batch, ids: &Tensor, eng: &EngineOptions, mask: Option<&HeadMask>, cache: &mut KvCache) {
    let (b, width) = (batch.b, ids.size()[1]);
    if width <= 1 {
        return;
    }
    let no_capture = CaptureRequest::default();
    if batch.plain {
        let t = width - 1;
        let (pos, max_positions) = batch.positions(0, t);
        let rows = (eng.prefill_chunk_tokens / t).clamp(1, b);
        let mut r0 = 0;
        while r0 < b {
            let n = rows.min(b - r0);
            let mask = mask.map(|m| HeadMask { mode: m.mode, keep: m.keep.narrow(1, r0, n) });
            let inp = StepInput {
                ids: &ids.narrow(0, r0, n).narrow(1, 0, t),
                positions: &pos.narrow(0, r0, n),
                max_positions: &max_positions[r0 as usize..(r0 + n) as usize],
                bias: None,
                head_mask: mask.as_ref(),
                capture: &no_capture,
                all_logits: false,
                write_cols: None,
            };
            model.forward(&inp, &mut cache.rows_view(r0, n));
            r0 += n;
        }
    } else {
        for (i, p) in prompts.iter().enumerate() {
            let n = p.ids.len() as i64 - 1;
            if n == 0 {
                continue;
            }
            let pad = batch.pad[i];
            let row = batch.row(i, p.hidden_spans.is_empty());
            let (pos, max_positions) = row.positions(0, n);
            let bias = row.bias(0, n);
            let mask = mask.map(|m| HeadMask { mode: m.mode, keep: m.keep.narrow(1, i as i64, 1) });
            let inp = StepInput {
                ids: &ids.narrow(0, i as i64, 1).narrow(1, pad, n),
                positions: &pos,
                max_positions: &max_positions,
                bias: bias.as_ref(),
                head_mask: mask.as_ref(),
                capture: &no_capture,
                all_logits: false,
                write_cols: None,
            };
            model.forward(&inp, &mut cache.row_view(i as i64, pad));
        }
    }
    cache.advance(width - 1);
}
