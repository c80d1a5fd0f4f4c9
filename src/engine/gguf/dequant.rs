//! Dequantisation kernels: each takes a whole number of blocks and fills exactly the matching
//! number of outputs (the caller guarantees the lengths). They mirror ggml-quants.c's
//! dequantize_row_* so that rounding is identical.

use super::GgmlType;

pub(super) type Kernel = fn(&[u8], &mut [f32]);

pub(super) fn kernel_for(t: GgmlType) -> Option<Kernel> {
    Some(match t {
        GgmlType::F32 => deq_f32,
        GgmlType::F16 => deq_f16,
        GgmlType::BF16 => deq_bf16,
        GgmlType::Q4_0 => deq_q4_0,
        GgmlType::Q4_1 => deq_q4_1,
        GgmlType::Q5_0 => deq_q5_0,
        GgmlType::Q5_1 => deq_q5_1,
        GgmlType::Q8_0 => deq_q8_0,
        GgmlType::Q2_K => deq_q2_k,
        GgmlType::Q3_K => deq_q3_k,
        GgmlType::Q4_K => deq_q4_k,
        GgmlType::Q5_K => deq_q5_k,
        GgmlType::Q6_K => deq_q6_k,
        GgmlType::Q8_K => deq_q8_k,
        GgmlType::Other(_) => return None,
    })
}

#[inline(always)]
fn f16_le(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Pairs source blocks of `TS` bytes with output blocks of `BS` floats.
#[inline(always)]
fn blocks<'s, 'd, const TS: usize, const BS: usize>(
    src: &'s [u8],
    dst: &'d mut [f32],
) -> impl Iterator<Item = (&'s [u8; TS], &'d mut [f32; BS])> {
    src.as_chunks::<TS>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<BS>().0.iter_mut())
}

fn deq_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<4, 1>(src, dst) {
        y[0] = f32::from_le_bytes(*b);
    }
}

fn deq_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<2, 1>(src, dst) {
        y[0] = half::f16::from_le_bytes(*b).to_f32();
    }
}

fn deq_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<2, 1>(src, dst) {
        y[0] = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
    }
}

/// block_q4_0: f16 d; u8 qs[16] (low nibbles = elements 0..16, high nibbles = 16..32).
fn deq_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<18, 32>(src, dst) {
        let d = f16_le(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as i32 - 8;
            let x1 = (qs[j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// block_q4_1: f16 d, f16 m; u8 qs[16].
fn deq_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<20, 32>(src, dst) {
        let d = f16_le(b, 0);
        let m = f16_le(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as f32;
            let x1 = (qs[j] >> 4) as f32;
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }
}

/// block_q5_0: f16 d; u32 qh (5th bits); u8 qs[16].
fn deq_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<22, 32>(src, dst) {
        let d = f16_le(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let xh0 = (((qh >> j) << 4) & 0x10) as i32;
            let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = ((qs[j] & 0x0F) as i32 | xh0) - 16;
            let x1 = ((qs[j] >> 4) as i32 | xh1) - 16;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// block_q5_1: f16 d, f16 m; u32 qh; u8 qs[16].
fn deq_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<24, 32>(src, dst) {
        let d = f16_le(b, 0);
        let m = f16_le(b, 2);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        for j in 0..16 {
            let xh0 = (((qh >> j) << 4) & 0x10) as i32;
            let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = (qs[j] & 0x0F) as i32 | xh0;
            let x1 = (qs[j] >> 4) as i32 | xh1;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

/// block_q8_0: f16 d; i8 qs[32].
fn deq_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<34, 32>(src, dst) {
        let d = f16_le(b, 0);
        for j in 0..32 {
            y[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}

/// K-quants' packed 6-bit scale/min pairs (ggml's get_scale_min_k4).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// block_q2_K: u8 scales[16] (low nibble scale, high nibble min); u8 qs[64]; f16 d; f16 dmin.
fn deq_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<84, 256>(src, dst) {
        let scales = &b[0..16];
        let d = f16_le(b, 80);
        let min = f16_le(b, 82);
        let mut out = 0;
        let mut is = 0;
        for n in 0..2 {
            let q = &b[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0u32, 2, 4, 6] {
                for off in [0usize, 16] {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0F) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        y[out] = dl * ((q[l + off] >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// block_q3_K: u8 hmask[32]; u8 qs[64]; u8 scales[12] (16 packed 6-bit scales); f16 d.
fn deq_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<110, 256>(src, dst) {
        let hm = &b[0..32];
        let sb = &b[96..108];
        let d_all = f16_le(b, 108);
        // Scale i: low 4 bits from byte i % 8 (nibble i / 8), high 2 bits from byte 8 + i % 4
        // (bit pair i / 4). Same result as ggml's kmask1/kmask2 shuffle.
        let mut scales = [0i32; 16];
        for (i, s) in scales.iter_mut().enumerate() {
            let lo = (sb[i % 8] >> (4 * (i / 8))) & 0x0F;
            let hi = (sb[8 + i % 4] >> (2 * (i / 4))) & 0x03;
            *s = (lo | (hi << 4)) as i32 - 32;
        }
        let mut out = 0;
        let mut is = 0;
        let mut m = 1u8;
        for n in 0..2 {
            let q = &b[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0u32, 2, 4, 6] {
                for off in [0usize, 16] {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let v = ((q[l + off] >> shift) & 3) as i32
                            - if hm[l + off] & m != 0 { 0 } else { 4 };
                        y[out] = dl * v as f32;
                        out += 1;
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

/// block_q4_K: f16 d; f16 dmin; u8 scales[12]; u8 qs[128].
fn deq_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<144, 256>(src, dst) {
        let d = f16_le(b, 0);
        let min = f16_le(b, 2);
        let scales = &b[4..16];
        for j in 0..4 {
            let q = &b[16 + 32 * j..16 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// block_q5_K: f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128].
fn deq_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<176, 256>(src, dst) {
        let d = f16_le(b, 0);
        let min = f16_le(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        for j in 0..4 {
            let ql = &b[48 + 32 * j..48 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let u1 = 1u8 << (2 * j);
            let u2 = 2u8 << (2 * j);
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// block_q6_K: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d.
fn deq_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<210, 256>(src, dst) {
        let d = f16_le(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                // ggml evaluates `d * sc * q` left to right.
                y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

/// block_q8_K: f32 d; i8 qs[256]; i16 bsums[16] (unused here).
fn deq_q8_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<292, 256>(src, dst) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..256 {
            y[j] = d * (b[4 + j] as i8) as f32;
        }
    }
}
