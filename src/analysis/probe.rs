//! Table 2: an MLP probe from the final hidden state of a step to the set of heads that are
//! retrieval heads at that step (paper A.5, reference-algorithms §5 and §8.7), trained with
//! `tch` (on the GPU when the tensors live there), and the two baselines no one reported: a
//! logistic regression per head and the "always the static set" predictor.
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// The Asymmetric Loss of Ridnik et al. (ASL's `AsymmetricLoss` class): for p = σ(x),
/// p_m = max(p − clip, 0),
/// `L = −Σ [ y (1−p)^γ+ log(max(p, ε)) + (1−y) p_m^γ− log(max(1−p_m, ε)) ]`,
/// the focusing weight computed without gradient (`disable_torch_grad_focal_loss=True`) and the
/// sum taken over batch × labels.
#[derive(Debug, Clone, Copy)]
pub struct Asl {
    pub gamma_neg: f64,
    pub gamma_pos: f64,
    pub clip: f64,
    pub eps: f64,
}

impl Default for Asl {
    fn default() -> Self {
        Self { gamma_neg: 4.0, gamma_pos: 1.0, clip: 0.05, eps: 1e-8 }
    }
}

impl Asl {
    pub fn loss(&self, logits: &Tensor, y: &Tensor) -> Tensor {
        let p = logits.sigmoid();
        let neg = (p.ones_like() - &p + self.clip).clamp_max(1.0);
        let los_pos = y * p.clamp_min(self.eps).log();
        let not_y: Tensor = y.ones_like() - y;
        let los_neg = &not_y * neg.clamp_min(self.eps).log();
        let w = tch::no_grad(|| {
            let pt: Tensor = &p * y + &neg * &not_y;
            let gamma: Tensor = y * self.gamma_pos + &not_y * self.gamma_neg;
            (pt.ones_like() - &pt).pow(&gamma)
        });
        -((los_pos + los_neg) * w).sum(logits.kind())
    }
}

/// Which weights are evaluated after training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// After the last epoch (default: the paper states 100 epochs and no early stopping).
    Last,
    /// The epoch with the lowest validation loss.
    BestValLoss,
}

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Hidden layer widths; the paper's [8192, 4096, 4096] for d = 4096 is [2d, d, d].
    pub layers: Vec<usize>,
    pub gelu: bool,
    pub dropout: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub clip_grad_norm: f64,
    /// ReduceLROnPlateau on the validation loss (PyTorch defaults: factor 0.1, threshold 1e-4 rel).
    pub patience: usize,
    pub asl: Asl,
    /// Regression (Table 3): mean squared error on raw outputs instead of ASL on sigmoids.
    pub regression: bool,
    pub checkpoint: Checkpoint,
    pub seed: u64,
    pub device: Device,
    /// Train in f64 (default) rather than f32: f32 training amplifies the ~1e-7 differences of
    /// BLAS paths between CPUs into ±0.03 F1, f64 training does not (docs/FIDELITY.md).
    pub double: bool,
}

/// Rows of one split: hidden states `[N, d]` and targets `[N, heads]` (0/1 labels, or Eq. 2
/// scores for the regressor), f32.
pub struct Split {
    pub x: Tensor,
    pub y: Tensor,
}

impl Split {
    pub fn from_rows(x: &[Vec<f32>], y: &[Vec<f32>]) -> Split {
        let d = x.first().map_or(0, Vec::len) as i64;
        let h = y.first().map_or(0, Vec::len) as i64;
        let xs: Vec<f32> = x.iter().flatten().copied().collect();
        let ys: Vec<f32> = y.iter().flatten().copied().collect();
        Split { x: Tensor::from_slice(&xs).view([x.len() as i64, d]), y: Tensor::from_slice(&ys).view([y.len() as i64, h]) }
    }
    pub fn rows(&self) -> i64 {
        self.x.size()[0]
    }
}

/// What training did, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainLog {
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub lr: Vec<f64>,
    pub best_epoch: usize,
}

fn mlp(vs: &nn::Path, d_in: i64, layers: &[usize], d_out: i64, dropout: f64, gelu: bool) -> impl nn::ModuleT + 'static {
    let mut seq = nn::seq_t();
    let mut d = d_in;
    for (i, &w) in layers.iter().enumerate() {
        seq = seq.add(nn::linear(vs / format!("hidden{i}"), d, w as i64, Default::default()));
        seq = if gelu { seq.add_fn(|x| x.gelu("none")) } else { seq.add_fn(|x| x.relu()) };
        seq = seq.add_fn_t(move |x, train| x.dropout(dropout, train));
        d = w as i64;
    }
    seq.add(nn::linear(vs / "out", d, d_out, Default::default()))
}

/// Trains the probe and returns its outputs on the `eval` splits (on the CPU, in the training
/// precision): sigmoid scores for the classifier, raw values for the regressor; and the log.
pub fn train(train: &Split, val: &Split, eval: &[&Split], opts: &ProbeOptions) -> Result<(Vec<Tensor>, TrainLog), tch::TchError> {
    train_model(train, val, eval, opts).map(|(scores, log, _)| (scores, log))
}

/// Named weights of an MLP (on the CPU).
pub type Weights = Vec<(String, Tensor)>;

/// A trained MLP: its shape and weights (on the CPU, in the training precision), to predict
/// after training (Section 5's dynamic heads).
pub struct Mlp {
    pub d_in: i64,
    pub layers: Vec<usize>,
    pub d_out: i64,
    pub gelu: bool,
    pub weights: Vec<(String, Tensor)>,
}

impl Mlp {
    /// The network with these weights, ready to predict (built once: the paper's shape holds
    /// ~55 M parameters at SmolLM2's width).
    pub fn build(&self) -> Result<Predictor, tch::TchError> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = mlp(&vs.root(), self.d_in, &self.layers, self.d_out, 0.0, self.gelu);
        let kind = self.weights.first().map_or(Kind::Float, |(_, t)| t.kind());
        if kind == Kind::Double {
            vs.double();
        }
        let mut vars = vs.variables();
        if vars.len() != self.weights.len() {
            return Err(tch::TchError::Shape(format!("{} weights stored, the MLP has {}", self.weights.len(), vars.len())));
        }
        tch::no_grad(|| -> Result<(), tch::TchError> {
            for (k, v) in &self.weights {
                let t = vars.get_mut(k).ok_or_else(|| tch::TchError::Kind(format!("the MLP has no weight `{k}`")))?;
                if t.size() != v.size() {
                    return Err(tch::TchError::Shape(format!("weight `{k}`: {:?} stored, {:?} expected", v.size(), t.size())));
                }
                t.copy_(v);
            }
            Ok(())
        })?;
        Ok(Predictor { _vs: vs, net: Box::new(net), kind })
    }
}

/// A built [`Mlp`].
pub struct Predictor {
    _vs: nn::VarStore,
    net: Box<dyn nn::ModuleT>,
    kind: Kind,
}

impl Predictor {
    /// Raw outputs `[N, d_out]` for inputs `[N, d_in]` (evaluation mode: no dropout).
    pub fn predict(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.net.forward_t(&x.to_device(Device::Cpu).to_kind(self.kind), false))
    }
}

/// [`train`], also returning the trained weights (named as [`Mlp::weights`]).
pub fn train_model(train: &Split, val: &Split, eval: &[&Split], opts: &ProbeOptions) -> Result<(Vec<Tensor>, TrainLog, Weights), tch::TchError> {
    tch::manual_seed(opts.seed as i64);
    let vs = nn::VarStore::new(opts.device);
    let d_in = train.x.size()[1];
    let d_out = train.y.size()[1];
    let net = mlp(&vs.root(), d_in, &opts.layers, d_out, opts.dropout, opts.gelu);
    let mut vs = vs;
    let kind = if opts.double {
        vs.double();
        Kind::Double
    } else {
        Kind::Float
    };
    let mut opt = nn::Adam::default().build(&vs, opts.lr)?;
    // PyTorch's `MSELoss()` (mean over rows × heads) for the regressor, ASL for the classifier.
    let loss_of = |out: &Tensor, y: &Tensor| if opts.regression { out.mse_loss(y, tch::Reduction::Mean) } else { opts.asl.loss(out, y) };
    let on_device = |t: &Tensor| t.to_device(opts.device).to_kind(kind);
    let (tx, ty) = (on_device(&train.x), on_device(&train.y));
    let (vx, vy) = (on_device(&val.x), on_device(&val.y));
    let n = tx.size()[0];
    let bs = opts.batch_size as i64;
    let mut lr = opts.lr;
    let (mut best, mut bad) = (f64::INFINITY, 0usize);
    let mut log = TrainLog { train_loss: vec![], val_loss: vec![], lr: vec![], best_epoch: 0 };
    let mut best_weights: Option<Vec<(String, Tensor)>> = None;
    let mut best_val = f64::INFINITY;
    for epoch in 0..opts.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, opts.device));
        let mut total = 0.0;
        let mut start = 0;
        while start < n {
            let len = bs.min(n - start);
            let idx = perm.narrow(0, start, len);
            let loss = loss_of(&net.forward_t(&tx.index_select(0, &idx), true), &ty.index_select(0, &idx));
            opt.zero_grad();
            loss.backward();
            opt.clip_grad_norm(opts.clip_grad_norm);
            opt.step();
            total += loss.double_value(&[]);
            start += len;
        }
        let val_loss = tch::no_grad(|| loss_of(&net.forward_t(&vx, false), &vy).double_value(&[]));
        log.train_loss.push(total);
        log.val_loss.push(val_loss);
        log.lr.push(lr);
        if val_loss < best_val {
            best_val = val_loss;
            log.best_epoch = epoch;
            if opts.checkpoint == Checkpoint::BestValLoss {
                best_weights = Some(vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect());
            }
        }
        // ReduceLROnPlateau(mode="min", factor=0.1, patience, threshold=1e-4, "rel").
        if val_loss < best * (1.0 - 1e-4) {
            best = val_loss;
            bad = 0;
        } else {
            bad += 1;
            if bad > opts.patience {
                lr *= 0.1;
                opt.set_lr(lr);
                bad = 0;
            }
        }
    }
    if let Some(w) = best_weights {
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (k, v) in w {
                if let Some(t) = vars.get_mut(&k) {
                    t.copy_(&v);
                }
            }
        });
    }
    let scores = eval
        .iter()
        .map(|s| {
            tch::no_grad(|| {
                let out = net.forward_t(&on_device(&s.x), false);
                if opts.regression { out } else { out.sigmoid() }.to_device(Device::Cpu)
            })
        })
        .collect();
    let mut weights: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.detach().to_device(Device::Cpu).copy())).collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((scores, log, weights))
}

/// Flattened (score, label) pairs of a `[N, heads]` score tensor and its labels.
pub fn pairs(scores: &Tensor, y: &Tensor) -> (Vec<f64>, Vec<bool>) {
    let s = Vec::<f64>::try_from(&scores.to_kind(Kind::Double).contiguous().view(-1)).unwrap_or_default();
    let l = Vec::<f64>::try_from(&y.to_kind(Kind::Double).contiguous().view(-1)).unwrap_or_default();
    (s, l.into_iter().map(|v| v > 0.5).collect())
}

/// Columns of a `[N, heads]` tensor as (scores, labels) per head.
pub fn columns(scores: &Tensor, y: &Tensor) -> Vec<(Vec<f64>, Vec<bool>)> {
    (0..scores.size()[1]).map(|j| pairs(&scores.select(1, j), &y.select(1, j))).collect()
}
