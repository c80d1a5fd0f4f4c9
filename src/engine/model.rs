//! The Llama-family decoder on libtorch, written for capture: one forward call processes a
//! batch of `T` new tokens per sequence against a preallocated KV cache and returns, besides
//! the last position's logits, reductions of each head's attention row for the *last* query
//! (argmax position, its weight, top-k, mass over spans) computed on the device. The full
//! `T × S` attention matrix is never formed for capture: prefill runs fused
//! `scaled_dot_product_attention` and recomputes only the last row eagerly.
use tch::{Device, Kind, Tensor};

use super::config::ModelConfig;
use super::family::{self, Activation};
use super::kernels::{self, GemvMode, Kernels};
use super::kv_cache::{KvCache, KvCacheError, RowColumns};
use super::rope::{self, Rope};
use super::weights::{WeightMap, WeightsError};

struct Linear {
    w: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, self.b.as_ref())
    }
}

enum Qkv {
    Separate { q: Linear, k: Linear, v: Linear },
    /// Phi-3: one projection producing `[q | k | v]`.
    Fused(Linear),
}

enum GateUp {
    Separate { gate: Linear, up: Linear },
    /// Phi-3: one projection producing `[gate | up]`.
    Fused(Linear),
}

struct Layer {
    input_norm: Tensor,
    post_norm: Tensor,
    qkv: Qkv,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    gate_up: GateUp,
    down: Linear,
}

/// How a masked head is silenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskMode {
    /// The head's output (its slice of the input of `o_proj`) is set to zero.
    ZeroOutput,
    /// Wu et al.: the head's query is set to zero after RoPE, so its attention is uniform
    /// over the visible keys and its output is the mean of their values.
    UniformAttention,
}

/// Per-head multipliers for one forward call: `keep[l]` is `[B, Hq]` with 1 = keep, 0 = mask.
pub struct HeadMask {
    pub mode: MaskMode,
    /// `[L, B, Hq]`, activation dtype, on the model's device.
    pub keep: Tensor,
}

/// What to reduce from the last query row of every head, on the device.
#[derive(Debug, Default)]
pub struct CaptureRequest {
    /// Argmax key position and the attention weight there.
    pub argmax: bool,
    /// Top-k key positions (0 = off).
    pub top_k: usize,
    /// `[B, P, n]` 0/1 membership of the first `P` key positions in `n` spans; the attention
    /// mass of each span is returned.
    pub spans: Option<Tensor>,
    /// Eq. 2's reasoning score of every head.
    pub reasoning: Option<ReasoningRequest>,
    /// Hidden states of the last position to return.
    pub hidden: Vec<HiddenSite>,
    /// Keep every head's attention row of the last query over all keys, on the device (Section
    /// 5 reads the rows of a head set chosen after the pass). Eager forward only.
    pub last_rows: bool,
    /// Keep the full attention matrix of this layer (every query row of the call), as HF's
    /// `output_attentions` returns it (DRAGIN's RIND reads the last layer's). Eager forward only.
    pub attention_layer: Option<usize>,
}

impl CaptureRequest {
    /// Nothing but the logits is asked for.
    pub fn is_empty(&self) -> bool {
        !self.argmax && self.top_k == 0 && self.spans.is_none() && self.reasoning.is_none() && self.hidden.is_empty() && !self.last_rows && self.attention_layer.is_none()
    }
}

/// Eq. 2 (the paper's reasoning score, reference §8.6): per head, the attention mass of the
/// query row on the needle tokens ÷ its mass outside the sink and the local window.
#[derive(Debug)]
pub struct ReasoningRequest {
    /// `[B, P]` f32 0/1: the needle tokens among the first `P` key columns (padded prompt
    /// columns; a batch row's left padding comes first).
    pub needle: Tensor,
    /// The first `sink` tokens of each sequence are left out of the denominator.
    pub sink: i64,
    /// The last `local` keys (the query itself included) are left out of the denominator.
    pub local: i64,
}

impl ReasoningRequest {
    /// `[B, S, 2]` f32 weights over `S` key columns: needle membership, and membership of the
    /// denominator's set — a real token of its sequence (`pad`: `[B, 1]` left padding) past the
    /// first `sink`, and before the last `local` keys up to the query column `q_col` (`[1]`).
    /// Built on the device from tensors only (no host sync; safe inside a CUDA graph).
    fn weights(&self, s: i64, pad: &Tensor, q_col: &Tensor) -> Tensor {
        let device = self.needle.device();
        let kpos = Tensor::arange(s, (Kind::Int64, device)).view([1, s]);
        let outside = (&kpos - pad).ge(self.sink).logical_and(&kpos.le_tensor(&(q_col - self.local)));
        let p = self.needle.size()[1].min(s);
        let needle = self.needle.narrow(1, 0, p).constant_pad_nd([0, s - p]);
        Tensor::stack(&[needle, outside.to_kind(Kind::Float)], -1)
    }

    /// Eq. 2 from the stacked `[L, B, Hq, 2]` (needle mass, denominator mass) of every layer:
    /// `[L, B, Hq]`, 0 where the denominator's set holds no attention.
    fn scores(masses: &Tensor) -> Tensor {
        let (num, den) = (masses.select(-1, 0), masses.select(-1, 1));
        num.divide(&den).masked_fill(&den.le(0.0), 0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenSite {
    /// Residual stream after the final norm (HF `hidden_states[-1]`), the probe/CCA input.
    Final,
    /// Residual stream after decoder layer `l` (HF `hidden_states[l + 1]`).
    Layer(usize),
}

/// Input of one forward call.
pub struct StepInput<'a> {
    /// `[B, T]` int64 token ids.
    pub ids: &'a Tensor,
    /// `[B, T]` int64 RoPE positions (per sequence, so left padding does not shift them).
    pub positions: &'a Tensor,
    /// Largest position of each row (known on the host; picks LongRoPE's regime per sequence
    /// without a sync).
    pub max_positions: &'a [i64],
    /// `[B, 1, T, S]` additive f32 bias (0 or -inf) over the `S = cache.len + T` keys, or
    /// `None` for plain causal attention (no padding, no hidden spans): then prefill uses the
    /// fused kernel's causal mode, which skips the upper triangle.
    pub bias: Option<&'a Tensor>,
    pub head_mask: Option<&'a HeadMask>,
    pub capture: &'a CaptureRequest,
    /// Return logits for every position (tests) instead of only the last one.
    pub all_logits: bool,
    /// The cache column each row writes its one query to (`T` = 1), for sequences of different
    /// lengths in one batch; the keys then span `cache.len + 1` columns (the caller sets
    /// `cache.len` to its longest row) and `bias` hides each row's other columns. Only
    /// [`Model::forward_rows`] takes them. `None`: every row writes at `cache.len` (left padding).
    pub write_cols: Option<&'a RowColumns>,
}

/// Device tensors produced by one forward call; the caller copies them to the host once.
pub struct StepOutput {
    /// `[B, V]` f32 logits of the last position (`[B, T, V]` when `all_logits`).
    pub logits: Tensor,
    /// `[L, B, Hq]` int64 argmax key position of the last query row.
    pub argmax: Option<Tensor>,
    /// `[L, B, Hq]` f32 attention weight at the argmax.
    pub argmax_weight: Option<Tensor>,
    /// `[L, B, Hq, k]` int64 top-k key positions.
    pub top_k: Option<Tensor>,
    /// `[L, B, Hq, n]` f32 attention mass per span.
    pub span_mass: Option<Tensor>,
    /// `[L, B, Hq]` f32 Eq. 2 reasoning score.
    pub reasoning: Option<Tensor>,
    /// One `[B, D]` f32 tensor per requested site, in request order.
    pub hidden: Vec<Tensor>,
    /// `[B]` int64 greedy tokens (argmax of `logits`), from `decode_step`.
    pub tokens: Option<Tensor>,
    /// `[L, B, Hq, S]` f32 attention probabilities of the last query row (`last_rows`).
    pub last_rows: Option<Tensor>,
    /// `[B, Hq, T, S]` f32 attention probabilities of every query row in `attention_layer`.
    pub attention: Option<Tensor>,
}

/// Device-side state of a batch between decoding steps (see [`Model::decode_step`]). Every
/// tensor keeps its address across steps; the step itself advances `ids`, `pos` and `col`.
pub struct DecodeState {
    /// `[B, 1]` int64: the token each sequence feeds at this step.
    pub ids: Tensor,
    /// `[B, 1]` int64: its RoPE position.
    pub pos: Tensor,
    /// `[1]` int64: the cache column this step writes (the same for every row: left padding).
    pub col: Tensor,
    /// `[B, capacity]` bool: the column holds a token that decoding queries may see (not
    /// padding, not in a hidden span).
    pub key_ok: Tensor,
    /// `[1, capacity]` int64 column indices.
    pub kpos: Tensor,
    /// `[L, B, Hq]` keep-multipliers (activation dtype) applied at every step, or `None`.
    pub keep: Option<Tensor>,
    pub mask_mode: MaskMode,
    /// Split-K chunk of `P·V` (see [`Model::pv_chunk`]); the capacity is a multiple of it.
    pub pv_chunk: Option<i64>,
    /// Run the step on the fused CUDA kernels ([`Model::fused_kernels`]) when they cover it.
    pub fused: bool,
}

pub struct Model {
    pub config: ModelConfig,
    pub device: Device,
    pub kind: Kind,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    rope: Rope,
}

impl Model {
    /// Builds the model from HF-named weights, checking every shape, then casts to `kind` and
    /// moves to `device`.
    pub fn new(config: ModelConfig, mut w: WeightMap, device: Device, kind: Kind) -> Result<Self, WeightsError> {
        let c = &config;
        let (d, hd) = (c.hidden_size as i64, c.head_dim as i64);
        let (nq, nkv, ff, v) = (c.num_heads as i64, c.num_kv_heads as i64, c.intermediate_size as i64, c.vocab_size as i64);
        let mv = |t: Tensor| t.to_kind(kind).to_device(device);
        let linear = |w: &mut WeightMap, name: &str, out: i64, inp: i64, bias: bool| -> Result<Linear, WeightsError> {
            let weight = mv(w.take(&format!("{name}.weight"), &[out, inp])?);
            let b = if bias { Some(w.take(&format!("{name}.bias"), &[out])?) } else { w.take_opt(&format!("{name}.bias"), &[out])? };
            Ok(Linear { w: weight, b: b.map(mv) })
        };
        let embed = mv(w.take("model.embed_tokens.weight", &[v, d])?);
        let mut layers: Vec<Layer> = Vec::with_capacity(c.num_layers);
        let fam = family::of(c.arch);
        for l in 0..c.num_layers {
            let p = format!("model.layers.{l}");
            let qkv = if fam.fused_qkv {
                Qkv::Fused(linear(&mut w, &format!("{p}.self_attn.qkv_proj"), (nq + 2 * nkv) * hd, d, c.attention_bias)?)
            } else {
                Qkv::Separate {
                    q: linear(&mut w, &format!("{p}.self_attn.q_proj"), nq * hd, d, c.attention_bias)?,
                    k: linear(&mut w, &format!("{p}.self_attn.k_proj"), nkv * hd, d, c.attention_bias)?,
                    v: linear(&mut w, &format!("{p}.self_attn.v_proj"), nkv * hd, d, c.attention_bias)?,
                }
            };
            let gate_up = if fam.fused_gate_up {
                GateUp::Fused(linear(&mut w, &format!("{p}.mlp.gate_up_proj"), 2 * ff, d, c.mlp_bias)?)
            } else {
                GateUp::Separate {
                    gate: linear(&mut w, &format!("{p}.mlp.gate_proj"), ff, d, c.mlp_bias)?,
                    up: linear(&mut w, &format!("{p}.mlp.up_proj"), ff, d, c.mlp_bias)?,
                }
            };
            let (q_norm, k_norm) = if fam.qk_norm {
                (Some(mv(w.take(&format!("{p}.self_attn.q_norm.weight"), &[hd])?)), Some(mv(w.take(&format!("{p}.self_attn.k_norm.weight"), &[hd])?)))
            } else {
                (None, None)
            };
            layers.push(Layer {
                input_norm: mv(w.take(&format!("{p}.input_layernorm.weight"), &[d])?),
                post_norm: mv(w.take(&format!("{p}.post_attention_layernorm.weight"), &[d])?),
                qkv,
                o: linear(&mut w, &format!("{p}.self_attn.o_proj"), d, nq * hd, c.attention_bias && fam.o_proj_bias)?,
                q_norm,
                k_norm,
                gate_up,
                down: linear(&mut w, &format!("{p}.mlp.down_proj"), d, ff, c.mlp_bias)?,
            });
        }
        let norm = mv(w.take("model.norm.weight", &[d])?);
        let lm_head = if c.tie_word_embeddings { None } else { Some(mv(w.take("lm_head.weight", &[v, d])?)) };
        let rope = Rope::new(c, device);
        if device.is_cuda() {
            // On the GPU a decoding step is bound by kernel launches as much as by bytes: one
            // projection for q|k|v and one for gate|up (as Phi-3 ships them) instead of five.
            // Same dot products; the CPU keeps separate matrices (its numbers stay bit-stable).
            for layer in &mut layers {
                fuse_projections(layer);
            }
        }
        Ok(Self { config, device, kind, embed, layers, norm, lm_head, rope })
    }

    /// LongRoPE models: sequence length above which RoPE switches to the long factors.
    pub fn rope_long_switch(&self) -> Option<i64> {
        self.rope.long_switch()
    }

    /// A KV cache for `batch` sequences of up to `capacity` tokens.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        let c = &self.config;
        KvCache::new(c.num_layers, batch, c.num_kv_heads as i64, capacity, c.head_dim as i64, self.kind, self.device)
    }

    /// Logits `[T, V]` (f32) of every position of one sequence, in a single forward call
    /// without prior cache: the quantity HF's `model(ids).logits[0]` returns.
    pub fn logits_all(&self, ids: &[u32]) -> Tensor {
        let t = ids.len() as i64;
        let ids_t = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).view([1, t]).to_device(self.device);
        let positions = Tensor::arange(t, (Kind::Int64, self.device)).view([1, t]);
        let mut cache = self.new_cache(1, t);
        let inp = StepInput { ids: &ids_t, positions: &positions, max_positions: &[t - 1], bias: None, head_mask: None, capture: &CaptureRequest::default(), all_logits: true, write_cols: None };
        self.forward(&inp, &mut cache).logits.squeeze_dim(0)
    }

    /// HF's RMSNorm: normalise in f32, cast back, then scale. On CUDA libtorch's fused
    /// `rms_norm` (one kernel; it upcasts to f32 internally and casts the normalised value back,
    /// as HF does) replaces the six-kernel chain; only the order of the f32 sum differs.
    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Tensor {
        if self.device.is_cuda() {
            let d = *x.size().last().unwrap();
            return w * x.rms_norm([d], None::<Tensor>, self.config.rms_norm_eps);
        }
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = (xf * (var + self.config.rms_norm_eps).rsqrt()).to_kind(self.kind);
        w * normed
    }

    /// Keys per chunk of the decode step's split-K `P·V` for `batch` sequences over a cache of
    /// `capacity` columns, or `None` for one batched GEMM. The plain GEMM has only
    /// `batch · kv_heads · ⌈head_dim / tile⌉` blocks, each walking the whole context: enough at
    /// large batches or short contexts (measured on an H200: splitting made batch 64–199 at 4k
    /// 15–20% slower and batch 1 at 4k no faster), too few at long contexts with a small batch
    /// (batch 1 at 128k: 60 → 74 tok/s). Chunks aim at ~2048 products in all; CPU: never.
    pub fn pv_chunk(&self, capacity: i64, batch: i64) -> Option<i64> {
        let heads = batch * self.config.num_kv_heads as i64;
        if !self.device.is_cuda() || heads >= 64 || capacity < 8192 {
            return None;
        }
        let chunks = (2048 / heads).max(2);
        let r = (capacity + chunks - 1) / chunks;
        Some(((r + 63) / 64 * 64).max(64))
    }

    /// Input norm, q/k/v projections (+ q/k norm), RoPE: `[B, H, T, head_dim]` each.
    fn qkv(&self, layer: &Layer, x: &Tensor, rope: &rope::RopeTables, b: i64, t: i64) -> (Tensor, Tensor, Tensor) {
        let c = &self.config;
        let (nq, nkv, hd) = (c.num_heads as i64, c.num_kv_heads as i64, c.head_dim as i64);
        let h = self.rms_norm(x, &layer.input_norm);
        if let (Qkv::Fused(p), None) = (&layer.qkv, &layer.q_norm) {
            // q and k are adjacent in the fused output: rotate them with one set of kernels.
            let all = p.forward(&h).view([b, t, nq + 2 * nkv, hd]);
            let qk = rope::apply(&all.narrow(2, 0, nq + nkv).transpose(1, 2), rope, self.rope.rotary_dim);
            let v = all.narrow(2, nq + nkv, nkv).transpose(1, 2);
            return (qk.narrow(1, 0, nq), qk.narrow(1, nq, nkv), v);
        }
        let (q, k, v) = match &layer.qkv {
            Qkv::Separate { q, k, v } => (q.forward(&h), k.forward(&h), v.forward(&h)),
            Qkv::Fused(p) => {
                let all = p.forward(&h);
                let parts = all.split_with_sizes([nq * hd, nkv * hd, nkv * hd], -1);
                (parts[0].shallow_clone(), parts[1].shallow_clone(), parts[2].shallow_clone())
            }
        };
        let mut q = q.view([b, t, nq, hd]);
        let mut k = k.view([b, t, nkv, hd]);
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = self.rms_norm(&q, qn);
            k = self.rms_norm(&k, kn);
        }
        let q = q.transpose(1, 2);
        let k = k.transpose(1, 2);
        let v = v.view([b, t, nkv, hd]).transpose(1, 2);
        let q = rope::apply(&q, rope, self.rope.rotary_dim);
        let k = rope::apply(&k, rope, self.rope.rotary_dim);
        (q, k, v)
    }

    /// `o_proj` of the heads' outputs `[B, H, T, head_dim]`, residual, post norm, MLP, residual.
    fn attn_out_mlp(&self, layer: &Layer, x: Tensor, out: &Tensor, b: i64, t: i64) -> Tensor {
        let c = &self.config;
        let (nq, hd) = (c.num_heads as i64, c.head_dim as i64);
        let attn = layer.o.forward(&out.transpose(1, 2).reshape([b, t, nq * hd]));
        let x = x + attn;
        let h = self.rms_norm(&x, &layer.post_norm);
        let mlp_in = match &layer.gate_up {
            GateUp::Separate { gate, up } => gate.forward(&h).silu() * up.forward(&h),
            GateUp::Fused(p) => {
                let gu = p.forward(&h).chunk(2, -1);
                gu[0].silu() * &gu[1]
            }
        };
        x + layer.down.forward(&mlp_in)
    }

    /// One decoding step (one new token per sequence) whose every device address is fixed
    /// across steps, so that it can be captured once as a CUDA graph and replayed: the cache
    /// column, the RoPE positions and the fed tokens are device tensors in `st`, attention runs
    /// over the whole cache capacity with unwritten and invisible columns masked, and the step
    /// ends by writing its greedy tokens into `st.ids` and advancing `st.pos` and `st.col` in
    /// place. No host synchronisation happens inside. The values equal `forward` with `T = 1`
    /// (extra masked columns contribute exact zeros).
    pub fn decode_step(&self, st: &DecodeState, cache: &mut KvCache, cap: &CaptureRequest) -> StepOutput {
        let _guard = tch::no_grad_guard();
        if st.fused {
            // `prepare` has run outside any graph capture (the decoding loop calls it at each
            // batch size): here it only looks the batch's kernels up.
            if let Ok(k) = self.fused_kernels(cap).and_then(|k| k.prepare(st.ids.size()[0]).map(|_| k)) {
                return self.decode_step_fused(k, st, cache, cap);
            }
        }
        let c = &self.config;
        let b = st.ids.size()[0];
        let capn = cache.capacity;
        let (nq, nkv, hd) = (c.num_heads as i64, c.num_kv_heads as i64, c.head_dim as i64);
        let group = nq / nkv;
        let scale = (hd as f64).powf(-0.5);
        assert!(self.rope.long_switch().is_none(), "decode_step does not switch LongRoPE regimes");
        let rope = self.rope.tables(&st.pos, &vec![0; b as usize], self.kind);
        let visible = st.kpos.le_tensor(&st.col).logical_and(&st.key_ok); // [B, cap]
        let bias = Tensor::full([b, capn], f64::NEG_INFINITY, (Kind::Float, self.device)).masked_fill(&visible, 0.0).view([b, 1, 1, capn]);
        let mut x = self.embed.embedding_like(&st.ids);
        let (mut argmax, mut argmax_w, mut topk, mut mass) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let reasoning_w = cap.reasoning.as_ref().map(|r| r.weights(capn, &(&st.col - &st.pos), &st.col));
        let mut reasoning = Vec::new();
        let mut hidden_layers: Vec<(usize, Tensor)> = Vec::new();
        // Every layer's f32 scores and probabilities written into one `[L, B, Hq, cap]` buffer
        // each, so that the argmax capture is one reduction and one gather for all layers
        // instead of two kernels per layer (while the two buffers stay under 1 GiB).
        let n_layers = self.layers.len() as i64;
        let whole = cap.argmax && 2 * n_layers * b * nq * capn * 4 <= 1 << 30;
        let bufs = whole.then(|| (Tensor::empty([n_layers, b, nq, 1, capn], (Kind::Float, self.device)), Tensor::empty([n_layers, b, nq, 1, capn], (Kind::Float, self.device))));
        for (li, layer) in self.layers.iter().enumerate() {
            let (mut q, k, v) = self.qkv(layer, &x, &rope, b, 1);
            let mask = st.keep.as_ref().map(|k| k.get(li as i64).view([b, nq, 1, 1]));
            if let Some(m) = &mask {
                if st.mask_mode == MaskMode::UniformAttention {
                    q = &q * m;
                }
            }
            cache.write_at(li, &st.col, &k, &v);
            let (keys, values) = cache.full(li);
            let q_last = q.reshape([b, nkv, group, hd]);
            // bias (f32) + scores (model dtype) promotes to f32 in the same kernel: the exact
            // upcast-then-add of the eager path, one launch fewer.
            let qk = (q_last.matmul(&keys.transpose(-1, -2)) * scale).view([b, nq, 1, capn]);
            let (scores, probs) = match &bufs {
                Some((sb, pb)) => {
                    let (so, po) = (sb.get(li as i64), pb.get(li as i64));
                    let _ = bias.add_out(&so, &qk);
                    let _ = so.softmax_int_out(&po, -1, Kind::Float);
                    (so, po)
                }
                None => {
                    let scores = &bias + qk;
                    let probs = scores.softmax(-1, Kind::Float);
                    (scores, probs)
                }
            };
            let p = probs.to_kind(self.kind).reshape([b, nkv, group, capn]);
            let out = match st.pv_chunk {
                // Split-K on the GPU: one (group × R)·(R × hd) product per chunk of R keys, f32
                // partial sums added in f32 and rounded once (as a single f32-accumulating GEMM
                // does). A plain batched GEMM here has only nkv·⌈hd/tile⌉ blocks, each walking
                // the whole context, and leaves most of the GPU idle at long contexts.
                Some(r) if self.device.is_cuda() && capn % r == 0 && capn > r => {
                    let chunks = capn / r;
                    let pc = p.view([b, nkv, group, chunks, r]).permute([0, 1, 3, 2, 4]).contiguous().view([b * nkv * chunks, group, r]);
                    let vc = values.view([b * nkv * chunks, r, hd]);
                    let part = if self.kind == Kind::Float { pc.bmm(&vc) } else { pc.bmm_dtype(&vc, Kind::Float) };
                    part.view([b, nkv, chunks, group, hd]).sum_dim_intlist(2, false, Kind::Float).to_kind(self.kind)
                }
                _ => p.matmul(&values),
            }
            .reshape([b, nq, 1, hd]);
            let out = match &mask {
                Some(m) if st.mask_mode == MaskMode::ZeroOutput => out * m,
                _ => out,
            };
            x = self.attn_out_mlp(layer, x, &out, b, 1);
            if cap.argmax && bufs.is_none() {
                let am = scores.view([b, nq, capn]).argmax(-1, false);
                argmax_w.push(probs.view([b, nq, capn]).gather(-1, &am.unsqueeze(-1), false).squeeze_dim(-1));
                argmax.push(am);
            }
            if cap.top_k > 0 {
                topk.push(scores.view([b, nq, capn]).topk(cap.top_k as i64, -1, true, true).1);
            }
            if let Some(spans) = &cap.spans {
                let p_len = spans.size()[1].min(capn);
                let row = probs.view([b, nq, capn]).narrow(-1, 0, p_len);
                mass.push(row.matmul(&spans.narrow(1, 0, p_len).to_kind(Kind::Float)));
            }
            if let Some(w) = &reasoning_w {
                reasoning.push(probs.view([b, nq, capn]).matmul(w));
            }
            if cap.hidden.contains(&HiddenSite::Layer(li)) {
                hidden_layers.push((li, x.select(1, 0).to_kind(Kind::Float)));
            }
        }
        let (argmax_all, weight_all) = match &bufs {
            Some((sb, pb)) => {
                let am = sb.view([n_layers, b, nq, capn]).argmax(-1, false);
                let w = pb.view([n_layers, b, nq, capn]).gather(-1, &am.unsqueeze(-1), false).squeeze_dim(-1);
                (Some(am), Some(w))
            }
            None => (None, None),
        };
        let normed = self.rms_norm(&x, &self.norm);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = normed.select(1, 0).linear::<Tensor>(head, None).to_kind(Kind::Float);
        let (hidden, tokens) = finish_step(st, cap, &logits, Some(&normed.select(1, 0)), &hidden_layers);
        let stack = |v: Vec<Tensor>| if v.is_empty() { None } else { Some(Tensor::stack(&v, 0)) };
        StepOutput {
            logits,
            argmax: argmax_all.or_else(|| stack(argmax)),
            argmax_weight: weight_all.or_else(|| stack(argmax_w)),
            top_k: stack(topk),
            span_mass: stack(mass),
            reasoning: stack(reasoning).map(|m| ReasoningRequest::scores(&m)),
            hidden,
            tokens: Some(tokens),
            last_rows: None,
            attention: None,
        }
    }

    /// The fused CUDA decode kernels for this model and capture (compiled on first call), or why
    /// they do not apply: CPU, a top-k or span-mass capture, LongRoPE, an unsupported shape or
    /// dtype, no NVRTC.
    pub fn fused_kernels(&self, cap: &CaptureRequest) -> Result<&'static Kernels, String> {
        if !self.device.is_cuda() {
            return Err("fused kernels run on CUDA only".into());
        }
        if cap.top_k > 0 || cap.spans.is_some() {
            return Err("top-k and span-mass captures run on libtorch ops".into());
        }
        if self.rope.long_switch().is_some() {
            return Err("fused kernels have no LongRoPE regime switch".into());
        }
        let c = &self.config;
        // Only a family that opted in, and only for the activation the kernels compute.
        let fam = family::of(c.arch);
        if !fam.fused_kernels || fam.activation != Activation::Silu {
            return Err(format!("the {:?} family does not run on the fused kernels", c.arch));
        }
        let spec = kernels::Spec {
            kind: self.kind,
            head_dim: c.head_dim,
            n_heads: c.num_heads,
            n_kv_heads: c.num_kv_heads,
            rotary_dim: self.rope.rotary_dim as usize,
            qk_norm: self.layers.first().is_some_and(|l| l.q_norm.is_some()),
            row_lengths: vec![c.hidden_size, c.intermediate_size, c.num_heads * c.head_dim],
        };
        kernels::get(&spec, self.device)
    }

    /// [`Model::decode_step`] on the fused kernels (`csrc/decode_kernels.cu`): per layer a
    /// norm, the q|k|v GEMV, RoPE + cache write, attention with the argmax capture, the o GEMV
    /// with the residual add, a norm, the gate|up GEMV with SiLU·up, the down GEMV with the
    /// residual add (above `FUSED_MAX_BATCH` rows the projections are GEMMs). Captures the argmax, Eq. 2 (reduced inside
    /// the attention kernel) and hidden states (not top-k or span mass: the caller checks).
    fn decode_step_fused(&self, k: &Kernels, st: &DecodeState, cache: &mut KvCache, cap: &CaptureRequest) -> StepOutput {
        let c = &self.config;
        let b = st.ids.size()[0];
        let capn = cache.capacity;
        let (nq, nkv, hd, d) = (c.num_heads as i64, c.num_kv_heads as i64, c.head_dim as i64, c.hidden_size as i64);
        let eps = c.rms_norm_eps;
        let opts = (self.kind, self.device);
        let n_layers = self.layers.len() as i64;
        let (inv_freq, attn_scale) = self.rope.inv_freq();
        let chunks = k.attention_chunks(capn, b, nkv);
        let partials = kernels::attention_partials(b, nq, hd, chunks.1, self.device);
        let argmax = Tensor::empty([n_layers, b, nq], (Kind::Int64, self.device));
        let weight = Tensor::empty([n_layers, b, nq], (Kind::Float, self.device));
        // Eq. 2: the needle row of each sequence (contiguous already unless a caller built it
        // otherwise: then one copy per step, inside the graph) and the scores of every layer.
        let eq2 = cap.reasoning.as_ref().map(|r| (r.needle.to_kind(Kind::Float).contiguous(), r.sink, r.local, Tensor::empty([n_layers, b, nq], (Kind::Float, self.device))));
        // Above `FUSED_MAX_BATCH` rows the projections are cuBLAS GEMMs (the GEMVs' registers
        // grow with the rows, and tensor cores win from ~16 rows); norms, RoPE + cache write
        // and the attention with its captures stay fused kernels.
        let wide = b > kernels::FUSED_MAX_BATCH;
        // Wide steps: the projections on the tensor-core GEMMs of `csrc/decode_kernels.cu`
        // (`RHX_WGEMM`), else cuBLAS (`Linear::forward`).
        let wgemm = k.uses_wide_gemm(b);
        let gemm = |x: &Tensor, lin: &Linear| -> Tensor {
            if wgemm {
                let y = Tensor::empty([b, lin.w.size()[0]], opts);
                k.wgemm(x, &lin.w, lin.b.as_ref(), &y, GemvMode::Plain);
                y
            } else {
                lin.forward(x)
            }
        };
        let x = self.embed.embedding_like(&st.ids).view([b, d]).contiguous();
        let h = Tensor::empty([b, d], opts);
        // Wide steps: the final norm's output, written by the last layer's residual add.
        let final_normed = wide.then(|| Tensor::empty([b, d], opts));
        let q = Tensor::empty([b, nq * hd], opts);
        let attn = Tensor::empty([b, nq * hd], opts);
        let act = Tensor::empty([b, c.intermediate_size as i64], opts);
        let qkv = Tensor::empty([b, (nq + 2 * nkv) * hd], opts);
        let mut hidden_layers: Vec<(usize, Tensor)> = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            let (Qkv::Fused(qkv_p), GateUp::Fused(gu_p)) = (&layer.qkv, &layer.gate_up) else {
                unreachable!("projections are fused on CUDA")
            };
            let keep = st.keep.as_ref().map(|t| t.get(li as i64));
            // The norms run inside the next GEMV when its input rows fit in shared memory.
            let fold = !wide && k.can_norm(b, d);
            let (kc, vc) = cache.full(li);
            let uniform = keep.as_ref().filter(|_| st.mask_mode == MaskMode::UniformAttention);
            let qk_norm = layer.q_norm.as_ref().zip(layer.k_norm.as_ref());
            // Up to 8 rows without q/k norm, RoPE and the cache write can run in the q|k|v GEMV
            // (`RHX_ROPE_GEMV`): it writes q and the caches itself, no `qkv`.
            let rope = (qk_norm.is_none() && k.uses_rope_gemv(b)).then_some(kernels::RopeArgs { pos: &st.pos, inv_freq, attn_scale, keep: uniform, q: &q, kc: &kc, vc: &vc, col: &st.col });
            let (mode, out) = if rope.is_some() { (GemvMode::Rope, &q) } else { (GemvMode::Plain, &qkv) };
            let qkv = if wide {
                // Later layers' input norms ran with the previous layer's last residual add.
                if li == 0 {
                    k.rmsnorm(&x, &layer.input_norm, &h, eps);
                }
                gemm(&h, qkv_p)
            } else if fold {
                k.gemv(&x, &qkv_p.w, qkv_p.b.as_ref(), out, mode, Some((&layer.input_norm, eps)), rope.as_ref());
                qkv.shallow_clone()
            } else {
                k.rmsnorm(&x, &layer.input_norm, &h, eps);
                k.gemv(&h, &qkv_p.w, qkv_p.b.as_ref(), out, mode, None, rope.as_ref());
                qkv.shallow_clone()
            };
            if rope.is_none() {
                k.rope_kv(&qkv, &st.pos, inv_freq, attn_scale, qk_norm, eps, uniform, &q, &kc, &vc, &st.col, (nq, nkv, hd));
            }
            let zero_out = st.mask_mode == MaskMode::ZeroOutput;
            let eq2_out = eq2.as_ref().map(|e| e.3.get(li as i64));
            let eq2_args = eq2.as_ref().zip(eq2_out.as_ref()).map(|(e, out)| kernels::Eq2Args { needle: &e.0, pos: &st.pos, sink: e.1, local: e.2, out });
            k.attention(&q, &kc, &vc, &st.col, &st.key_ok, chunks, (hd as f64).powf(-0.5), keep.as_ref(), zero_out, &partials, &attn, &argmax.get(li as i64), &weight.get(li as i64), eq2_args.as_ref());
            if wide {
                // cuBLAS GEMMs (tensor cores), each residual add fused with the norm after it
                // (the next layer's input norm, or the final norm after the last layer), with
                // the libtorch step's roundings: `x + round(o(attn))`, `round(silu(gate)) · up`.
                k.add_rmsnorm(&x, &gemm(&attn, &layer.o), &layer.post_norm, &h, eps);
                if wgemm {
                    k.wgemm(&h, &gu_p.w, gu_p.b.as_ref(), &act, GemvMode::SiluMul);
                } else {
                    k.silu_mul(&gu_p.forward(&h), &act);
                }
                let (next_norm, normed) = match self.layers.get(li + 1) {
                    Some(next) => (&next.input_norm, &h),
                    None => (&self.norm, final_normed.as_ref().expect("wide steps allocate the final norm's output")),
                };
                k.add_rmsnorm(&x, &gemm(&act, &layer.down), next_norm, normed, eps);
            } else {
                k.gemv(&attn, &layer.o.w, layer.o.b.as_ref(), &x, GemvMode::Residual, None, None);
                if fold {
                    k.gemv(&x, &gu_p.w, gu_p.b.as_ref(), &act, GemvMode::SiluMul, Some((&layer.post_norm, eps)), None);
                } else {
                    k.rmsnorm(&x, &layer.post_norm, &h, eps);
                    k.gemv(&h, &gu_p.w, gu_p.b.as_ref(), &act, GemvMode::SiluMul, None, None);
                }
                k.gemv(&act, &layer.down.w, layer.down.b.as_ref(), &x, GemvMode::Residual, None, None);
            }
            if cap.hidden.contains(&HiddenSite::Layer(li)) {
                // A copy even in f32 (`to_kind` would alias `x`, which the next layer updates).
                hidden_layers.push((li, if self.kind == Kind::Float { x.copy() } else { x.to_kind(Kind::Float) }));
            }
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let wants_final = cap.hidden.contains(&HiddenSite::Final);
        let fold = !wide && k.can_norm(b, d) && !wants_final;
        let normed = final_normed.or_else(|| (!fold).then(|| {
            let n = Tensor::empty([b, d], opts);
            k.rmsnorm(&x, &self.norm, &n, eps);
            n
        }));
        let logits = match &normed {
            Some(n) if wgemm => {
                let logits = Tensor::empty([b, c.vocab_size as i64], opts);
                k.wgemm(n, head, None, &logits, GemvMode::Plain);
                logits
            }
            Some(n) if wide => n.linear::<Tensor>(head, None),
            _ => {
                let logits = Tensor::empty([b, c.vocab_size as i64], opts);
                match &normed {
                    None => k.gemv(&x, head, None, &logits, GemvMode::Plain, Some((&self.norm, eps)), None),
                    Some(n) => k.gemv(n, head, None, &logits, GemvMode::Plain, None, None),
                }
                logits
            }
        };
        let logits = logits.to_kind(Kind::Float);
        let (hidden, tokens) = finish_step(st, cap, &logits, normed.as_ref(), &hidden_layers);
        StepOutput {
            logits,
            argmax: cap.argmax.then(|| argmax.shallow_clone()),
            argmax_weight: cap.argmax.then_some(weight),
            top_k: None,
            span_mass: None,
            reasoning: eq2.map(|e| e.3),
            hidden,
            tokens: Some(tokens),
            last_rows: None,
            attention: None,
        }
    }

    /// Runs the new tokens through the model, writing their K/V at `cache.len ..` (the caller
    /// commits them with `cache.advance`, or overwrites them with a second pass).
    pub fn forward(&self, inp: &StepInput, cache: &mut KvCache) -> StepOutput {
        assert!(inp.write_cols.is_none(), "per-row write columns go through Model::forward_rows, which returns their errors");
        match self.forward_impl(inp, cache) {
            Ok(out) => out,
            Err(e) => unreachable!("only per-row writes fail: {e}"),
        }
    }

    /// [`Model::forward`] of a step whose rows write their own cache columns (`inp.write_cols`):
    /// columns outside the cache, or for another number of rows, are an error, and nothing is
    /// written then.
    pub fn forward_rows(&self, inp: &StepInput, cache: &mut KvCache) -> Result<StepOutput, KvCacheError> {
        self.forward_impl(inp, cache)
    }

    fn forward_impl(&self, inp: &StepInput, cache: &mut KvCache) -> Result<StepOutput, KvCacheError> {
        let _guard = tch::no_grad_guard();
        let c = &self.config;
        let size = inp.ids.size();
        let (b, t) = (size[0], size[1]);
        let (nq, nkv, hd) = (c.num_heads as i64, c.num_kv_heads as i64, c.head_dim as i64);
        let group = nq / nkv;
        let scale = (hd as f64).powf(-0.5);
        let start = cache.len;
        let s = start + t;
        let rope = self.rope.tables(inp.positions, inp.max_positions, self.kind);
        if inp.bias.is_none() {
            assert!(start == 0 || t == 1, "plain causal attention (bias None) is only valid from an empty cache or for one query");
        }
        let bias = inp.bias.map(|b| b.to_kind(self.kind));
        let last_bias = inp.bias.map(|b| b.narrow(2, t - 1, 1)); // [B,1,1,S] f32

        let mut x = self.embed.embedding_like(inp.ids);
        let cap = inp.capture;
        let mut argmax = Vec::new();
        let mut argmax_w = Vec::new();
        let mut topk = Vec::new();
        let mut mass = Vec::new();
        let mut hidden_layers: Vec<(usize, Tensor)> = Vec::new();
        // Eq. 2 of the last query row: its column is `s - 1`, each row's padding that column
        // minus its RoPE position.
        if inp.write_cols.is_some() {
            assert!(t == 1 && inp.bias.is_some(), "per-row write columns take one query per row and a bias");
        }
        let reasoning_w = cap.reasoning.as_ref().map(|r| {
            let q_col = match inp.write_cols {
                Some(cols) => cols.index().view([b, 1]),
                None => Tensor::from_slice(&[s - 1]).to_device(self.device),
            };
            r.weights(s, &(&q_col - inp.positions.narrow(1, t - 1, 1)), &q_col)
        });
        let mut reasoning = Vec::new();
        let mut last_rows = Vec::new();
        let mut attention = None;

        for (li, layer) in self.layers.iter().enumerate() {
            let (mut q, k, v) = self.qkv(layer, &x, &rope, b, t);
            let mask = inp.head_mask.map(|m| m.keep.get(li as i64).view([b, nq, 1, 1]));
            if let (Some(m), Some(hm)) = (&mask, inp.head_mask) {
                if hm.mode == MaskMode::UniformAttention {
                    q = &q * m;
                }
            }
            match inp.write_cols {
                Some(cols) => cache.write_rows(li, cols, &k, &v)?,
                None => cache.write(li, start, &k, &v),
            }
            let (keys, values) = cache.view(li, s);

            // Last query row, eagerly, in f32 after the matmul (HF eager: scores in model dtype,
            // softmax in f32). Grouped-query attention without repeating K/V.
            let q_last = q.narrow(2, t - 1, 1).reshape([b, nkv, group, hd]);
            let mut scores_last = (q_last.matmul(&keys.transpose(-1, -2)) * scale).to_kind(Kind::Float).view([b, nq, 1, s]);
            if let Some(lb) = &last_bias {
                scores_last += lb;
            }
            let probs_last = scores_last.softmax(-1, Kind::Float);

            if cap.attention_layer == Some(li) {
                // Every row, as HF eager attention: scores in the model dtype, softmax in f32.
                let full = (q.matmul(&keys.transpose(-1, -2).repeat_interleave_self_int(group, Some(1), None)) * scale).to_kind(Kind::Float);
                let full = match &inp.bias {
                    Some(bias) => full + *bias,
                    None => full + causal_bias(t, s, start, self.device),
                };
                attention = Some(full.softmax(-1, Kind::Float));
            }
            let out = if t == 1 {
                // Decode: the last row *is* the attention.
                let p = probs_last.to_kind(self.kind).reshape([b, nkv, group, s]);
                p.matmul(&values).reshape([b, nq, 1, hd])
            } else {
                match &bias {
                    Some(bias) => Tensor::scaled_dot_product_attention(&q, &keys, &values, Some(bias), 0.0, false, scale, true),
                    None => Tensor::scaled_dot_product_attention::<Tensor>(&q, &keys, &values, None, 0.0, true, scale, true),
                }
            };
            let out = match (&mask, inp.head_mask) {
                (Some(m), Some(hm)) if hm.mode == MaskMode::ZeroOutput => out * m,
                _ => out,
            };
            x = self.attn_out_mlp(layer, x, &out, b, t);

            if cap.argmax {
                let row = probs_last.view([b, nq, s]);
                // Argmax of the f32 scores: same as of the probabilities, without softmax ties.
                let am = scores_last.view([b, nq, s]).argmax(-1, false);
                argmax_w.push(row.gather(-1, &am.unsqueeze(-1), false).squeeze_dim(-1));
                argmax.push(am);
            }
            if cap.top_k > 0 {
                let k = (cap.top_k as i64).min(s);
                topk.push(scores_last.view([b, nq, s]).topk(k, -1, true, true).1);
            }
            if let Some(spans) = &cap.spans {
                let p_len = spans.size()[1].min(s);
                let row = probs_last.view([b, nq, s]).narrow(-1, 0, p_len);
                mass.push(row.matmul(&spans.narrow(1, 0, p_len).to_kind(Kind::Float)));
            }
            if let Some(w) = &reasoning_w {
                reasoning.push(probs_last.view([b, nq, s]).matmul(w));
            }
            if cap.last_rows {
                last_rows.push(probs_last.view([b, nq, s]));
            }
            if cap.hidden.contains(&HiddenSite::Layer(li)) {
                hidden_layers.push((li, x.select(1, t - 1).to_kind(Kind::Float)));
            }
        }
        let normed = self.rms_norm(&x, &self.norm);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = if inp.all_logits { normed.linear::<Tensor>(head, None) } else { normed.select(1, t - 1).linear::<Tensor>(head, None) };
        let hidden = cap
            .hidden
            .iter()
            .map(|site| match site {
                HiddenSite::Final => normed.select(1, t - 1).to_kind(Kind::Float),
                HiddenSite::Layer(l) => hidden_layers.iter().find(|(li, _)| li == l).map(|(_, t)| t.shallow_clone()).expect("layer index checked by caller"),
            })
            .collect();
        let stack = |v: Vec<Tensor>| if v.is_empty() { None } else { Some(Tensor::stack(&v, 0)) };
        Ok(StepOutput {
            logits: logits.to_kind(Kind::Float),
            argmax: stack(argmax),
            argmax_weight: stack(argmax_w),
            top_k: stack(topk),
            span_mass: stack(mass),
            reasoning: stack(reasoning).map(|m| ReasoningRequest::scores(&m)),
            hidden,
            tokens: None,
            last_rows: stack(last_rows),
            attention,
        })
    }
}

/// `[1, 1, T, S]` additive causal bias of queries at columns `start .. start + T` over `S` keys.
fn causal_bias(t: i64, s: i64, start: i64, device: Device) -> Tensor {
    let kpos = Tensor::arange(s, (Kind::Int64, device)).view([1, s]);
    let qpos = Tensor::arange_start(start, start + t, (Kind::Int64, device)).view([t, 1]);
    Tensor::zeros([t, s], (Kind::Float, device)).masked_fill(&kpos.gt_tensor(&qpos), f64::NEG_INFINITY).view([1, 1, t, s])
}

/// The end of a decode step (libtorch or fused): the requested hidden states (`final_hidden` =
/// the normalised last position `[B, D]`, present when `HiddenSite::Final` is requested), the
/// greedy tokens written into `st.ids`, and `st.pos` / `st.col` advanced in place.
fn finish_step(st: &DecodeState, cap: &CaptureRequest, logits: &Tensor, final_hidden: Option<&Tensor>, hidden_layers: &[(usize, Tensor)]) -> (Vec<Tensor>, Tensor) {
    let hidden = cap
        .hidden
        .iter()
        .map(|site| match site {
            HiddenSite::Final => final_hidden.expect("normalised when the final hidden state is captured").to_kind(Kind::Float),
            HiddenSite::Layer(l) => hidden_layers.iter().find(|(li, _)| li == l).map(|(_, t)| t.shallow_clone()).expect("layer index checked by caller"),
        })
        .collect();
    let tokens = greedy_tokens(logits);
    st.ids.shallow_clone().copy_(&tokens.view([-1, 1]));
    let _ = st.pos.shallow_clone().g_add_scalar_(1);
    let _ = st.col.shallow_clone().g_add_scalar_(1);
    (hidden, tokens)
}

/// Argmax over the vocabulary (lowest index among equal maxima). On the GPU in two stages,
/// maxima of chunks then the best chunk: one block walking 128k logits took 38 µs of a 7 ms
/// step (H200); the result is the same index.
fn greedy_tokens(logits: &Tensor) -> Tensor {
    let size = logits.size();
    let (b, v) = (size[0], size[1]);
    match [256i64, 128, 64].into_iter().find(|c| v % c == 0 && v / c >= 16) {
        Some(c) if logits.device().is_cuda() => {
            let (vals, idx) = logits.view([b, v / c, c]).max_dim(-1, false);
            let best = vals.argmax(-1, true); // [b, 1], lowest chunk among equal maxima
            best.squeeze_dim(-1) * c + idx.gather(-1, &best, false).squeeze_dim(-1)
        }
        _ => logits.argmax(-1, false),
    }
}

/// Replaces separate q/k/v and gate/up projections by one concatenated matrix each.
fn fuse_projections(layer: &mut Layer) {
    let cat_bias = |ls: &[&Linear]| -> Option<Tensor> {
        if ls.iter().all(|l| l.b.is_none()) {
            return None;
        }
        let parts: Vec<Tensor> = ls.iter().map(|l| l.b.as_ref().map(|b| b.shallow_clone()).unwrap_or_else(|| l.w.zeros_like().select(1, 0))).collect();
        Some(Tensor::cat(&parts, 0))
    };
    if let Qkv::Separate { q, k, v } = &layer.qkv {
        let fused = Linear { w: Tensor::cat(&[&q.w, &k.w, &v.w], 0), b: cat_bias(&[q, k, v]) };
        layer.qkv = Qkv::Fused(fused);
    }
    if let GateUp::Separate { gate, up } = &layer.gate_up {
        let fused = Linear { w: Tensor::cat(&[&gate.w, &up.w], 0), b: cat_bias(&[gate, up]) };
        layer.gate_up = GateUp::Fused(fused);
    }
}

trait EmbeddingLike {
    fn embedding_like(&self, ids: &Tensor) -> Tensor;
}

impl EmbeddingLike for Tensor {
    fn embedding_like(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(self, ids, -1, false, false)
    }
}
