// rhx fused decode kernels. Compiled at run time with NVRTC (src/engine/kernels.rs) for one
// model shape and activation dtype, so every size below is a compile-time constant. One decoding
// step of one layer is 8 launches (norm, q|k|v GEMV, RoPE + cache write, attention with the
// capture, o GEMV + residual, norm, gate|up GEMV + SiLU·up, down GEMV + residual) instead of
// ~25 libtorch kernels. Rounding follows the libtorch path op for op where HF eager rounds to
// the activation dtype (scores, RoPE products, residual adds), so captures agree with HF eager;
// sums run in f32 in another order than cuBLAS.
//
// Macros set by the host: DT (0 bf16, 1 f16, 2 f32), HD (head dim), EPL (head-dim elements per
// lane in attention), NQ, NKV, ROT (rotary dims), QKNORM (Qwen3 per-head q/k RMSNorm).
// Every attention kernel has a variant `_rs` that also reduces Eq. 2 (the reasoning score: see
// Eq2 below) on the way.
//
// The host compiles the source in parts, each a module of its own, so that a process builds only
// what its batch sizes use (the GEMVs of all eight batch sizes are ~85% of the compile time):
// WANT_CORE = 1 the norms, RoPE and attention kernels; WANT_GEMV = B (1..8) the GEMVs of batch B,
// 9 those of every batch, 0 none; WANT_WIDE = 1 the tensor-core GEMM of wide steps (wgemm below).
// A timeline build is one module of every part (its records share one sequence counter).
#ifndef WANT_CORE
#define WANT_CORE 1
#endif
#ifndef WANT_GEMV
#define WANT_GEMV 9
#endif
#ifndef WANT_WIDE
#define WANT_WIDE 0
#endif

#if DT == 2
typedef float T;
#else
typedef unsigned short T;
#endif
#define G (NQ / NKV)
#define VEC (16 / (int)sizeof(T))
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float ld(T v) {
#if DT == 0
  return __uint_as_float(((unsigned)v) << 16);
#elif DT == 1
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
  return f;
#else
  return v;
#endif
}

// Round to the storage type, nearest-even (as c10::BFloat16 / __float2half_rn).
__device__ __forceinline__ T st(float f) {
#if DT == 0
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (T)0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (T)(u >> 16);
#elif DT == 1
  T h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  return f;
#endif
}

// Value after a round trip through the storage type (what libtorch's op would have stored).
__device__ __forceinline__ float rnd(float f) { return ld(st(f)); }

__device__ __forceinline__ void unpack(const uint4& u, float* f) {
#if DT == 2
  f[0] = __uint_as_float(u.x);
  f[1] = __uint_as_float(u.y);
  f[2] = __uint_as_float(u.z);
  f[3] = __uint_as_float(u.w);
#else
  const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    f[2 * i] = ld((T)(w[i] & 0xffffu));
    f[2 * i + 1] = ld((T)(w[i] >> 16));
  }
#endif
}

// Tensor-core helpers (bf16 / f16, sm_80+): the attention and the wide steps' GEMM.
#if DT != 2 && __CUDA_ARCH__ >= 800
#if DT == 0
#define MMA_T "bf16"
#else
#define MMA_T "f16"
#endif
// Two f32 values as one register of two activation-dtype values, `lo` in the low half.
__device__ __forceinline__ unsigned pack_pair(float lo, float hi) {
  unsigned r;
#if DT == 0
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
  return r;
}
// D[g][2t, 2t+1] += Σ_k A[g][k] B[k][2t, 2t+1] over 16 k for rows g < 8 (rows 8..15 of A are
// zero): a0 = A[g][2t, 2t+1], a2 = A[g][2t+8, 2t+9], b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g].
__device__ __forceinline__ void mma_rows8(float& d0, float& d1, unsigned a0, unsigned a2, unsigned b0, unsigned b1) {
  float x2, x3;
  asm("mma.sync.aligned.m16n8k16.row.col.f32." MMA_T "." MMA_T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%5}, {%7,%8}, {%0,%1,%9,%9};"
      : "+f"(d0), "+f"(d1), "=f"(x2), "=f"(x3)
      : "r"(a0), "r"(0u), "r"(a2), "r"(b0), "r"(b1), "f"(0.f));
}
// D(16×8, f32) += A(16×16) · B(16×8): a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1], a2 = A[g][2t+8,
// 2t+9], a3 = A[g+8][2t+8, 2t+9]; b as above; d = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1].
__device__ __forceinline__ void mma_full(float* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32." MMA_T "." MMA_T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif

// 16 bytes of activations or cache (plain, coherent load: see the PDL note below).
__device__ __forceinline__ uint4 ld16(const T* p) { return *reinterpret_cast<const uint4*>(p); }

// Weights are read once per step: stream them past L1.
__device__ __forceinline__ uint4 ld_stream(const T* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

// Programmatic dependent launch (Hopper): a kernel launched with the PDL attribute may start
// while the previous one finishes; it must wait before reading what that one wrote. Both are
// no-ops when the kernel was launched without the attribute.
// (Hopper and later; older GPUs compile them away and are launched without the attribute.)
// Only weights (and other buffers no kernel of the step writes) are `const __restrict__`: the
// compiler reads those through the non-coherent path (ld.global.nc), which may be scheduled
// before the wait — for an activation written by the previous kernel that read stale values
// (measured: the merge kernel's chunk partials, 9000-token prompts, tokens differed from eager).
// TIMELINE = 1 (`RHX_TIMELINE`, a measurement build): thread 0 of every block records its
// kernel, block, SM and the global-timer times of its start, of the end of its wait on the
// previous kernel and of its end into a ring of TL_RECORDS records, for a timeline of the
// pipelined step without a profiler (`rhx bench` writes it out; scripts/bench/timeline.py reads
// it). One atomic per block; off in normal builds.
#ifndef TIMELINE
#define TIMELINE 0
#endif
#if TIMELINE
#define TL_RECORDS (1 << 18)
__device__ unsigned long long tl_records[TL_RECORDS * 8];
__device__ unsigned long long tl_next;
__shared__ unsigned long long tl_t[3];  // start, end of the wait, sequence number
__device__ __forceinline__ unsigned long long tl_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
struct Tl {
  unsigned long long tag;
  __device__ Tl(int kernel, long long extra) : tag((unsigned long long)kernel | ((unsigned long long)extra << 8)) {
    if (threadIdx.x == 0) {
      tl_t[0] = tl_now();
      tl_t[1] = 0;
      tl_t[2] = atomicAdd(&tl_next, 1ull);
    }
  }
  __device__ ~Tl() {
    if (threadIdx.x != 0) return;
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    unsigned long long* r = tl_records + (tl_t[2] % TL_RECORDS) * 8;
    r[0] = tl_t[2];
    r[1] = tag;
    r[2] = (unsigned long long)gridDim.x * gridDim.y * gridDim.z;
    r[3] = blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
    r[4] = sm;
    r[5] = tl_t[0];
    r[6] = tl_t[1];
    r[7] = tl_now();
  }
};
#define TL(kernel, extra) Tl tl_scope_(kernel, extra)
#else
#define TL(kernel, extra)
#endif

__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#if TIMELINE
  if (threadIdx.x == 0) tl_t[1] = tl_now();
#endif
}
__device__ __forceinline__ void pdl_launch_next() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v) {
  __shared__ float part[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (int)((blockDim.x + 31) >> 5) ? part[lane] : 0.f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

#if WANT_CORE
// HF RMSNorm of one row of `d` (the block's), given this thread's part of Σ x²: normalise in
// f32, round, scale by the weight.
__device__ __forceinline__ void rms_store(const T* xr, const T* __restrict__ w, T* __restrict__ out, int d, float eps, float ss) {
  const float r = rsqrtf(block_sum(ss) / (float)d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) out[i] = st(ld(w[i]) * rnd(ld(xr[i]) * r));
}

// HF RMSNorm, one row of `d` per block.
extern "C" __global__ void rmsnorm(const T* x, const T* __restrict__ w, T* __restrict__ out, int d, float eps) {
  TL(0, d);
  pdl_launch_next();
  pdl_wait();
  const T* xr = x + (size_t)blockIdx.x * d;
  float ss = 0.f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = ld(xr[i]);
    ss += v * v;
  }
  rms_store(xr, w, out + (size_t)blockIdx.x * d, d, eps, ss);
}

// Residual add then HF RMSNorm, one row of `d` per block (steps above the GEMVs' batch, after a
// cuBLAS GEMM): x = round(x + y) in place, as `x + o(attn)` rounds, then out = rmsnorm(x) as
// `rmsnorm` computes it — one launch for libtorch's add and the norm.
extern "C" __global__ void add_rmsnorm(T* x, const T* y, const T* __restrict__ w, T* __restrict__ out, int d, float eps) {
  TL(7, d);
  pdl_launch_next();
  pdl_wait();
  T* xr = x + (size_t)blockIdx.x * d;
  const T* yr = y + (size_t)blockIdx.x * d;
  float ss = 0.f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = rnd(ld(xr[i]) + ld(yr[i]));
    xr[i] = st(v);
    ss += v * v;
  }
  rms_store(xr, w, out + (size_t)blockIdx.x * d, d, eps, ss);
}

// out[b, j] = round(silu(gate)) · up for gu = [gate | up] rows of 2n (steps above the GEMVs'
// batch): `gate.silu() * up` in one launch, with its roundings (as the GEMV's MODE 2).
extern "C" __global__ void silu_mul(const T* gu, T* __restrict__ out, int n, int total) {
  TL(8, n);
  pdl_launch_next();
  pdl_wait();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int b = i / n, j = i - b * n;
    const float g = ld(gu[(size_t)b * 2 * n + j]);
    const float u = ld(gu[(size_t)b * 2 * n + n + j]);
    out[i] = st(rnd(g / (1.f + expf(-g))) * u);
  }
}

#endif  // WANT_CORE

__device__ __forceinline__ uint4 pack(const float* f) {
#if DT == 2
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
#else
  unsigned w[4];
#pragma unroll
  for (int i = 0; i < 4; i++) w[i] = (unsigned)st(f[2 * i]) | ((unsigned)st(f[2 * i + 1]) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
#endif
}

// RoPE as the libtorch step computes it, (x·cos).addcmul(rotate_half(x), sin): the cos and sin
// tables (× the attention scaling) rounded to the activation dtype, one rounding for the
// multiply-add. `rot` is -x[e + ROT/2] for e < ROT/2, else x[e - ROT/2]. Shared by rope_kv and
// the q|k|v GEMV that applies RoPE itself (MODE 3), so both round alike.
__device__ __forceinline__ void rope_cs(long long pos, float inv_freq, float attn_scale, float& cs, float& sn) {
  const float ang = (float)pos * inv_freq;
  cs = rnd(cosf(ang) * attn_scale);
  sn = rnd(sinf(ang) * attn_scale);
}
// The multiply and the fused multiply-add are spelled out (__fmul_rn, __fmaf_rn): left to the
// compiler, `v * cs + rot * sn` in f32 (where rnd is the identity) may contract either product
// into the FMA, and may choose differently where rope_kv and the GEMV's epilogue inline it.
__device__ __forceinline__ float rope_out(float v, float rot, float cs, float sn) { return rnd(__fmaf_rn(rot, sn, rnd(__fmul_rn(v, cs)))); }

// What the q|k|v GEMV with RoPE (MODE 3) writes instead of y: RoPE'd queries (× the
// uniform-attention mask `keep`, when given) into q, the new key and value into the caches at
// column *col (as rope_kv).
struct RopeOut {
  const long long* pos;
  const float* inv_freq;
  float attn_scale;
  const T* keep;
  T* q;
  T* kc;
  T* vc;
  long long cap;
  const long long* col;
};

#ifndef GEMV_THREADS
#define GEMV_THREADS 256
#endif
#ifndef GEMV_U
#define GEMV_U 4  // 16-byte weight loads per lane and row per stage (two stages in flight)
#endif
#ifndef GEMV_B1_BLOCKS
#define GEMV_B1_BLOCKS 2  // batch-1 GEMVs: blocks per SM the register budget aims at
#endif

// y[b, n] = Σ_k h[b, k] · W[n, k] for B ≤ 8 rows: one warp per output row (two for SiLU·up),
// 16-byte streaming loads of W, double-buffered (2·U loads in flight per lane); the first
// weights are requested before waiting for the previous kernel. XS = 0: h = x read from global
// memory; XS = 1: x copied into shared memory first (B·K elements; every warp then reads it
// there instead of waiting on L2 per iteration); XS = 2: h = RMSNorm(x) with weight `nw`,
// computed by every block into shared memory — the norm costs no launch of its own. MODE 0: y = W·h + bias. MODE 1: y = res + round(W·h + bias) (y may be res).
// MODE 3 (q|k|v, no q/k norm): each warp takes a head's rotary pair of rows and, instead of y,
// writes what rope_kv would from the stored projection (RopeOut) — RoPE costs no launch.
// MODE 2: W holds [gate; up] (2N rows), y = round(silu(round(gate))) · round(up), as
// `gate.silu() * up` rounds.
// S > 1 splits K: S adjacent warps of a block share a row pair, each reading K / S of it, and the
// first of them adds the others' sums (in warp order) — finer work for GEMVs whose rows would
// fill only 1–1.5 waves of the GPU (batch 1).
template <int B, int MODE, int XS, int S>
__device__ __forceinline__ void gemv(const T* x, const T* __restrict__ W, const T* __restrict__ bias, T* y, const T* res, int N, int K,
                                     const T* __restrict__ nw, float eps, const RopeOut& ro) {
  constexpr int R = 2;  // rows per warp: gate and up (MODE 2), a head's rotary pair (MODE 3), else two adjacent output rows
  constexpr int U = GEMV_U;
  constexpr int STEP = 32 * VEC * U;
  extern __shared__ uint4 xs_raw[];
  T* xs = reinterpret_cast<T*>(xs_raw);
  constexpr int WPB = GEMV_THREADS / 32;
  const int wib = threadIdx.x >> 5, ks = wib % S;
  const int lane = threadIdx.x & 31;
  const int KS = K / S;  // this warp's slice of each row: [ks·KS, (ks+1)·KS)
  // A grid smaller than one warp (group) per row pair walks the pairs: iteration `it` of warp
  // group g of block b takes pair (it · gridDim.x + b) · WPB/S + g. Every block runs the same
  // number of iterations (the split's barriers need all its warps), and the first weights of
  // the next pair are requested during the last stage of the current one.
  const int pairs = MODE == 2 ? N : (N + 1) / 2;
  const int per_it = gridDim.x * (WPB / S);
  const int iters = (pairs + per_it - 1) / per_it;
  int row[R];
  bool live[R];
  const T* wr[R];
  auto rows_of = [&](int it, int* rw, bool* lv, const T** wp) {
    const int pair = (it * gridDim.x + blockIdx.x) * (WPB / S) + wib / S;
    if (MODE == 2) {
      rw[0] = pair;
      rw[1] = pair + N;
      lv[0] = lv[1] = pair < N;
    } else if (MODE == 3) {
      // Pair p of head h: dims (p, p + ROT/2) while p < ROT/2, then adjacent unrotated dims.
      const int h = pair / (HD / 2), p = pair - h * (HD / 2);
      const int e = p < ROT / 2 ? p : ROT + 2 * (p - ROT / 2);
      rw[0] = h * HD + e;
      rw[1] = h * HD + (p < ROT / 2 ? e + ROT / 2 : e + 1);
      lv[0] = lv[1] = pair < pairs;
    } else {
#pragma unroll
      for (int r = 0; r < R; r++) {
        rw[r] = pair * R + r;
        lv[r] = rw[r] < N;
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++) wp[r] = W + (size_t)(lv[r] ? rw[r] : 0) * K + (size_t)ks * KS;
  };
  rows_of(0, row, live, wr);
  uint4 wv[R][U];
#pragma unroll
  for (int u = 0; u < U; u++) {
    const int k = lane * VEC + u * 32 * VEC;
#pragma unroll
    for (int r = 0; r < R; r++) wv[r][u] = (live[r] && k < KS) ? ld_stream(wr[r] + k) : make_uint4(0u, 0u, 0u, 0u);
  }
  pdl_launch_next();
  pdl_wait();
  if (XS == 1) {
    for (int k = threadIdx.x * VEC; k < B * K; k += GEMV_THREADS * VEC) *reinterpret_cast<uint4*>(xs + k) = *reinterpret_cast<const uint4*>(x + k);
    __syncthreads();
  }
  if (XS == 2) {
    __shared__ float red[GEMV_THREADS / 32][B];
    float ss[B];
#pragma unroll
    for (int b = 0; b < B; b++) ss[b] = 0.f;
    for (int k = threadIdx.x * VEC; k < K; k += GEMV_THREADS * VEC) {
#pragma unroll
      for (int b = 0; b < B; b++) {
        float f[VEC];
        unpack(*reinterpret_cast<const uint4*>(x + (size_t)b * K + k), f);
#pragma unroll
        for (int e = 0; e < VEC; e++) ss[b] += f[e] * f[e];
      }
    }
#pragma unroll
    for (int b = 0; b < B; b++) {
      ss[b] = warp_sum(ss[b]);
      if (lane == 0) red[threadIdx.x >> 5][b] = ss[b];
    }
    __syncthreads();
    float r[B];
#pragma unroll
    for (int b = 0; b < B; b++) {
      float t = 0.f;
#pragma unroll
      for (int w = 0; w < GEMV_THREADS / 32; w++) t += red[w][b];
      r[b] = rsqrtf(t / (float)K + eps);
    }
    for (int k = threadIdx.x * VEC; k < K; k += GEMV_THREADS * VEC) {
      float wf[VEC];
      unpack(*reinterpret_cast<const uint4*>(nw + k), wf);
#pragma unroll
      for (int b = 0; b < B; b++) {
        float f[VEC];
        unpack(*reinterpret_cast<const uint4*>(x + (size_t)b * K + k), f);
#pragma unroll
        for (int e = 0; e < VEC; e++) f[e] = wf[e] * rnd(f[e] * r[b]);
        *reinterpret_cast<uint4*>(xs + (size_t)b * K + k) = pack(f);
      }
    }
    __syncthreads();
  }
  const T* xin = (XS ? xs : x) + (size_t)ks * KS;
  for (int it = 0; it < iters; it++) {
    const bool active = live[0];
    // Pairs only grow with `it`: an idle warp stays idle (and without the split's barriers it
    // can leave).
    if (S == 1 && !active) return;
    int nrow[R];
    bool nlive[R];
    const T* nwr[R];
    rows_of(it + 1, nrow, nlive, nwr);
    const bool carry = it + 1 < iters;
    float acc[R][B];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int b = 0; b < B; b++) acc[r][b] = 0.f;
    for (int k0 = lane * VEC; k0 < (active ? KS : 0); k0 += STEP) {
      uint4 cur[R][U];
#pragma unroll
      for (int u = 0; u < U; u++)
#pragma unroll
        for (int r = 0; r < R; r++) cur[r][u] = wv[r][u];
      if (k0 + STEP < KS) {
#pragma unroll
        for (int u = 0; u < U; u++) {
          const int k = k0 + STEP + u * 32 * VEC;
#pragma unroll
          for (int r = 0; r < R; r++) wv[r][u] = (live[r] && k < KS) ? ld_stream(wr[r] + k) : make_uint4(0u, 0u, 0u, 0u);
        }
      } else if (carry) {
        // The next pair's first stage, as the prologue requested the first pair's.
#pragma unroll
        for (int u = 0; u < U; u++) {
          const int k = lane * VEC + u * 32 * VEC;
#pragma unroll
          for (int r = 0; r < R; r++) wv[r][u] = (nlive[r] && k < KS) ? ld_stream(nwr[r] + k) : make_uint4(0u, 0u, 0u, 0u);
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int k = k0 + u * 32 * VEC;
        if (k < KS) {
          float wf[R][VEC];
#pragma unroll
          for (int r = 0; r < R; r++) unpack(cur[r][u], wf[r]);
#pragma unroll
          for (int b = 0; b < B; b++) {
            float xf[VEC];
            unpack(*reinterpret_cast<const uint4*>(xin + (size_t)b * K + k), xf);
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
              for (int e = 0; e < VEC; e++) acc[r][b] += wf[r][e] * xf[e];
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int b = 0; b < B; b++) acc[r][b] = warp_sum(acc[r][b]);
    bool writes = active;
    if (S > 1) {
      __shared__ float part[WPB][R][B];
      if (lane == 0)
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
          for (int b = 0; b < B; b++) part[wib][r][b] = acc[r][b];
      __syncthreads();
      if (ks == 0 && active)
#pragma unroll
        for (int j = 1; j < S; j++)
#pragma unroll
          for (int r = 0; r < R; r++)
#pragma unroll
            for (int b = 0; b < B; b++) acc[r][b] += part[wib + j][r][b];
      writes = ks == 0 && active;
      if (carry) __syncthreads();  // `part` is rewritten by the next iteration
    }
    if (writes && lane < B) {
      // Each of the first B lanes writes one batch row (registers are indexed statically).
#pragma unroll
      for (int b = 0; b < B; b++) {
        if (b != lane) continue;
        if (MODE == 2) {
          const int n = row[0];
          const float g = rnd(acc[0][b] + (bias ? ld(bias[n]) : 0.f));
          const float u = rnd(acc[1][b] + (bias ? ld(bias[n + N]) : 0.f));
          const float a = rnd(g / (1.f + expf(-g)));
          y[(size_t)b * N + n] = st(a * u);
        } else if (MODE == 3) {
          // The projection's values as the stored q|k|v would hold them, then rope_kv's work.
          float o[R];
#pragma unroll
          for (int r = 0; r < R; r++) o[r] = rnd(acc[r][b] + (bias ? ld(bias[row[r]]) : 0.f));
          const int hh = row[0] / HD, e0 = row[0] - hh * HD, e1 = row[1] - hh * HD;
          if (hh < NQ + NKV && e0 < ROT / 2) {
            float cs, sn;
            rope_cs(ro.pos[b], ro.inv_freq[e0], ro.attn_scale, cs, sn);
            const float o0 = rope_out(o[0], -o[1], cs, sn);
            o[1] = rope_out(o[1], o[0], cs, sn);
            o[0] = o0;
          }
          const int es[R] = {e0, e1};
          const long long c = *ro.col;
#pragma unroll
          for (int r = 0; r < R; r++) {
            if (hh < NQ) {
              const float v = ro.keep ? rnd(o[r] * ld(ro.keep[b * NQ + hh])) : o[r];
              ro.q[((size_t)b * NQ + hh) * HD + es[r]] = st(v);
            } else if (hh < NQ + NKV) {
              ro.kc[(((size_t)b * NKV + (hh - NQ)) * ro.cap + c) * HD + es[r]] = st(o[r]);
            } else {
              ro.vc[(((size_t)b * NKV + (hh - NQ - NKV)) * ro.cap + c) * HD + es[r]] = st(o[r]);
            }
          }
        } else {
#pragma unroll
          for (int r = 0; r < R; r++) {
            if (!live[r]) continue;
            const int n = row[r];
            const size_t o = (size_t)b * N + n;
            const float v = acc[r][b] + (bias ? ld(bias[n]) : 0.f);
            y[o] = MODE == 0 ? st(v) : st(ld(res[o]) + rnd(v));
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
      row[r] = nrow[r];
      live[r] = nlive[r];
      wr[r] = nwr[r];
    }
  }
}

// Entry points gemv_b{B}_m{MODE}_x{XS}_s{S}.
#define GEMV_ENTRY(B, MODE, XS, S)                                                                                                  \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS, (B == 1 ? GEMV_B1_BLOCKS : 1)) gemv_b##B##_m##MODE##_x##XS##_s##S(                                       \
      const T* x, const T* __restrict__ W, const T* __restrict__ bias, T* y, const T* res, int N, int K, const T* nw, \
      float eps, RopeOut ro) {                                                                                                     \
    TL(1, (long long)K << 24 | N);                                                                                                 \
    gemv<B, MODE, XS, S>(x, W, bias, y, res, N, K, nw, eps, ro);                                                                     \
  }
#define GEMV_XS(B, MODE, S) GEMV_ENTRY(B, MODE, 0, S) GEMV_ENTRY(B, MODE, 1, S) GEMV_ENTRY(B, MODE, 2, S)
// GEMV_ROPE = 1: the part holds only the RoPE variants (MODE 3, built when RHX_ROPE_GEMV asks for
// them), else only modes 0-2; a build of every batch (WANT_GEMV = 9) holds all four.
#ifndef GEMV_ROPE
#define GEMV_ROPE 0
#endif
#if WANT_GEMV == 9
#define GEMV_MODES(B) GEMV_XS(B, 0, 1) GEMV_XS(B, 1, 1) GEMV_XS(B, 2, 1) GEMV_XS(B, 3, 1)
#define GEMV_SPLITS GEMV_XS(1, 0, 2) GEMV_XS(1, 1, 2) GEMV_XS(1, 3, 2)
#elif GEMV_ROPE
#define GEMV_MODES(B) GEMV_XS(B, 3, 1)
#define GEMV_SPLITS GEMV_XS(1, 3, 2)
#else
#define GEMV_MODES(B) GEMV_XS(B, 0, 1) GEMV_XS(B, 1, 1) GEMV_XS(B, 2, 1)
#define GEMV_SPLITS GEMV_XS(1, 0, 2) GEMV_XS(1, 1, 2)
#endif
#if WANT_GEMV == 1 || WANT_GEMV == 9
// K split in two at batch 1 (q|k|v, o and down: 1–1.5 waves of row pairs otherwise).
GEMV_SPLITS
GEMV_MODES(1)
#endif
#if WANT_GEMV == 9
GEMV_MODES(2)
GEMV_MODES(3)
GEMV_MODES(4)
GEMV_MODES(5)
GEMV_MODES(6)
GEMV_MODES(7)
GEMV_MODES(8)
#elif WANT_GEMV >= 2 && WANT_GEMV <= 8
GEMV_MODES(WANT_GEMV)
#endif

#if WANT_CORE

// RoPE on the q and k heads of the fused projection output, (Qwen3) per-head RMSNorm before
// it, the uniform-attention head mask on q, and the new key and value written into the cache
// at the device-side column. Grid (B, NQ + 2·NKV), one thread per head-dim element (the block
// is rounded up to whole warps).
extern "C" __global__ void rope_kv(const T* qkv, const long long* pos, const float* __restrict__ inv_freq,
                                   float attn_scale, const T* __restrict__ qn_w, const T* __restrict__ kn_w, float eps,
                                   const T* keep, T* __restrict__ qout, T* __restrict__ kc, T* __restrict__ vc,
                                   long long cap, const long long* col) {
  TL(2, 0);
  pdl_launch_next();
  pdl_wait();
  const int b = blockIdx.x, hh = blockIdx.y, e = threadIdx.x;
  const bool act = e < HD;
  __shared__ float sh[HD];
  const T* src = qkv + ((size_t)b * (NQ + 2 * NKV) + hh) * HD;
  const long long c = *col;
  if (hh >= NQ + NKV) {
    if (act) vc[(((size_t)b * NKV + (hh - NQ - NKV)) * cap + c) * HD + e] = src[e];
    return;
  }
  const bool isq = hh < NQ;
  float v = act ? ld(src[e]) : 0.f;
#if QKNORM
  {
    const float r = rsqrtf(block_sum(v * v) / (float)HD + eps);
    if (act) v = rnd(ld((isq ? qn_w : kn_w)[e]) * rnd(v * r));
  }
#endif
  if (act) sh[e] = v;
  __syncthreads();
  if (!act) return;
  float o = v;
  if (e < ROT) {
    const int half = ROT / 2;
    float cs, sn;
    rope_cs(pos[b], inv_freq[e % half], attn_scale, cs, sn);
    const float rot = e < half ? -sh[e + half] : sh[e - half];
    // (x·cos).addcmul(rotate_half(x), sin): one rounding for the multiply-add.
    o = rope_out(v, rot, cs, sn);
  }
  if (isq) {
    if (keep) o = rnd(o * ld(keep[b * NQ + hh]));
    qout[((size_t)b * NQ + hh) * HD + e] = st(o);
  } else {
    kc[(((size_t)b * NKV + (hh - NQ)) * cap + c) * HD + e] = st(o);
  }
}

#define NW 8
#ifndef ATTN_BLOCKS
#define ATTN_BLOCKS 2  // blocks per SM the attention kernel's registers aim at
#endif
#define AU 4
#define LPC (HD / EPL)
#define CPW (32 / LPC)
#define SLOTS (NW * CPW)
#define MAXCHUNKS 512

template <bool C, class A, class Bt> struct Cond { typedef A t; };
template <class A, class Bt> struct Cond<false, A, Bt> { typedef Bt t; };

// EPL consecutive elements of a head row, kept packed in registers until used: one 16-byte
// load when EPL fills it, else EPL scalar loads.
struct RowV {
  uint4 r;
  __device__ __forceinline__ void load(const T* p) { r = ld16(p); }
  __device__ __forceinline__ void zero() { r = make_uint4(0u, 0u, 0u, 0u); }
  __device__ __forceinline__ void get(float* f) const { unpack(r, f); }
};
struct RowS {
  float v[EPL];
  __device__ __forceinline__ void load(const T* p) {
#pragma unroll
    for (int e = 0; e < EPL; e++) v[e] = ld(p[e]);
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int e = 0; e < EPL; e++) v[e] = 0.f;
  }
  __device__ __forceinline__ void get(float* f) const {
#pragma unroll
    for (int e = 0; e < EPL; e++) f[e] = v[e];
  }
};
typedef Cond<EPL == VEC, RowV, RowS>::t Row;

// Chunk partial of one (sequence, query head, chunk): max, sum, argmax column (int bits), Σ p·v
// (HD), and for Eq. 2 the needle mass and the denominator's mass (both relative to the max).
#define PS (HD + 5)

// Eq. 2 (the reasoning score) of one sequence's query row, as `ReasoningRequest::weights` in
// src/engine/model.rs builds it for the libtorch step: column j weighs `needle[j]` (the needle
// membership of the first `np` padded prompt columns, f32) in the numerator, and 1 in the
// denominator when it is a token of its sequence past the first `sink` (j − pad ≥ sink, pad =
// col − pos: the row's left padding) and not among the last `local` keys up to the query
// (j ≤ col − local). Both masses accumulate p = exp(s − m) next to the softmax sum, rescaled
// with it, so their ratio needs no normalisation; invisible columns have p = 0.
// Columns are ints here (as the argmax's): a cache holds fewer than 2^31 columns.
struct Eq2 {
  const float* nd;  // this sequence's needle row
  int np;
  int lo, hi;  // denominator's columns: lo ≤ j ≤ hi
  __device__ __forceinline__ float num(int j) const { return j < np ? nd[j] : 0.f; }
  __device__ __forceinline__ float den(int j) const { return (j >= lo && j <= hi) ? 1.f : 0.f; }
};
// Sequence b's Eq. 2 columns at query column cl (read after the wait on the previous kernel),
// clamped to the int range (a sink or window larger than any cache).
__device__ __forceinline__ Eq2 eq2_of(const float* needle, int np, const long long* pos, long long sink, long long local, int b,
                                      long long cl) {
  const long long lo = cl - pos[b] + sink, hi = cl - local;
  return Eq2{needle + (size_t)b * np, np, (int)max(min(lo, 0x7fffffffll), -1ll), (int)max(min(hi, 0x7fffffffll), -1ll)};
}

// Merges a block's SL online-softmax slots per query head into the chunk's partial: `sm` holds
// the slots' maxima, sums, argmax columns (as int bits), Σ p·v (`[SL][G][HD]`) and, with RS,
// the Eq. 2 needle and denominator masses, in that order.
template <int SL, bool RS>
__device__ __forceinline__ void merge_slots(const float* sm, float* __restrict__ part, int b, int g, int c, int nchunks) {
  const float* sm_m = sm;
  const float* sm_l = sm + SL * G;
  const float* sm_i = sm + 2 * SL * G;
  const float* sm_a = sm + 3 * SL * G;
  const float* sm_n = sm + (3 + HD) * SL * G;
  const float* sm_d = sm + (4 + HD) * SL * G;
  for (int t = threadIdx.x; t < G * HD; t += blockDim.x) {
    const int h = t / HD, e = t % HD;
    float M = NEG_INF;
    for (int s2 = 0; s2 < SL; s2++) M = fmaxf(M, sm_m[s2 * G + h]);
    float L = 0.f, A = 0.f, Nm = 0.f, Dm = 0.f;
    int I = 0x7fffffff;
    for (int s2 = 0; s2 < SL; s2++) {
      const float ms = sm_m[s2 * G + h];
      if (ms == NEG_INF) continue;
      const float f = expf(ms - M);
      L += sm_l[s2 * G + h] * f;
      A += sm_a[(s2 * G + h) * HD + e] * f;
      if (RS && e == 0) {
        Nm += sm_n[s2 * G + h] * f;
        Dm += sm_d[s2 * G + h] * f;
      }
      if (ms == M) I = min(I, __float_as_int(sm_i[s2 * G + h]));
    }
    float* pp = part + (((size_t)b * NQ + g * G + h) * nchunks + c) * PS;
    pp[3 + e] = A;
    if (e == 0) {
      pp[0] = M;
      pp[1] = L;
      pp[2] = __int_as_float(I);
      if (RS) {
        pp[HD + 3] = Nm;
        pp[HD + 4] = Dm;
      }
    }
  }
}

// Decode attention for one query per sequence with the Eq. 1 capture (argmax key position of
// each head's row and its weight), flash-decoding style: block (chunk, kv head, sequence)
// walks its columns, AU per lane group at a time with their keys and values loaded up front,
// with an online softmax for the G query heads of its kv head, and leaves a partial (max, sum,
// Σ p·v, argmax) per query head and chunk; attn_combine merges the chunks. Scores are rounded as HF eager rounds them (q·kᵀ in the
// activation dtype, then × scale in that dtype); the softmax runs in f32. Visible columns:
// ≤ *col and key_ok. Ties of the argmax go to the lowest column. RS: Eq. 2's masses too (Eq2).
template <bool RS>
__device__ __forceinline__ void attn_decode_body(
    const T* q, const T* kc, const T* vc, long long cap, const long long* col,
    const unsigned char* key_ok, int chunk, int nchunks, float scale, float* __restrict__ part,
    const float* needle, int np, const long long* pos, long long sink, long long local) {
  pdl_launch_next();
  pdl_wait();
  const int c = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, sub = lane / LPC, sl = lane % LPC;
  const long long cl = *col;
  const Eq2 eq2 = RS ? eq2_of(needle, np, pos, sink, local, b, cl) : Eq2{};
  const long long j0 = (long long)c * chunk;
  const long long j1 = min(j0 + (long long)chunk, cl + 1);
  // The G query heads in shared memory as f32, read per use: held in registers (G·EPL of the 128
  // a thread has at 2 blocks per SM) they made the loop spill (104 bytes; now 8).
  __shared__ float qs[G * HD];
  for (int t = tid; t < G * HD; t += NW * 32) qs[t] = ld(q[((size_t)b * NQ + g * G) * HD + t]);
  __syncthreads();
  float m[G], l[G], acc[G][EPL];
  float rn[RS ? G : 1], rd[RS ? G : 1];  // Eq. 2: needle and denominator masses
  int ix[G];
#pragma unroll
  for (int h = 0; h < G; h++) {
    m[h] = NEG_INF;
    l[h] = 0.f;
    if (RS) rn[h] = rd[h] = 0.f;
    ix[h] = 0x7fffffff;
#pragma unroll
    for (int e = 0; e < EPL; e++) acc[h][e] = 0.f;
  }
  const T* kb = kc + ((size_t)b * NKV + g) * cap * HD + sl * EPL;
  const T* vb = vc + ((size_t)b * NKV + g) * cap * HD + sl * EPL;
  const unsigned char* ok = key_ok + (size_t)b * cap;
  for (long long jb = j0 + warp * CPW * AU; jb < j1; jb += NW * CPW * AU) {
    Row kr[AU], vr[AU];
    bool valid[AU];
#pragma unroll
    for (int u = 0; u < AU; u++) {
      const long long j = jb + u * CPW + sub;
      const bool in = j < j1;
      if (in) {
        kr[u].load(kb + j * HD);
        vr[u].load(vb + j * HD);
      } else {
        kr[u].zero();
        vr[u].zero();
      }
      valid[u] = in && ok[j];
    }
    float s[AU][G];
#pragma unroll
    for (int h = 0; h < G; h++) {
      float qf[EPL];
#pragma unroll
      for (int e = 0; e < EPL; e++) qf[e] = qs[h * HD + sl * EPL + e];
#pragma unroll
      for (int u = 0; u < AU; u++) {
        float kf[EPL];
        kr[u].get(kf);
        float d = 0.f;
#pragma unroll
        for (int e = 0; e < EPL; e++) d += qf[e] * kf[e];
#pragma unroll
        for (int o = LPC / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
#if DT == 2
        s[u][h] = d * scale;
#else
        s[u][h] = rnd(rnd(d) * scale);
#endif
      }
    }
#pragma unroll
    for (int h = 0; h < G; h++) {
      float mx = m[h];
      int bi = ix[h];
#pragma unroll
      for (int u = 0; u < AU; u++) {
        if (valid[u] && s[u][h] > mx) {
          mx = s[u][h];
          bi = (int)(jb + u * CPW + sub);
        }
      }
      if (mx > m[h]) {
        const float f = expf(m[h] - mx);
        l[h] *= f;
        if (RS) {
          rn[h] *= f;
          rd[h] *= f;
        }
#pragma unroll
        for (int e = 0; e < EPL; e++) acc[h][e] *= f;
        m[h] = mx;
        ix[h] = bi;
      }
    }
#pragma unroll
    for (int u = 0; u < AU; u++) {
      if (!valid[u]) continue;
      float vf[EPL];
      vr[u].get(vf);
      float wn = 0.f, wd = 0.f;
      if (RS) {
        const int j = (int)(jb + u * CPW + sub);
        wn = eq2.num(j);
        wd = eq2.den(j);
      }
#pragma unroll
      for (int h = 0; h < G; h++) {
        const float p = expf(s[u][h] - m[h]);
        l[h] += p;
        if (RS) {
          rn[h] += p * wn;
          rd[h] += p * wd;
        }
#pragma unroll
        for (int e = 0; e < EPL; e++) acc[h][e] += p * vf[e];
      }
    }
  }
  // Merge of the block's lane groups.
  __shared__ float sm[SLOTS * G * (HD + (RS ? 5 : 3))];
  const int slot = warp * CPW + sub;
#pragma unroll
  for (int h = 0; h < G; h++) {
    if (sl == 0) {
      sm[slot * G + h] = m[h];
      sm[SLOTS * G + slot * G + h] = l[h];
      sm[2 * SLOTS * G + slot * G + h] = __int_as_float(ix[h]);
      if (RS) {
        sm[(3 + HD) * SLOTS * G + slot * G + h] = rn[h];
        sm[(4 + HD) * SLOTS * G + slot * G + h] = rd[h];
      }
    }
#pragma unroll
    for (int e = 0; e < EPL; e++) sm[3 * SLOTS * G + (slot * G + h) * HD + sl * EPL + e] = acc[h][e];
  }
  __syncthreads();
  merge_slots<SLOTS, RS>(sm, part, b, g, c, nchunks);
}

// Two register budgets: ATTN_BLOCKS blocks per SM (one wave of them when the cache is long),
// and one block per SM (no register spills) for grids that fit in one block per SM.
// Every variant takes Eq. 2's arguments (needle `[B, np]` f32, positions `[B]`, sink, local);
// only the `_rs` ones read them.
#define ATTN_ARGS                                                                                   \
  const T *q, const T *kc, const T *vc, long long cap, const long long *col, const unsigned char *key_ok, \
      int chunk, int nchunks, float scale, float *__restrict__ part, const float *needle, int np,           \
      const long long *pos, long long sink, long long local
#define ATTN_PASS q, kc, vc, cap, col, key_ok, chunk, nchunks, scale, part, needle, np, pos, sink, local
extern "C" __global__ void __launch_bounds__(NW * 32, ATTN_BLOCKS) attn_decode(ATTN_ARGS) {
  TL(3, nchunks);
  attn_decode_body<false>(ATTN_PASS);
}
extern "C" __global__ void __launch_bounds__(NW * 32, 1) attn_decode_1(ATTN_ARGS) {
  TL(4, nchunks);
  attn_decode_body<false>(ATTN_PASS);
}
extern "C" __global__ void __launch_bounds__(NW * 32, ATTN_BLOCKS) attn_decode_rs(ATTN_ARGS) {
  TL(3, nchunks);
  attn_decode_body<true>(ATTN_PASS);
}
extern "C" __global__ void __launch_bounds__(NW * 32, 1) attn_decode_1_rs(ATTN_ARGS) {
  TL(4, nchunks);
  attn_decode_body<true>(ATTN_PASS);
}

// Tensor-core decode attention (bf16 / f16, head dim 64 or 128, G ≤ 8 query heads per kv head): the
// same partials as attn_decode from a fraction of its instructions (the FMA loop above issues
// ~140 instructions per column and thread and is bound by issue, not by memory). Each warp
// takes 16 columns per iteration with mma.m16n8k16 (the G query heads are rows 0..G-1 of the
// A operand, rows G..15 zero): S = q·Kᵀ over two tiles of 8 keys, the online softmax on the
// scores (rounded as HF eager rounds them; maximum, sum and argmax in f32), then O += P·V with
// P rounded to the activation dtype (as HF eager's softmax output is before its matmul with V).
// Lane (g, t) = (lane / 4, lane % 4) loads the operands straight from the cache in fragment
// order: of keys g and 8 + g the 16-byte pieces 4i + t (i < HD / 32), so the dot product's order
// of dimensions is permuted alike for q and K; of keys 2t, 2t+1, 8+2t, 9+2t the VP = HD / 16
// dims from g·VP and from (g + 8)·VP, packed into pairs of keys (PRMT) for the A operand of
// Oᵀ += Vᵀ·Pᵀ: row r of m-tile mt is dim r·VP + mt.
#if DT != 2 && (HD == 64 || HD == 128) && G <= 8 && __CUDA_ARCH__ >= 800
#define ATTN_MMA 1
#define KP (HD / 32)  // 16-byte key pieces per lane and key
#define VP (HD / 16)  // value dims per lane, key and row half (= m-tiles of Oᵀ)
#define VW (VP / 2)   // the same as 32-bit words
#ifndef ATTN_PREFETCH
#define ATTN_PREFETCH 1
#endif
// VW words of a value piece (16-byte loads, or one 8-byte load at head dim 64).
__device__ __forceinline__ void ld_piece(const T* p, unsigned* w) {
#if VW >= 4
#pragma unroll
  for (int i = 0; i < VW / 4; i++) {
    const uint4 u = ld16(p + 8 * i);
    w[4 * i] = u.x;
    w[4 * i + 1] = u.y;
    w[4 * i + 2] = u.z;
    w[4 * i + 3] = u.w;
  }
#else
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  w[0] = u.x;
  w[1] = u.y;
#endif
}

// Key r (< 4) of lane group t within a 16-key iteration, in increasing order with r: the keys
// of its score fragments (tiles r / 2, columns 2t + r % 2) and of its value pieces.
__device__ __forceinline__ int key_of(int r, int t) { return 8 * (r >> 1) + 2 * t + (r & 1); }

template <bool RS>
__device__ __forceinline__ void attn_mma_body(
    const T* q, const T* kc, const T* vc, long long cap, const long long* col,
    const unsigned char* key_ok, int chunk, int nchunks, float scale, float* __restrict__ part,
    const float* needle, int np, const long long* pos, long long sink, long long local) {
  pdl_launch_next();
  const int c = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const long long j0 = (long long)c * chunk;
  const T* kb = kc + ((size_t)b * NKV + kvh) * cap * HD;
  const T* vb = vc + ((size_t)b * NKV + kvh) * cap * HD;
  uint4 kr[2][KP];
  unsigned vr[4][2][VW];
  // Keys jb + k with k past `last` load key jb + last instead (no branch, no zeroing) and are
  // masked: a weight of 0 on a finite value (the cache starts zeroed).
  auto load_kv = [&](long long jb, int last) {
#pragma unroll
    for (int tau = 0; tau < 2; tau++) {
      const T* kp = kb + (jb + min(8 * tau + g, last)) * HD + t * 8;
#pragma unroll
      for (int i = 0; i < KP; i++) kr[tau][i] = ld16(kp + i * 32);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
      const T* vp = vb + (jb + min(key_of(r, t), last)) * HD + g * VP;
      ld_piece(vp, vr[r][0]);
      ld_piece(vp + 8 * VP, vr[r][1]);
    }
  };
#if ATTN_PREFETCH
  // The first iteration's keys and values are requested before the wait on RoPE: columns
  // before the newest were written by earlier steps (complete: each step is its own graph
  // launch). The newest column, which RoPE writes, is read again after the wait.
  const long long jf = j0 + warp * 16;
  load_kv(jf, (int)(min(j0 + (long long)chunk, cap) - 1 - jf));
#endif
  pdl_wait();
  const long long cl = *col;
  const long long j1 = min(j0 + (long long)chunk, cl + 1);
  // Eq. 2's block-uniform parameters through shared memory (written before the barrier below):
  // with them in registers ptxas spilled 64 bytes in the RS variant, with this 24 (sm_90,
  // Llama-3.1-8B's shape; the plain variant spills none).
  __shared__ Eq2 eq2s;
  if (RS && threadIdx.x == 0) eq2s = eq2_of(needle, np, pos, sink, local, b, cl);
  const Eq2& eq2 = eq2s;
  const bool head = g < G;  // lanes of rows ≥ G compute a zero row and write nothing
  // The query rows in shared memory (rows ≥ G zero), read per tile: in registers they made the
  // loop spill at the 128 registers of 2 blocks per SM.
  __shared__ uint4 qs[8 * HD / 8];
  if (threadIdx.x < 8 * HD / 8) {
    const int r = threadIdx.x / (HD / 8);
    qs[threadIdx.x] = r < G ? ld16(q + ((size_t)b * NQ + kvh * G + r) * HD + (threadIdx.x % (HD / 8)) * 8) : make_uint4(0u, 0u, 0u, 0u);
  }
  __syncthreads();
  // Stats of head g (equal in its four lanes but for l, a partial sum); Σ p·v of heads 2t and
  // 2t+1 at dims g·VP + mt and (g + 8)·VP + mt.
  float m = NEG_INF, l = 0.f, acc[VP][4];
  float rn = 0.f, rd = 0.f;  // Eq. 2 (RS): needle and denominator masses of head g, partial as l
  int ix = 0x7fffffff;
#pragma unroll
  for (int mt = 0; mt < VP; mt++) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.f;
  const unsigned char* ok = key_ok + (size_t)b * cap;
  bool first = true;  // (read only with ATTN_PREFETCH)
  for (long long jb = j0 + warp * 16; jb < j1; jb += NW * 16) {
    const int last = (int)(j1 - 1 - jb);
#if ATTN_PREFETCH
    if (first) {
      // Reload the newest column where this lane holds it.
#pragma unroll
      for (int tau = 0; tau < 2; tau++)
        if (jb + 8 * tau + g == cl)
#pragma unroll
          for (int i = 0; i < KP; i++) kr[tau][i] = ld16(kb + cl * HD + t * 8 + i * 32);
      // key_of(r, t) summed into jb term by term: `jb + key_of(r, t)` made ptxas spill 12 bytes.
#pragma unroll
      for (int r = 0; r < 4; r++)
        if (jb + 8 * (r >> 1) + 2 * t + (r & 1) == cl) {
          ld_piece(vb + cl * HD + g * VP, vr[r][0]);
          ld_piece(vb + cl * HD + (g + 8) * VP, vr[r][1]);
        }
    } else
#endif
      load_kv(jb, last);
    first = false;
    bool valid[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
      const int k = key_of(r, t);
      valid[r] = k <= last && ok[jb + min(k, last)];
    }
    float sc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < KP; i++) {
      const uint4 qr = qs[g * (HD / 8) + 4 * i + t];
#pragma unroll
      for (int tau = 0; tau < 2; tau++) {
        mma_rows8(sc[2 * tau], sc[2 * tau + 1], qr.x, qr.y, kr[tau][i].x, kr[tau][i].y);
        mma_rows8(sc[2 * tau], sc[2 * tau + 1], qr.z, qr.w, kr[tau][i].z, kr[tau][i].w);
      }
    }
    float mx = NEG_INF;
    int bi = 0x7fffffff;
#pragma unroll
    for (int r = 0; r < 4; r++) {
      sc[r] = valid[r] ? rnd(rnd(sc[r]) * scale) : NEG_INF;
      if (sc[r] > mx) {
        mx = sc[r];
        bi = (int)(jb + key_of(r, t));
      }
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      const float om = __shfl_xor_sync(0xffffffffu, mx, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (om > mx || (om == mx && oi < bi)) {
        mx = om;
        bi = oi;
      }
    }
    // Rescale factors of head g here; the accumulators of heads 2t and 2t+1 take theirs from
    // lanes 8t and 8t + 4.
    float f = 1.f;
    if (mx > m) {
      f = expf(m - mx);
      l *= f;
      if (RS) {
        rn *= f;
        rd *= f;
      }
      m = mx;
      ix = bi;
    }
    const float f0 = __shfl_sync(0xffffffffu, f, 8 * t), f1 = __shfl_sync(0xffffffffu, f, 8 * t + 4);
#pragma unroll
    for (int mt = 0; mt < VP; mt++) {
      acc[mt][0] *= f0;
      acc[mt][1] *= f1;
      acc[mt][2] *= f0;
      acc[mt][3] *= f1;
    }
    float p[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
      p[r] = valid[r] ? expf(sc[r] - m) : 0.f;
      l += p[r];
      if (RS) {
        const int j = (int)jb + 8 * (r >> 1) + 2 * t + (r & 1);
        rn += p[r] * (j < eq2.np ? eq2.nd[j] : 0.f);
        rd += (j >= eq2.lo && j <= eq2.hi) ? p[r] : 0.f;
      }
    }
    // Pᵀ as the B operand of Oᵀ += Vᵀ·Pᵀ: b0 = P[g][2t, 2t+1], b1 = P[g][2t+8, 2t+9] — this
    // lane's own weights. Vᵀ's rows g and g + 8 of m-tile mt are element mt of the lane's two
    // value pieces; its columns are the lane's keys, packed in pairs.
    const unsigned pb0 = pack_pair(p[0], p[1]), pb1 = pack_pair(p[2], p[3]);
#pragma unroll
    for (int mt = 0; mt < VP; mt++) {
      const int w = mt >> 1;
      const unsigned sel = (mt & 1) ? 0x7632u : 0x5410u;
      mma_full(acc[mt], __byte_perm(vr[0][0][w], vr[1][0][w], sel), __byte_perm(vr[0][1][w], vr[1][1][w], sel),
               __byte_perm(vr[2][0][w], vr[3][0][w], sel), __byte_perm(vr[2][1][w], vr[3][1][w], sel), pb0, pb1);
    }
  }
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (RS) {
    rn += __shfl_xor_sync(0xffffffffu, rn, 1);
    rn += __shfl_xor_sync(0xffffffffu, rn, 2);
    rd += __shfl_xor_sync(0xffffffffu, rd, 1);
    rd += __shfl_xor_sync(0xffffffffu, rd, 2);
  }
  // One slot per warp and head.
  __shared__ float sm[NW * G * (HD + (RS ? 5 : 3))];
  if (head && t == 0) {
    sm[warp * G + g] = m;
    sm[NW * G + warp * G + g] = l;
    sm[2 * NW * G + warp * G + g] = __int_as_float(ix);
    if (RS) {
      sm[(3 + HD) * NW * G + warp * G + g] = rn;
      sm[(4 + HD) * NW * G + warp * G + g] = rd;
    }
  }
#pragma unroll
  for (int hh = 0; hh < 2; hh++) {
    const int h = 2 * t + hh;
    if (h < G) {
      float* a = sm + 3 * NW * G + (warp * G + h) * HD;
#pragma unroll
      for (int mt = 0; mt < VP; mt++) {
        a[g * VP + mt] = acc[mt][hh];
        a[(g + 8) * VP + mt] = acc[mt][2 + hh];
      }
    }
  }
  __syncthreads();
  merge_slots<NW, RS>(sm, part, b, kvh, c, nchunks);
}
extern "C" __global__ void __launch_bounds__(NW * 32, ATTN_BLOCKS) attn_decode_mma(ATTN_ARGS) {
  TL(6, nchunks);
  attn_mma_body<false>(ATTN_PASS);
}
extern "C" __global__ void __launch_bounds__(NW * 32, ATTN_BLOCKS) attn_decode_mma_rs(ATTN_ARGS) {
  TL(6, nchunks);
  attn_mma_body<true>(ATTN_PASS);
}
#endif

// Merges the chunk partials of attn_decode for one (query head, sequence) per block of CB
// threads, one per head-dim element: the heads' outputs (masked for ZeroOutput), the argmax
// column (lowest among equal maxima) and its weight 1 / Σ exp(s − max). Every partial of the
// first CT chunks is requested up front, so the merge waits on L2 once (chunks beyond CT, at
// long contexts, are read in further rounds). With `rs` (partials of an `_rs` attention kernel)
// also Eq. 2: needle mass ÷ denominator mass, 0 where the denominator is ≤ 0 (as
// `ReasoningRequest::scores`).
#define CB (HD <= 128 ? 128 : 256)
#define CT 64
extern "C" __global__ void __launch_bounds__(CB) attn_combine(const float* part, int nchunks, const T* keep, int zero_out,
                                                        T* __restrict__ out, long long* __restrict__ am, float* __restrict__ aw,
                                                        float* __restrict__ rs) {
  constexpr int MC = MAXCHUNKS / CB;
  TL(5, nchunks);
  pdl_launch_next();
  pdl_wait();
  const int hq = blockIdx.x, b = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  __shared__ float cf[MAXCHUNKS];
  __shared__ float red_m[CB / 32], red_l[CB / 32], red_n[CB / 32], red_d[CB / 32];
  __shared__ int red_i[CB / 32];
  const float* pb = part + ((size_t)b * NQ + hq) * nchunks * PS;
  const bool el = tid < HD;
  float a[CT];
#pragma unroll
  for (int k = 0; k < CT; k++) a[k] = (el && k < nchunks) ? pb[(size_t)k * PS + 3 + tid] : 0.f;
  float mk[MC], lk[MC], nk[MC], dk[MC];
  int ik[MC];
#pragma unroll
  for (int r = 0; r < MC; r++) {
    const int k = tid + r * CB;
    const bool in = k < nchunks;
    mk[r] = in ? pb[(size_t)k * PS] : NEG_INF;
    lk[r] = in ? pb[(size_t)k * PS + 1] : 0.f;
    ik[r] = in ? __float_as_int(pb[(size_t)k * PS + 2]) : 0x7fffffff;
    nk[r] = (rs && in) ? pb[(size_t)k * PS + HD + 3] : 0.f;
    dk[r] = (rs && in) ? pb[(size_t)k * PS + HD + 4] : 0.f;
  }
  float M = NEG_INF;
#pragma unroll
  for (int r = 0; r < MC; r++) M = fmaxf(M, mk[r]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  if (lane == 0) red_m[warp] = M;
  __syncthreads();
  M = red_m[0];
#pragma unroll
  for (int w = 1; w < CB / 32; w++) M = fmaxf(M, red_m[w]);
  float L = 0.f, Nm = 0.f, Dm = 0.f;
  int I = 0x7fffffff;
#pragma unroll
  for (int r = 0; r < MC; r++) {
    const int k = tid + r * CB;
    if (k < nchunks) {
      const float f = mk[r] == NEG_INF ? 0.f : expf(mk[r] - M);
      L += lk[r] * f;
      Nm += nk[r] * f;
      Dm += dk[r] * f;
      if (mk[r] == M) I = min(I, ik[r]);
      cf[k] = f;
    }
  }
  L = warp_sum(L);
  if (rs) {
    Nm = warp_sum(Nm);
    Dm = warp_sum(Dm);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) I = min(I, __shfl_xor_sync(0xffffffffu, I, o));
  if (lane == 0) {
    red_l[warp] = L;
    red_i[warp] = I;
    red_n[warp] = Nm;
    red_d[warp] = Dm;
  }
  __syncthreads();
  L = 0.f;
  I = 0x7fffffff;
  Nm = Dm = 0.f;
#pragma unroll
  for (int w = 0; w < CB / 32; w++) {
    L += red_l[w];
    I = min(I, red_i[w]);
    Nm += red_n[w];
    Dm += red_d[w];
  }
  if (el) {
    float A = 0.f;
#pragma unroll
    for (int k = 0; k < CT; k++)
      if (k < nchunks) A += cf[k] * a[k];
    const float* pe = pb + 3 + tid;
    int k = CT;
    for (; k + 8 <= nchunks; k += 8) {
      float v[8];
#pragma unroll
      for (int i = 0; i < 8; i++) v[i] = pe[(size_t)(k + i) * PS];
#pragma unroll
      for (int i = 0; i < 8; i++) A += cf[k + i] * v[i];
    }
    for (; k < nchunks; k++) A += cf[k] * pe[(size_t)k * PS];
    T ov = st(A / L);
    if (keep && zero_out) ov = st(ld(ov) * ld(keep[b * NQ + hq]));
    out[((size_t)b * NQ + hq) * HD + tid] = ov;
  }
  if (tid == 0) {
    am[b * NQ + hq] = I;
    aw[b * NQ + hq] = 1.f / L;
    if (rs) rs[b * NQ + hq] = Dm <= 0.f ? 0.f : Nm / Dm;
  }
}
#endif  // WANT_CORE

#if WANT_WIDE && DT != 2 && __CUDA_ARCH__ >= 900
// The projections and the LM head of wide steps (9 to 128 rows, bf16 / f16, sm_90): y = x·Wᵀ for
// x: [M, K] on tensor cores, each weight read once per step — the GEMVs' design carried to more
// rows. The weights are the A operand of mma.m16n8k16: each warp takes 16 rows (a block of 8
// warps 128 rows), loaded straight from global memory into registers, lane (g, t) = (lane / 4,
// lane % 4) holding rows g and g + 8 at k = 32c + 8t .. 32c + 8t + 7 (the 16 k of each mma are
// the same permutation of 16 consecutive k for W and x, as in attn_decode_mma), WGEMM_U pieces
// of 32 k per stage, two stages in flight, the first requested before the PDL wait. The
// activations (the B operand, 8 rows per mma) of a stage are copied into shared memory once per
// block (cp.async, one stage ahead, so no warp waits on L2 for them; read from global memory
// through L1 instead — the first version — every warp stalled on them, 2.5× slower than
// cuBLAS at 64 rows). K is split over the S blocks of a thread-block
// cluster (grid.x = S = cluster size; one cluster per 128 rows), so that a 4096-row projection
// still fills the GPU; the S partial tiles are summed through distributed shared memory in
// rank order (deterministic, no workspace), each block finishing 1/S of the tile with MODE's
// epilogue, with the GEMVs' roundings: 0 y = round(W·x + bias); 2 W = [gate; up] (warps 0-3 take
// 64 gate rows, warps 4-7 the same 64 up rows), y = round(silu(round(gate))) · round(up).
#ifndef WGEMM_U
#define WGEMM_U 4
#endif
#define WG_RS 132  // floats per batch row of a block's partial tile (128 rows + 4: no bank conflicts)
#define WG_XS (32 * WGEMM_U + 32)  // elements per batch row of a stage of activations in shared memory

__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// Address of `p` (in this block's shared memory) in the shared memory of cluster block `rank`.
__device__ __forceinline__ unsigned cluster_addr(const void* p, unsigned rank) {
  unsigned a, r;
  asm("{\n\t.reg .u64 g;\n\tcvta.to.shared.u64 g, %1;\n\tcvt.u32.u64 %0, g;\n\t}" : "=r"(a) : "l"(p));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
  return r;
}
__device__ __forceinline__ float ld_cluster(unsigned addr) {
  float v;
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(addr) : "memory");
  return v;
}

// 16 bytes global → shared without passing through registers (or L1: .cg), in commit groups.
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Wait until at most N of this thread's commit groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

template <int MB, int MODE>
__device__ __forceinline__ void wgemm(const T* x, const T* __restrict__ W, const T* __restrict__ bias, T* __restrict__ y, int M, int N,
                                      int K) {
  constexpr int U = WGEMM_U;
  constexpr int NJ = MB / 8;                 // batch groups of 8 rows (the mma's N)
  constexpr int TO = MODE == 2 ? 64 : 128;   // outputs per tile
  extern __shared__ float red[];             // [MB][WG_RS]: this block's partial tile
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int S = gridDim.x;
  const int s = blockIdx.x;  // the cluster rank: cluster (S, 1, 1), grid.x = S
  const int tile = blockIdx.y;
  // This warp's 16 weight rows give outputs o0 + g and o0 + g + 8.
  const int o0 = tile * TO + 16 * (MODE == 2 ? (warp & 3) : warp);
  const int row0 = (MODE == 2 && warp >= 4 ? N : 0) + o0;
  const bool live0 = o0 + g < N, live1 = o0 + g + 8 < N;
  const T* w0 = W + (size_t)(live0 ? row0 + g : 0) * K + 8 * t;
  const T* w1 = W + (size_t)(live1 ? row0 + g + 8 : 0) * K + 8 * t;
  const int C = K / 32;
  const int cb = (int)((long long)s * C / S), ce = (int)((long long)(s + 1) * C / S);
  // The block's activations of a stage (U pieces of 32 k for each batch row) in shared memory,
  // two stages: copied with cp.async one stage ahead, as the weights are loaded one stage ahead
  // into registers. Rows of WG_XS elements (64 bytes of padding: the 8 lanes of a 16-byte load
  // phase, rows g and g + 1, fall on disjoint banks).
  T* xs = reinterpret_cast<T*>(red);
  uint4 wv[2][U];
  auto load_w = [&](int c0) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int c = c0 + u;
      wv[0][u] = (live0 && c < ce) ? ld_stream(w0 + (size_t)c * 32) : make_uint4(0u, 0u, 0u, 0u);
      wv[1][u] = (live1 && c < ce) ? ld_stream(w1 + (size_t)c * 32) : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  // Rows at or past M and pieces past ce are not copied: their products land in batch rows or
  // sums nobody reads (the mma's columns are independent), or are skipped below.
  auto load_x = [&](int c0, int buf) {
    T* dst = xs + (size_t)buf * MB * WG_XS;
    for (int q = threadIdx.x; q < M * 4 * U; q += blockDim.x) {
      const int m = q / (4 * U), ch = q - m * 4 * U, c = c0 + ch / 4;
      if (c < ce) cp_async16(dst + m * WG_XS + ch * 8, x + (size_t)m * K + (size_t)c0 * 32 + ch * 8);
    }
    cp_async_commit();
  };
  load_w(cb);
  pdl_launch_next();
  pdl_wait();
  load_x(cb, 0);
  float acc[NJ][4];
#pragma unroll
  for (int j = 0; j < NJ; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  for (int c0 = cb, buf = 0; c0 < ce; c0 += U, buf ^= 1) {
    uint4 cur[2][U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      cur[0][u] = wv[0][u];
      cur[1][u] = wv[1][u];
    }
    const bool more = c0 + U < ce;
    if (more) {
      load_w(c0 + U);
      load_x(c0 + U, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // this stage's activations are in shared memory
    const T* xb = xs + (size_t)buf * MB * WG_XS + g * WG_XS + 8 * t;
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (c0 + u >= ce) break;  // uniform over the warp, as are the batch groups below (mma.sync)
#pragma unroll
      for (int j = 0; j < NJ; j++) {
        if (8 * j >= M) break;
        const uint4 xv = *reinterpret_cast<const uint4*>(xb + 8 * j * WG_XS + 32 * u);
        mma_full(acc[j], cur[0][u].x, cur[1][u].x, cur[0][u].y, cur[1][u].y, xv.x, xv.y);
        mma_full(acc[j], cur[0][u].z, cur[1][u].z, cur[0][u].w, cur[1][u].w, xv.z, xv.w);
      }
    }
    __syncthreads();  // every warp is done with this buffer before the next stage refills it
  }
  // acc[j] = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]: tile row 16·warp + g (+ 8), batch
  // row 8j + 2t (+ 1).
  const int r0 = 16 * warp + g;
#pragma unroll
  for (int j = 0; j < NJ; j++) {
    if (8 * j >= M) break;
    const int m0 = 8 * j + 2 * t;
    red[m0 * WG_RS + r0] = acc[j][0];
    red[(m0 + 1) * WG_RS + r0] = acc[j][1];
    red[m0 * WG_RS + r0 + 8] = acc[j][2];
    red[(m0 + 1) * WG_RS + r0 + 8] = acc[j][3];
  }
  cluster_sync();
  unsigned peer[8];
#pragma unroll
  for (int q = 0; q < 8; q++) peer[q] = q < S ? cluster_addr(red, q) : 0u;
  // This block's share of the tile's M · TO outputs (batch row major: consecutive threads write
  // consecutive columns of y).
  const int E = M * TO, per = (E + S - 1) / S;
  const int e_end = min(E, (s + 1) * per);
  for (int e = s * per + threadIdx.x; e < e_end; e += blockDim.x) {
    const int m = e / TO, c = e - m * TO, n = tile * TO + c;
    if (n >= N) continue;
    // Every peer's partial requested first, then summed in rank order.
    float pa[8], pb[8];
#pragma unroll
    for (int q = 0; q < 8; q++) {
      if (q >= S) break;
      pa[q] = ld_cluster(peer[q] + 4u * (unsigned)(m * WG_RS + c));
      if (MODE == 2) pb[q] = ld_cluster(peer[q] + 4u * (unsigned)(m * WG_RS + c + 64));
    }
    float a = 0.f, b = 0.f;
#pragma unroll
    for (int q = 0; q < 8; q++) {
      if (q >= S) break;
      a += pa[q];
      if (MODE == 2) b += pb[q];
    }
    const size_t o = (size_t)m * N + n;
    if (MODE == 2) {
      const float gt = rnd(a + (bias ? ld(bias[n]) : 0.f));
      const float up = rnd(b + (bias ? ld(bias[n + N]) : 0.f));
      y[o] = st(rnd(gt / (1.f + expf(-gt))) * up);
    } else {
      y[o] = st(a + (bias ? ld(bias[n]) : 0.f));
    }
  }
  cluster_sync();  // the peers read this block's partials until here
}

// Entry points wgemm_r{MB}_m{MODE}: MB ≥ M rows (16, 32, 64 or 128), MODE 0 or 2.
#define WGEMM_ENTRY(MB, MODE)                                                                                                     \
  extern "C" __global__ void __launch_bounds__(256, MB <= 64 ? 2 : 1) wgemm_r##MB##_m##MODE(                                        \
      const T* x, const T* __restrict__ W, const T* __restrict__ bias, T* __restrict__ y, int M, int N, int K) {                     \
    TL(9, (long long)K << 24 | N);                                                                                                 \
    wgemm<MB, MODE>(x, W, bias, y, M, N, K);                                                                                       \
  }
WGEMM_ENTRY(16, 0)
WGEMM_ENTRY(16, 2)
WGEMM_ENTRY(32, 0)
WGEMM_ENTRY(32, 2)
WGEMM_ENTRY(64, 0)
WGEMM_ENTRY(64, 2)
WGEMM_ENTRY(128, 0)
WGEMM_ENTRY(128, 2)
#endif  // WANT_WIDE
