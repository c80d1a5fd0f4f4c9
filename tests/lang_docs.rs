//! Checks docs/LANGUAGE.md: every ```rhx block parses and checks (as a file in
//! tests/lang/docs/), every ```rhx,error block is rejected, and the generated reference section
//! matches the schema registry (`RHX_UPDATE_DOCS=1` rewrites it).
#[path = "lang/support.rs"]
mod support;

use std::path::Path;

use rhx::lang::{check_str_with, format_source, registry, render_diagnostics, CheckOptions};
use support::FakeShapes;

const DOC: &str = "docs/LANGUAGE.md";
const BEGIN: &str = "<!-- BEGIN GENERATED: schema -->";
const END: &str = "<!-- END GENERATED: schema -->";

/// (line of the opening fence, info string, code)
fn blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut out = vec![];
    let mut current: Option<(usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    current = Some((i + 1, info.trim().to_string(), String::new()));
                }
            }
            Some((_, _, code)) => {
                if line.trim_start().starts_with("```") {
                    out.push(current.take().unwrap());
                } else {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
    out
}

#[test]
fn rhx_blocks_check() {
    let text = std::fs::read_to_string(DOC).unwrap();
    let mut n = 0;
    for (line, info, code) in blocks(&text) {
        let name = format!("{DOC}:{line}");
        let virtual_path = Path::new("tests/lang/docs/example.rhx");
        // Every profile of an example is checked too, as `rhx check` does.
        let opts = CheckOptions {
            all_profiles: true,
            ..CheckOptions::default()
        };
        match info.as_str() {
            "rhx" => {
                n += 1;
                if let Err(d) = check_str_with(&name, virtual_path, &code, &opts, &FakeShapes) {
                    panic!(
                        "example at {name} should check:\n{}",
                        render_diagnostics(&d)
                    );
                }
                format_source(&code).unwrap_or_else(|d| panic!("{name}: {}", d.render()));
            }
            "rhx,error" => {
                n += 1;
                assert!(
                    check_str_with(&name, virtual_path, &code, &opts, &FakeShapes).is_err(),
                    "example at {name} should be rejected"
                );
            }
            _ => {}
        }
    }
    assert!(n >= 20, "only {n} rhx examples found");
}

#[test]
fn reference_matches_registry() {
    let text = std::fs::read_to_string(DOC).unwrap();
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{DOC} lacks the generated-section markers")
    };
    let generated = format!("{BEGIN}\n{}{END}", registry().markdown());
    let current = &text[b..e + END.len()];
    if current != generated {
        if std::env::var("RHX_UPDATE_DOCS").is_ok() {
            let updated = format!("{}{generated}{}", &text[..b], &text[e + END.len()..]);
            std::fs::write(DOC, updated).unwrap();
        } else {
            panic!("the reference section of {DOC} is stale; run `RHX_UPDATE_DOCS=1 cargo test --release --test lang_docs`");
        }
    }
}
