//! Table 3: how well a predictor recovers every head's Eq. 2 score from the hidden state — mean
//! squared and absolute error and R² — and the two baselines beside the MLP: ridge regression
//! (closed form) and the training mean.
use tch::{Kind, Tensor};

/// Errors of predictions against targets, both `[rows, heads]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RegressionMetrics {
    /// Mean over rows × heads of the squared error (sklearn's `mean_squared_error`).
    pub mse: f64,
    /// Mean over rows × heads of the absolute error.
    pub mae: f64,
    /// sklearn's `r2_score` (`multioutput="uniform_average"`): R² of each head, averaged; a head
    /// constant on the test rows scores 1 when predicted exactly, else 0 (`force_finite`).
    pub r2_uniform: f64,
    /// R² with the sums of squares pooled over heads: 1 − Σ_h Σ(y − ŷ)² / Σ_h Σ(y − ȳ_h)², ȳ_h
    /// each head's test mean (sklearn's `multioutput="variance_weighted"`): heads weigh by their
    /// variance, so a head that barely varies cannot dominate it as it can the uniform mean.
    pub r2_pooled: f64,
}

impl RegressionMetrics {
    /// Row-major `[rows, heads]` predictions and targets.
    pub fn of(pred: &[f64], y: &[f64], heads: usize) -> RegressionMetrics {
        let n = y.len().max(1) as f64;
        let rows = y.len() / heads.max(1);
        let mse = pred.iter().zip(y).map(|(p, t)| (p - t).powi(2)).sum::<f64>() / n;
        let mae = pred.iter().zip(y).map(|(p, t)| (p - t).abs()).sum::<f64>() / n;
        let (mut r2, mut num_pooled, mut den_pooled) = (0.0, 0.0, 0.0);
        for j in 0..heads {
            let col = |v: &[f64]| (0..rows).map(move |i| v[i * heads + j]).collect::<Vec<f64>>();
            let (t, p) = (col(y), col(pred));
            let mean = t.iter().sum::<f64>() / rows.max(1) as f64;
            let num: f64 = t.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f64 = t.iter().map(|a| (a - mean).powi(2)).sum();
            r2 += if den > 0.0 { 1.0 - num / den } else if num == 0.0 { 1.0 } else { 0.0 };
            // sklearn leaves constant heads out of the variance-weighted mean.
            if den > 0.0 {
                num_pooled += num;
                den_pooled += den;
            }
        }
        let r2_pooled = if den_pooled > 0.0 { 1.0 - num_pooled / den_pooled } else { 0.0 };
        RegressionMetrics { mse, mae, r2_uniform: r2 / heads.max(1) as f64, r2_pooled }
    }
}

/// Ridge regression on standardised features (train mean and std), the targets centred on their
/// training mean, solved in f64 in closed form: W = (XᵀX + αI)⁻¹ XᵀY. α is the one of `alphas`
/// with the lowest validation MSE. Returns the predictions on each of `eval` and the chosen α.
pub fn ridge(train: (&Tensor, &Tensor), val: (&Tensor, &Tensor), alphas: &[f64], eval: &[&Tensor]) -> (Vec<Tensor>, f64) {
    let x = train.0.to_kind(Kind::Double);
    let mean = x.mean_dim(0, true, Kind::Double);
    let std = x.std_dim(0, false, true).clamp_min(1e-6);
    let z = |t: &Tensor| (t.to_kind(Kind::Double) - &mean) / &std;
    let xs = z(train.0);
    let y = train.1.to_kind(Kind::Double);
    let y_mean = y.mean_dim(0, true, Kind::Double);
    let yc = &y - &y_mean;
    let gram = xs.transpose(0, 1).matmul(&xs);
    let xty = xs.transpose(0, 1).matmul(&yc);
    let eye = Tensor::eye(gram.size()[0], (Kind::Double, gram.device()));
    let fit = |a: f64| Tensor::linalg_solve(&(&gram + &eye * a), &xty, true);
    let predict = |w: &Tensor, t: &Tensor| z(t).matmul(w) + &y_mean;
    let vy = val.1.to_kind(Kind::Double);
    let (mut best, mut best_mse) = (alphas.first().copied().unwrap_or(1.0), f64::INFINITY);
    for &a in alphas {
        let mse = (predict(&fit(a), val.0) - &vy).square().mean(Kind::Double).double_value(&[]);
        if mse < best_mse {
            (best, best_mse) = (a, mse);
        }
    }
    let w = fit(best);
    (eval.iter().map(|t| predict(&w, t)).collect(), best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        // 3 rows × 2 heads; head 1 is constant in the targets and predicted exactly.
        let y = [0.0, 0.5, 1.0, 0.5, 2.0, 0.5];
        let p = [0.5, 0.5, 1.0, 0.5, 1.5, 0.5];
        let m = RegressionMetrics::of(&p, &y, 2);
        assert!((m.mse - 0.5 / 6.0).abs() < 1e-12);
        assert!((m.mae - 1.0 / 6.0).abs() < 1e-12);
        // Head 0: 1 − 0.5 / 2 = 0.75; head 1: constant, exact → 1 (sklearn's force_finite).
        assert!((m.r2_uniform - (0.75 + 1.0) / 2.0).abs() < 1e-12);
        // Pooled over the heads that vary (head 0 only): 1 − 0.5 / 2.
        assert!((m.r2_pooled - 0.75).abs() < 1e-12);
        // Two varying heads pool their sums of squares: head 0 as above, head 1 with targets
        // [0, 1, 2] predicted [0, 1, 1] (num 1, den 2): 1 − (0.5 + 1) / (2 + 2).
        let m = RegressionMetrics::of(&[0.5, 0.0, 1.0, 1.0, 1.5, 1.0], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0], 2);
        assert!((m.r2_pooled - (1.0 - 1.5 / 4.0)).abs() < 1e-12);
        assert!((m.r2_uniform - (0.75 + 0.5) / 2.0).abs() < 1e-12);
        // A wrong prediction of a constant head scores 0 for that head.
        let m = RegressionMetrics::of(&[0.0, 0.6, 1.0, 0.5, 2.0, 0.5], &y, 2);
        assert!((m.r2_uniform - 0.5).abs() < 1e-12);
    }

    #[test]
    fn ridge_recovers_a_linear_map_and_prefers_little_shrinkage_on_clean_data() {
        // y = 2·x0 − x1 + 3, exactly.
        let xs: Vec<f64> = (0..40).flat_map(|i| [f64::from(i % 7), f64::from((i * 3) % 11)]).collect();
        let ys: Vec<f64> = xs.chunks(2).map(|r| 2.0 * r[0] - r[1] + 3.0).collect();
        let x = Tensor::from_slice(&xs).view([40, 2]);
        let y = Tensor::from_slice(&ys).view([40, 1]);
        let (out, alpha) = ridge((&x, &y), (&x, &y), &[1e-6, 1.0, 100.0], &[&x]);
        assert_eq!(alpha, 1e-6);
        let err = (&out[0] - &y).abs().max().double_value(&[]);
        assert!(err < 1e-4, "max error {err}");
    }
}
