//! Analyses on real data: the published static head scores of Wu et al.
mod common;
use std::path::Path;

use rhx::analysis::dynamism::parse_head_score_json;

#[test]
fn published_llama2_head_scores_rank_as_documented() {
    // ../shared/data/head_score/llama-2-7b-80k.json: top heads 16-19 (.943), 11-15 (.920),
    // 8-26 (.800), 6-9 (.618), 7-12 (.614) per the data's documentation.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/head_score/llama-2-7b-80k.json");
    if !common::available(&p.display().to_string(), p.is_file()) {
        return;
    }
    let text = std::fs::read_to_string(&p).unwrap();
    let ranked = parse_head_score_json(&text).unwrap();
    assert_eq!(ranked.len(), 1024);
    let top: Vec<((usize, usize), f64)> = ranked.iter().take(5).map(|&(h, s)| (h, (s * 1000.0).round() / 1000.0)).collect();
    assert_eq!(top, vec![((16, 19), 0.943), ((11, 15), 0.92), ((8, 26), 0.8), ((6, 9), 0.618), ((7, 12), 0.614)]);
}
