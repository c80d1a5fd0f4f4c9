//! The trace viewer in a real browser (headless Chromium, as `tests/report.rs`): a real trace of
//! SmolLM2 (`rhx run tests/run/tiny.rhx`, `rhx trace`), written as a page by `rhx view` and
//! embedded in the HTML report. Deep links (`#sample=..&step=..&head=L:H`) must highlight exactly
//! the prompt position the trace records as that head's argmax at that step, and another step the
//! other position the trace says; the grid has layers × heads cells with H_t marked; a screenshot
//! is not blank.
mod common;
#[path = "common/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::process::Command;

use browser::{chromium, png_rgb, run_chromium, CHROMIUM};
use rhx::artifact::trace::TraceLine;
use rhx::report::trace_view::TraceView;

fn rhx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rhx"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace_view").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn browser() -> PathBuf {
    chromium().unwrap_or_else(|| panic!("{CHROMIUM} not found: run `bash scripts/install-chromium.sh` (Debian's chromium package)"))
}

/// One element's opening tag per match: the `<span …>` tags whose class list has `class`.
fn tags_with_class<'a>(dom: &'a str, tag: &str, class: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        let end = rest[i..].find('>').map_or(rest.len(), |e| i + e + 1);
        let t = &rest[i..end];
        let classes = t.split("class=\"").nth(1).and_then(|c| c.split('"').next()).unwrap_or("");
        if classes.split_whitespace().any(|c| c == class) {
            out.push(t);
        }
        rest = &rest[end..];
    }
    out
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    tag.split(&format!(" {name}=\"")).nth(1).and_then(|v| v.split('"').next())
}

/// The page after its script ran, opened at `#fragment`.
fn dom_at(page: &Path, fragment: &str, profile: &Path) -> String {
    run_chromium(&browser(), profile, &["--virtual-time-budget=5000".into(), "--dump-dom".into(), format!("file://{}#{fragment}", page.display())])
}

/// A head and two steps of `line` at which its argmax lies at two different prompt positions,
/// preferring a head that is in H_t at the first step (a retrieval head, the case a user looks at).
fn head_and_two_steps(line: &TraceLine, heads: usize) -> (usize, usize, usize) {
    let p = line.prompt_tokens as i64;
    let n = line.steps.len();
    let candidates = line.steps.iter().enumerate().flat_map(|(t, s)| s.heads.iter().map(move |&(l, h)| (l * heads + h, t))).chain((0..line.steps[0].argmax.len()).map(|i| (i, 0)));
    for (i, t1) in candidates {
        let a1 = line.steps[t1].argmax[i];
        if let Some(t2) = (0..n).find(|&t2| t2 != t1 && line.steps[t2].argmax[i] != a1 && line.steps[t2].argmax[i] < p && a1 < p) {
            return (i, t1, t2);
        }
    }
    panic!("no head's argmax moves between steps in sample {}", line.id);
}

/// Opens `page` at step t of `line` for head `i` and checks what is highlighted against the trace.
fn check_step(page: &Path, line: &TraceLine, (layers, heads): (usize, usize), i: usize, t: usize, profile: &Path, trace_param: &str) {
    let (l, h) = (i / heads, i % heads);
    let fragment = format!("{trace_param}sample={}&step={t}&head={l}:{h}", line.id);
    let dom = dom_at(page, &fragment, profile);
    let want = line.steps[t].argmax[i];
    let argmax = tags_with_class(&dom, "span", "tv-argmax");
    assert_eq!(argmax.len(), 1, "one highlighted argmax at #{fragment}: {argmax:?}");
    assert_eq!(attr(argmax[0], "data-p"), Some(want.to_string().as_str()), "#{fragment}: the trace says head {l}:{h} attends most to position {want}; highlighted {argmax:?}");
    let cur = tags_with_class(&dom, "span", "tv-cur");
    assert_eq!(cur.len(), 1);
    assert_eq!(attr(cur[0], "data-p"), Some((line.prompt_tokens + t).to_string().as_str()), "the step's generated token is marked");
    // The grid: one cell per head, H_t marked, the chosen head selected.
    assert_eq!(tags_with_class(&dom, "div", "tv-cell").len(), layers * heads, "layers × heads cells");
    let in_ht: Vec<String> = tags_with_class(&dom, "div", "tv-in").iter().map(|c| attr(c, "data-head").unwrap().to_string()).collect();
    let want_ht: Vec<String> = line.steps[t].heads.iter().map(|(l, h)| format!("{l}:{h}")).collect();
    assert_eq!(in_ht.len(), want_ht.len(), "H_t at step {t}: {in_ht:?} vs {want_ht:?}");
    assert!(want_ht.iter().all(|x| in_ht.contains(x)), "H_t at step {t}: {in_ht:?} vs {want_ht:?}");
    let sel = tags_with_class(&dom, "div", "tv-sel");
    assert_eq!(sel.iter().map(|c| attr(c, "data-head").unwrap()).collect::<Vec<_>>(), [format!("{l}:{h}").as_str()]);
    // The needle is marked on every prompt position of the span.
    let needle: Vec<usize> = tags_with_class(&dom, "span", "tv-needle").iter().map(|c| attr(c, "data-p").unwrap().parse().unwrap()).collect();
    assert_eq!(needle, line.needle_span);
}

/// A screenshot at a deep link: not blank, and the viewer's colours are drawn: the selected head's
/// argmax (a red token, beside the red outline of its grid cell) and the needle (yellow).
fn screenshot_not_blank(page: &Path, fragment: &str, dir: &Path) {
    let shot = dir.join("page.png");
    run_chromium(&browser(), &dir.join("profile-shot"), &["--window-size=1400,1000".into(), format!("--screenshot={}", shot.display()), format!("file://{}#{fragment}", page.display())]);
    let (px, (w, h)) = png_rgb(&shot);
    let count = |f: &dyn Fn(u32, u32, u32) -> bool| px.iter().filter(|p| f(p[0] as u32, p[1] as u32, p[2] as u32)).count();
    let ink = count(&|r, g, b| r + g + b < 600);
    let red = count(&|r, g, b| r > 180 && g < 70 && b < 70);
    let yellow = count(&|r, g, b| r > 245 && g > 235 && b < 200);
    eprintln!("screenshot {} ({w}×{h}): {ink} dark, {red} red, {yellow} yellow pixels", shot.display());
    assert!(ink > 10_000, "screenshot is nearly blank ({ink} dark pixels)");
    assert!(red > 400, "the argmax highlight is not drawn ({red} red pixels)");
    assert!(yellow > 500, "the needle is not marked ({yellow} yellow pixels)");
}

/// `rhx run` → the report embeds its traces' viewer; `rhx view` on the cached trace artifact writes
/// the whole trace as a page; both highlight what the trace says.
#[test]
fn report_and_rhx_view_of_a_cached_trace_highlight_the_traced_argmax() {
    if !common::smollm2_installed() {
        return;
    }
    let dir = scratch("run");
    let (cache, reports) = (dir.join("cache"), dir.join("reports"));
    let st = rhx().current_dir(root()).args(["run", "--quiet", "--profile", "short", "tests/run/tiny.rhx", "--cache"]).arg(&cache).arg("--reports").arg(&reports).status().unwrap();
    assert!(st.success());
    let report = rhx::report::load_report(&reports.join("out/report.json")).unwrap();
    let names: Vec<&str> = report.traces.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["base", "masked"], "the report's upstream traces, in plan order");
    let key = &report.provenance.cache_keys["base"];
    let art = cache.join("objects").join(&key[..2]).join(key);
    let lines: Vec<TraceLine> = std::fs::read_to_string(art.join("trace.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let base = &report.traces[0];
    assert_eq!((base.layers, base.heads, base.total_samples), (30, 9, lines.len()));
    let line = &lines[0];
    assert_eq!(line.prompt_pieces.len(), line.prompt_tokens, "the trace records the prompt's token texts");
    assert_eq!(base.samples[0].prompt, line.prompt_pieces);

    // `rhx view DIR`.
    let page = dir.join("base.html");
    let out = rhx().args(["view"]).arg(&art).arg("--out").arg(&page).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    for bad in ["<link", "<img", "<iframe", "@import", "url(", "http://", "https://", " src="] {
        assert!(!html.contains(bad), "the page must not fetch anything ({bad})");
    }
    // `rhx view EXP.rhx NODE`: the same trace, named as `rhx export` names it.
    let by_node = dir.join("base_node.html");
    let view_node = |node: &str, out: &Path| rhx().current_dir(root()).args(["view", "tests/run/tiny.rhx", node, "--profile", "short", "--cache"]).arg(&cache).arg("--out").arg(out).output().unwrap();
    let out = view_node("base", &by_node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let node_html = std::fs::read_to_string(&by_node).unwrap();
    assert!(node_html.contains(&format!("base ({})", &key[..12])), "the page names the node and its key");
    assert!(node_html.contains(&line.id), "the page holds the node's samples");
    for (node, want) in [("nosuch", "has no node `nosuch`"), ("scores", "not a trace")] {
        let out = view_node(node, &dir.join("bad.html"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "`rhx view tests/run/tiny.rhx {node}`: {err}");
        assert!(!dir.join("bad.html").exists(), "no page for a failed view");
    }
    let (i, t1, t2) = head_and_two_steps(line, base.heads);
    check_step(&page, line, (base.layers, base.heads), i, t1, &dir.join("p1"), "");
    check_step(&page, line, (base.layers, base.heads), i, t2, &dir.join("p2"), "");

    // The report's copy of the viewer, with the trace picked in the URL.
    let report_html = reports.join("out/report.html");
    check_step(&report_html, line, (base.layers, base.heads), i, t1, &dir.join("p3"), "trace=base&");
    let (l, h) = (i / base.heads, i % base.heads);
    screenshot_not_blank(&page, &format!("sample={}&step={t1}&head={l}:{h}", line.id), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rhx trace --out` → `rhx view FILE`: error lines are left out, the shape comes from the model's
/// config, and a deep link highlights the traced argmax; a file that does not fit the model is an
/// error naming the sample and step, and no page is written.
#[test]
fn rhx_view_of_a_trace_file() {
    if !common::smollm2_installed() {
        return;
    }
    let dir = scratch("file");
    let input = dir.join("in.jsonl");
    let hay = "The grass was green and the sky was blue over the quiet river. ".repeat(6);
    let prompt = format!("{hay}The secret code is 7f3a-91c. {hay}What is the secret code? Answer with the code only.");
    let lines = [
        serde_json::json!({"id": "q</script>1", "messages": [{"role": "user", "content": prompt}], "needle": "The secret code is 7f3a-91c."}),
        serde_json::json!({"id": "bad", "messages": [{"role": "user", "content": "hello"}], "needle": "absent"}),
    ];
    std::fs::write(&input, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let traced = dir.join("out.jsonl");
    let st = rhx().args(["trace", "--device", "cpu", "--max-new-tokens", "6", "--quiet", "--prompts"]).arg(&input).arg("--out").arg(&traced).status().unwrap();
    assert_eq!(st.code(), Some(1), "the bad line fails, the good one is traced");
    let page = dir.join("view.html");
    let out = rhx().args(["view"]).arg(&traced).arg("--out").arg(&page).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 line(s)") && stderr.contains("1 of 1 samples, 30 layers × 9 heads"), "{stderr}");
    let line: TraceLine = serde_json::from_str(std::fs::read_to_string(&traced).unwrap().lines().next().unwrap()).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("q</script>1") && html.contains("q\\u003c/script>1"), "the sample id cannot end the data element");
    let (i, t1, t2) = head_and_two_steps(&line, 9);
    check_step(&page, &line, (30, 9), i, t1, &dir.join("p1"), "");
    check_step(&page, &line, (30, 9), i, t2, &dir.join("p2"), "");
    // The same data the page holds, from the library.
    let info = rhx::artifact::trace::TraceInfo { layers: 30, heads: 9, ..Default::default() };
    assert_eq!(TraceView::new("x", &info, std::slice::from_ref(&line), None).unwrap().samples[0].prompt.len(), line.prompt_tokens);

    // A trace of another shape: an error naming the sample and step, no page.
    let other = dir.join("other.html");
    let out = rhx().args(["view"]).arg(&traced).arg("--out").arg(&other).args(["--model", "tests/fixtures/tiny/llama3/model-f32.gguf"]).current_dir(root()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("sample `q</script>1`, step 0") && stderr.contains("270 argmax positions"), "{stderr}");
    assert!(!other.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
