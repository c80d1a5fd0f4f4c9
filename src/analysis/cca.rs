//! Fig. 4: canonical correlation between the final hidden state at step n and the retrieval
//! scores of every head at step n + k (paper A.4, reference-algorithms §6).
//!
//! The computation is the numerically stable exact one: min–max scale the scores, centre both
//! blocks, PCA each by a thin SVD to the stated explained variance (95 % for hidden states, 99 %
//! for scores, sklearn's `n_components=0.95` rule), take orthonormal bases of the retained
//! scores, and read the canonical correlations off the singular values of `Q_xᵀ Q_y`. All in f64
//! on libtorch's LAPACK. sklearn's iterative `CCA` (NIPALS) is what the paper most likely ran; in
//! exact arithmetic it gives the same correlations but converges badly for close ones, so it is
//! an option (`Solver::NipalsSklearn`, a step-for-step port) and not the default
//! (`docs/FIDELITY.md`, `cca.solver`).
use tch::{Device, Kind, Tensor};

/// Which correlations "top-k" averages (reference §6 (d)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopK {
    /// The k largest correlations (default; in-sample the two coincide).
    LargestK,
    /// The first k components in the order of the fit (matters for held-out correlations).
    FirstK,
}

/// Where the PCA bases are fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcaFit {
    /// On the rows of each offset (default: what fitting a pipeline per offset does).
    PerOffset,
    /// Once, on every step's hidden state and scores, then used for all offsets.
    Once,
}

/// How the canonical correlations are computed (reference §6, `cca.solver`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Solver {
    /// Singular values of `Q_xᵀ Q_y`: exact, descending (default).
    SvdExact,
    /// sklearn's `CCA` (PLS mode B, canonical deflation, NIPALS power iterations on
    /// standardised blocks), correlations of the transformed columns in component order: what
    /// the paper most likely ran, later components inaccurate when correlations are close.
    NipalsSklearn { max_iter: usize, tol: f64 },
}

#[derive(Debug, Clone)]
pub struct CcaOptions {
    /// Explained variance kept by the hidden-state PCA (paper: 0.95).
    pub x_variance: f64,
    /// Explained variance kept by the score PCA (paper: 0.99).
    pub y_variance: f64,
    /// Canonical components kept (paper: 50); fewer when the PCA keeps fewer.
    pub components: usize,
    pub topk: TopK,
    pub pca_fit: PcaFit,
    pub solver: Solver,
}

impl Default for CcaOptions {
    fn default() -> Self {
        Self { x_variance: 0.95, y_variance: 0.99, components: 50, topk: TopK::LargestK, pca_fit: PcaFit::PerOffset, solver: Solver::SvdExact }
    }
}

/// Thin SVD `a = U diag(S) Vh`. (`Tensor::svd`, because tch's `linalg_svd` always passes a
/// driver name, which libtorch accepts only for CUDA tensors.)
fn thin_svd(a: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (u, s, v) = a.svd(true, true);
    (u, s, v.transpose(0, 1))
}

/// A PCA fitted on some rows: the column means and the retained directions.
pub struct Pca {
    mean: Tensor,
    /// `[d, k]` principal directions.
    components: Tensor,
    /// Explained-variance ratio of every direction (all of them, for the report).
    pub ratio: Vec<f64>,
}

impl Pca {
    /// Fits on `x` (`[N, d]`, f64) and keeps the smallest number of components whose cumulative
    /// explained variance is strictly above `variance` (sklearn: `searchsorted(cum, v, "right") + 1`).
    pub fn fit(x: &Tensor, variance: f64) -> Pca {
        let mean = x.mean_dim(0, true, Kind::Double);
        let xc = x - &mean;
        let (_u, s, vh) = thin_svd(&xc);
        let s2: Vec<f64> = Vec::<f64>::try_from(&s.square()).unwrap_or_default();
        let total: f64 = s2.iter().sum();
        let ratio: Vec<f64> = if total > 0.0 { s2.iter().map(|v| v / total).collect() } else { vec![0.0; s2.len()] };
        let mut cum = 0.0;
        let below = ratio.iter().take_while(|r| {
            cum += **r;
            cum <= variance
        });
        // Never keep a direction with no variance (a rank-deficient block).
        let rank = ratio.iter().filter(|r| **r > 1e-12).count();
        let k = (below.count() + 1).min(rank).max(1).min(ratio.len().max(1));
        let components = vh.narrow(0, 0, k as i64).transpose(0, 1).contiguous();
        Pca { mean, components, ratio }
    }

    pub fn kept(&self) -> usize {
        self.components.size()[1] as usize
    }

    pub fn transform(&self, x: &Tensor) -> Tensor {
        (x - &self.mean).matmul(&self.components)
    }
}

/// sklearn's `MinMaxScaler`: per-column ranges fitted on some rows, applied to any rows;
/// constant columns map to 0.
pub struct MinMax {
    lo: Tensor,
    range: Tensor,
}

impl MinMax {
    pub fn fit(y: &Tensor) -> MinMax {
        let lo = y.amin(&[0i64][..], true);
        let range = y.amax(&[0i64][..], true) - &lo;
        MinMax { lo, range }
    }

    pub fn apply(&self, y: &Tensor) -> Tensor {
        let varies = self.range.gt(0.0);
        let safe = self.range.where_self(&varies, &self.range.ones_like());
        ((y - &self.lo) / safe).where_self(&varies.expand_as(y), &y.zeros_like())
    }
}

/// Min–max scales each column of `y` to [0, 1] with its own ranges.
pub fn min_max(y: &Tensor) -> Tensor {
    MinMax::fit(y).apply(y)
}

/// An orthonormal basis of the centred columns of `z`, with the map from `z` to it:
/// `q = (z − mean) · w`. Columns with negligible singular value are dropped.
struct Basis {
    mean: Tensor,
    w: Tensor,
    q: Tensor,
}

fn basis(z: &Tensor) -> Basis {
    let mean = z.mean_dim(0, true, Kind::Double);
    let zc = z - &mean;
    let (u, s, vh) = thin_svd(&zc);
    let sv: Vec<f64> = Vec::<f64>::try_from(&s).unwrap_or_default();
    let smax = sv.first().copied().unwrap_or(0.0);
    let n = z.size()[0].max(z.size()[1]) as f64;
    let keep = sv.iter().filter(|v| **v > smax * n * f64::EPSILON && **v > 0.0).count().max(1) as i64;
    let w = vh.narrow(0, 0, keep).transpose(0, 1) / s.narrow(0, 0, keep).unsqueeze(0);
    Basis { mean, w, q: u.narrow(1, 0, keep) }
}

/// The result of one CCA fit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CcaFit {
    /// Rows used by the fit.
    pub rows: usize,
    /// PCA components kept for the hidden states and for the scores.
    pub kx: usize,
    pub ky: usize,
    /// Canonical correlations on the fitted rows: descending (`SvdExact`), or in the order of
    /// the components (`NipalsSklearn`).
    pub in_sample: Vec<f64>,
    /// Correlations of the same canonical variates on held-out rows (order of the fit), when
    /// held-out rows were given.
    pub held_out: Option<Vec<f64>>,
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).contiguous().view(-1)).unwrap_or_default()
}

/// Pearson correlation of matching columns.
fn column_corr(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let ac = a - a.mean_dim(0, true, Kind::Double);
    let bc = b - b.mean_dim(0, true, Kind::Double);
    let num = (&ac * &bc).sum_dim_intlist(0, false, Kind::Double);
    let den = (ac.square().sum_dim_intlist(0, false, Kind::Double) * bc.square().sum_dim_intlist(0, false, Kind::Double)).sqrt();
    let num = to_f64(&num);
    let den = to_f64(&den);
    num.iter().zip(den).map(|(n, d)| if d > 0.0 { n / d } else { 0.0 }).collect()
}

/// Canonical correlations between `x` (`[N, d]`) and `y` (`[N, h]`, already min–max scaled),
/// each reduced by its PCA. `held_out` rows, if any, are projected with the training fit.
pub fn fit(x: &Tensor, y: &Tensor, pcas: Option<(&Pca, &Pca)>, held_out: Option<(&Tensor, &Tensor)>, opts: &CcaOptions) -> CcaFit {
    let own;
    let (px, py) = match pcas {
        Some(p) => p,
        None => {
            own = (Pca::fit(x, opts.x_variance), Pca::fit(y, opts.y_variance));
            (&own.0, &own.1)
        }
    };
    if let Solver::NipalsSklearn { max_iter, tol } = opts.solver {
        let (zx, zy) = (px.transform(x), py.transform(y));
        let rows = x.size()[0] as usize;
        let m = opts.components.min(px.kept()).min(py.kept()).min(rows).max(1);
        let model = Nipals::fit(&zx, &zy, m, max_iter, tol);
        let in_sample = column_corr(&model.transform_x(&zx), &model.transform_y(&zy));
        let held_out = held_out.map(|(xt, yt)| column_corr(&model.transform_x(&px.transform(xt)), &model.transform_y(&py.transform(yt))));
        return CcaFit { rows, kx: px.kept(), ky: py.kept(), in_sample, held_out };
    }
    let bx = basis(&px.transform(x));
    let by = basis(&py.transform(y));
    let (p, s, qh) = thin_svd(&bx.q.transpose(0, 1).matmul(&by.q));
    let rows = x.size()[0] as usize;
    let n = (s.size()[0] as usize).min(opts.components).min(rows.saturating_sub(1)).max(1);
    let in_sample: Vec<f64> = to_f64(&s).into_iter().take(n).map(|r| r.clamp(0.0, 1.0)).collect();
    let held_out = held_out.map(|(xt, yt)| {
        let a = bx.w.matmul(&p.narrow(1, 0, n as i64));
        let b = by.w.matmul(&qh.transpose(0, 1).narrow(1, 0, n as i64));
        let u = (px.transform(xt) - &bx.mean).matmul(&a);
        let v = (py.transform(yt) - &by.mean).matmul(&b);
        column_corr(&u, &v)
    });
    CcaFit { rows, kx: px.kept(), ky: py.kept(), in_sample, held_out }
}

/// Pseudo-inverse through the thin SVD, dropping singular values at or below `rel · s_max`.
/// sklearn's NIPALS (`_pinv2_old`) cuts at `1e6 · eps`; scipy's `pinv`, used for the small
/// `Pᵀ W` of the rotations, at `max(M, N) · eps`.
fn pinv(a: &Tensor, rel: f64) -> Tensor {
    let (u, s, vh) = thin_svd(a);
    let sv = to_f64(&s);
    let cut = sv.iter().copied().fold(0.0, f64::max) * rel;
    let rank = sv.iter().filter(|v| **v > cut).count() as i64;
    if rank == 0 {
        return a.transpose(0, 1).zeros_like();
    }
    (u.narrow(1, 0, rank) / s.narrow(0, 0, rank).unsqueeze(0)).matmul(&vh.narrow(0, 0, rank)).transpose(0, 1)
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).double_value(&[])
}

/// sklearn's `CCA(n_components, scale=True, max_iter, tol)` fitted by NIPALS, step for step
/// (`sklearn.cross_decomposition._pls`, reference §6): centre and scale both blocks (ddof 1),
/// then per component the power method for the first pair of singular vectors in mode B
/// (x-weights = pinv(X_k)·y-score, y-weights = pinv(Y_k)·x-score, both normalised, until the
/// squared change of the x-weights is below `tol`), a sign flip, and deflation of each block by
/// its own scores. Transforms with `W (PᵀW)⁺`.
struct Nipals {
    x_mean: Tensor,
    x_std: Tensor,
    y_mean: Tensor,
    y_std: Tensor,
    x_rot: Tensor,
    y_rot: Tensor,
}

impl Nipals {
    fn center_scale(z: &Tensor) -> (Tensor, Tensor, Tensor) {
        let mean = z.mean_dim(0, true, Kind::Double);
        let std = z.std_dim(0, true, true);
        let std = std.where_self(&std.ne(0.0), &std.ones_like());
        ((z - &mean) / &std, mean, std)
    }

    fn fit(x: &Tensor, y: &Tensor, components: usize, max_iter: usize, tol: f64) -> Nipals {
        let eps = f64::EPSILON;
        let (mut xk, x_mean, x_std) = Self::center_scale(x);
        let (mut yk, y_mean, y_std) = Self::center_scale(y);
        let (mut xw_all, mut yw_all, mut xl_all, mut yl_all) = (vec![], vec![], vec![], vec![]);
        for _ in 0..components {
            // Columns of Y_k that deflation has emptied are set to exactly 0.
            let dead = yk.abs().lt(10.0 * eps).all_dim(0, true);
            yk = yk.masked_fill(&dead, 0.0);
            let Some((xw, yw)) = Self::first_singular_vectors(&xk, &yk, max_iter, tol) else {
                break; // sklearn: "y residual is constant" — no further component
            };
            let xs = xk.matmul(&xw);
            let ys = yk.matmul(&yw);
            let xl = xk.transpose(0, 1).matmul(&xs) / dot(&xs, &xs);
            xk = &xk - xs.unsqueeze(1).matmul(&xl.unsqueeze(0));
            let yl = yk.transpose(0, 1).matmul(&ys) / dot(&ys, &ys);
            yk = &yk - ys.unsqueeze(1).matmul(&yl.unsqueeze(0));
            xw_all.push(xw);
            yw_all.push(yw);
            xl_all.push(xl);
            yl_all.push(yl);
        }
        let rot = |w: &[Tensor], l: &[Tensor], cols: i64| -> Tensor {
            if w.is_empty() {
                return Tensor::zeros([cols, 0], (Kind::Double, Device::Cpu));
            }
            let w = Tensor::stack(w, 1);
            let l = Tensor::stack(l, 1);
            {
                let ptw = l.transpose(0, 1).matmul(&w);
                let n = ptw.size().iter().copied().max().unwrap_or(1) as f64;
                w.matmul(&pinv(&ptw, n * f64::EPSILON))
            }
        };
        let x_rot = rot(&xw_all, &xl_all, x.size()[1]);
        let y_rot = rot(&yw_all, &yl_all, y.size()[1]);
        Nipals { x_mean, x_std, y_mean, y_std, x_rot, y_rot }
    }

    /// `_get_first_singular_vectors_power_method` (mode B, normalised y-weights) followed by
    /// `_svd_flip_1d`; `None` when every column of `y` is (numerically) zero.
    fn first_singular_vectors(x: &Tensor, y: &Tensor, max_iter: usize, tol: f64) -> Option<(Tensor, Tensor)> {
        let eps = f64::EPSILON;
        let cols = y.size()[1];
        let mut y_score = (0..cols).map(|j| y.select(1, j)).find(|c| c.abs().max().double_value(&[]) > eps)?.copy();
        let (x_pinv, y_pinv) = (pinv(x, 1e6 * f64::EPSILON), pinv(y, 1e6 * f64::EPSILON));
        let mut x_old: Option<Tensor> = None;
        let (mut xw, mut yw) = (Tensor::zeros([x.size()[1]], (Kind::Double, Device::Cpu)), Tensor::zeros([cols], (Kind::Double, Device::Cpu)));
        for _ in 0..max_iter.max(1) {
            xw = x_pinv.matmul(&y_score);
            xw = &xw / (dot(&xw, &xw).sqrt() + eps);
            let x_score = x.matmul(&xw);
            yw = y_pinv.matmul(&x_score);
            yw = &yw / (dot(&yw, &yw).sqrt() + eps);
            y_score = y.matmul(&yw) / (dot(&yw, &yw) + eps);
            // sklearn starts from x_weights_old = 100 (a scalar broadcast over the vector).
            let diff = match &x_old {
                Some(o) => &xw - o,
                None => &xw - 100.0,
            };
            if dot(&diff, &diff) < tol || cols == 1 {
                break;
            }
            x_old = Some(xw.shallow_clone());
        }
        let big = xw.abs().argmax(0, false).int64_value(&[]);
        let sign = xw.double_value(&[big]).signum();
        let sign = if sign == 0.0 { 1.0 } else { sign };
        Some((xw * sign, yw * sign))
    }

    fn transform_x(&self, x: &Tensor) -> Tensor {
        ((x - &self.x_mean) / &self.x_std).matmul(&self.x_rot)
    }

    fn transform_y(&self, y: &Tensor) -> Tensor {
        ((y - &self.y_mean) / &self.y_std).matmul(&self.y_rot)
    }
}

/// Mean of the top `k` of `rhos` (the k largest, or the first k), over as many as there are.
pub fn top_mean(rhos: &[f64], k: usize, mode: TopK) -> Option<f64> {
    let mut v = rhos.to_vec();
    if mode == TopK::LargestK {
        v.sort_by(|a, b| b.total_cmp(a));
    }
    let v: Vec<f64> = v.into_iter().take(k).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// A `[rows, cols]` f64 tensor on the CPU.
pub fn matrix(rows: &[Vec<f64>]) -> Tensor {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, cols as i64]).to_device(Device::Cpu)
}
