//! The Rust NIAH generator reproduces, byte for byte, the prompts that the Python reference
//! (`scripts/fixtures/fx_niah.py`, HF tokenizer) wrote to `experiments/prompts/niah_smoke.jsonl`:
//! same haystack cut, same sentence-end backtracking, same UUIDs from the same seed.
mod common;
use std::path::Path;

use rhx::data::niah::{self, Cell, Haystack};
use rhx::support::pyrandom::PyRandom;
use rhx::engine::tokenizer::Tokenizer;
use serde_json::Value;

#[test]
fn python_random_uuid4_stream() {
    // python3 -c "import random,uuid; r=random.Random(0); print([str(uuid.UUID(int=r.getrandbits(128), version=4)) for _ in range(3)])"
    let mut r = PyRandom::new(0);
    let got: Vec<String> = (0..3).map(|_| r.uuid4()).collect();
    assert_eq!(got, ["e3e70682-c209-4cac-a29f-6fbed82c07cd", "f728b4fa-4248-4e3a-8a5d-2f346baa9455", "eb1167b3-67a9-4378-bc65-c1e582e2e662"]);
}

#[test]
fn python_random_floats() {
    // python3 -c "import random; r=random.Random(0); print([r.random() for _ in range(3)]); print(random.Random(2**40+7).random())"
    let mut r = PyRandom::new(0);
    let got: Vec<f64> = (0..3).map(|_| r.random()).collect();
    assert_eq!(got, [0.8444218515250481, 0.7579544029403025, 0.420571580830845]);
    assert_eq!(PyRandom::new((1 << 40) + 7).random(), 0.6137037779936511);
    let cells = niah::random_depths(&[500, 1000], 3, 0);
    assert_eq!(cells.len(), 6);
    assert!(cells.iter().all(|c| (0.0..1.0).contains(&c.depth)));
    assert_ne!(cells[0].depth, cells[1].depth, "each run draws its own depth");
}

#[test]
fn reproduces_the_committed_smoke_prompts() {
    if !common::smollm2_installed() {
        return;
    }
    let gguf = rhx::engine::loader::resolve("smollm2-135m-instruct").unwrap();
    let tok = Tokenizer::from_gguf_path(&gguf).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want: Vec<Value> = std::fs::read_to_string(root.join("experiments/prompts/niah_smoke.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cells: Vec<Cell> = want.iter().map(|w| Cell { length: w["haystack_tokens"].as_u64().unwrap() as usize, depth: w["depth"].as_f64().unwrap(), run: 0 }).collect();
    let got = niah::build(&tok, &Haystack::Alice, &cells, 0, niah::NEEDLE_TEMPLATE).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.id, w["id"].as_str().unwrap());
        assert_eq!(g.answer, w["answer"].as_str().unwrap());
        assert_eq!(g.needle, w["needle"].as_str().unwrap());
        assert_eq!(g.insert_token as u64, w["insert_token"].as_u64().unwrap(), "{}", g.id);
        assert_eq!(serde_json::to_value(&g.messages).unwrap(), w["messages"], "{}: messages differ", g.id);
    }
}

#[test]
fn grid_order_and_bad_input() {
    let cells = niah::grid(&[500, 1000], &[0.0, 1.0], 2);
    assert_eq!(cells.len(), 8);
    assert_eq!((cells[0].length, cells[0].depth, cells[0].run), (500, 0.0, 0));
    assert_eq!((cells[1].length, cells[1].depth, cells[1].run), (500, 0.0, 1));
    assert_eq!((cells[7].length, cells[7].depth, cells[7].run), (1000, 1.0, 1));
    let e = Haystack::Dir("/nonexistent/dir".into()).text().unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dir"));
    let text = niah::alice_book_text(niah::ALICE);
    assert!(text.starts_with("CHAPTER I.") && text.ends_with("THE END"));
    assert!(!text.contains("Gutenberg"));
}
