//! `rhx lsp` driven as an editor drives it: the binary is spawned and spoken to in JSON-RPC with
//! Content-Length framing over stdin/stdout. Every expected text comes from the library the
//! server must agree with (the checker's messages and locations, the schema's docs, `rhx fmt`'s
//! output), and every read has a timeout, so a hung server fails the test instead of stalling.
//! The last test feeds every prefix of real experiments to the server's functions: a half-typed
//! file is the normal case in an editor and must never panic.
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use rhx::lang::schema::{registry, Family, Kind};
use rhx::lang::NoShapes;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Client {
    child: Child,
    stdin: ChildStdin,
    inbox: Receiver<Value>,
    /// Notifications read while waiting for something else.
    pending: Vec<Value>,
    next_id: i64,
}

impl Client {
    fn start(args: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rhx"))
            .arg("lsp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rhx lsp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, inbox) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return; // the server closed stdout
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = Some(v.parse::<usize>().expect("Content-Length is a number"));
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                r.read_exact(&mut body).expect("the whole body");
                let v: Value = serde_json::from_slice(&body).expect("the body is JSON");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Client { child, stdin, inbox, pending: vec![], next_id: 1 }
    }

    fn send(&mut self, v: Value) {
        let body = serde_json::to_string(&v).unwrap();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&mut self, what: &str) -> Value {
        self.inbox.recv_timeout(TIMEOUT).unwrap_or_else(|_| panic!("no {what} from rhx lsp within {TIMEOUT:?}"))
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let v = self.recv(method);
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
            self.pending.push(v);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next `publishDiagnostics` for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let is_it = |v: &Value| v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri;
        if let Some(i) = self.pending.iter().position(is_it) {
            return self.pending.remove(i)["params"]["diagnostics"].as_array().unwrap().clone();
        }
        loop {
            let v = self.recv("publishDiagnostics");
            if is_it(&v) {
                return v["params"]["diagnostics"].as_array().unwrap().clone();
            }
            self.pending.push(v);
        }
    }

    fn open(&mut self, uri: &str, text: &str) -> Vec<Value> {
        self.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": "rhx", "version": 1, "text": text}}));
        self.diagnostics(uri)
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) -> Vec<Value> {
        self.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}));
        self.diagnostics(uri)
    }

    fn at(&mut self, method: &str, uri: &str, (line, character): (usize, usize)) -> Value {
        self.request(method, json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}))
    }

    /// `shutdown`, `exit`, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        assert_eq!(self.request("shutdown", Value::Null), Value::Null);
        self.notify("exit", Value::Null);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > TIMEOUT {
                let _ = self.child.kill();
                panic!("rhx lsp did not exit after `exit`");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn uri_of(p: &Path) -> String {
    lsp_types::Url::from_file_path(std::path::absolute(p).unwrap()).unwrap().to_string()
}

/// (line, column) in LSP terms (0-based, UTF-16 units) of byte `offset` in `text`.
fn lsp_pos(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].encode_utf16().count())
}

/// The position of the `nth` occurrence (0-based) of `needle` in `text`, plus `delta` bytes.
fn pos_of(text: &str, needle: &str, delta: usize) -> (usize, usize) {
    lsp_pos(text, text.find(needle).unwrap_or_else(|| panic!("`{needle}` in the text")) + delta)
}

fn labels(v: &Value) -> Vec<String> {
    let items = if v.is_array() { v } else { &v["items"] };
    items.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap().to_string()).collect()
}

fn hover_text(v: &Value) -> String {
    v["contents"]["value"].as_str().unwrap_or_else(|| panic!("hover has Markdown contents: {v}")).to_string()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lsp").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn open_change_hover_complete_define_format_over_json_rpc() {
    let started = Instant::now();
    let mut c = Client::start(&["--no-models"]);
    let init = c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    let caps = &init["capabilities"];
    for cap in ["hoverProvider", "completionProvider", "definitionProvider", "documentFormattingProvider"] {
        assert!(!caps[cap].is_null(), "capability {cap} announced: {caps}");
    }
    assert_eq!(init["serverInfo"]["name"], "rhx");
    c.notify("initialized", json!({}));

    // A real experiment checks: no diagnostics.
    let path = Path::new("experiments/niah_smoke.rhx");
    let uri = uri_of(path);
    let good = std::fs::read_to_string(path).unwrap();
    assert_eq!(c.open(&uri, &good), Vec::<Value>::new());

    // An error typed after an emoji on the same line: the checker's message, at the checker's
    // line, with the column in UTF-16 units (the emoji is one character, two units).
    let bad = good.replace("runs: 2,", "question: \"Wh😀t is the magic word?\", runs: 0,");
    let diags = c.change(&uri, 2, &bad);
    let expected = rhx::lang::check_str(&path.display().to_string(), path, &bad, &[], &NoShapes).unwrap_err();
    assert_eq!(diags.len(), expected.len(), "{diags:?}");
    let d = &diags[0];
    let loc = expected[0].location.clone().unwrap();
    assert!(d["message"].as_str().unwrap().starts_with(&expected[0].message), "{d}");
    assert_eq!(d["code"], expected[0].code.as_str());
    let zero = bad.find("runs: 0").unwrap() + "runs: ".len();
    assert_eq!(d["range"]["start"], json!({"line": loc.line - 1, "character": loc.col}), "col {} + 1 for the emoji's second unit", loc.col);
    assert_eq!(d["range"]["start"], json!({"line": lsp_pos(&bad, zero).0, "character": lsp_pos(&bad, zero).1}));
    assert_eq!(d["severity"], 1);

    // Half-typed text: a syntax error, and the server keeps serving.
    let cut = &good[..good.find("trace base").unwrap() + "trace base = generate(smol, ".len()];
    let diags = c.change(&uri, 3, cut);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "syntax");

    // Back to the good text: diagnostics cleared.
    assert_eq!(c.change(&uri, 4, &good), Vec::<Value>::new());

    // Hover: a constructor, a parameter, an enum value, a declaration kind — the schema's text.
    let r = registry();
    let generate = r.ctor(Kind::Trace, "generate").unwrap();
    let h = hover_text(&c.at("textDocument/hover", &uri, pos_of(&good, "= generate(", 3)));
    assert!(h.contains(generate.doc) && h.contains(&generate.doc_table()), "{h}");
    let max_new = generate.param("max_new_tokens").unwrap();
    let h = hover_text(&c.at("textDocument/hover", &uri, pos_of(&good, "max_new_tokens", 2)));
    assert!(h.contains(max_new.doc) && h.contains(&max_new.ty.describe()), "{h}");
    let length_mode = r.ctor(Kind::Dataset, "niah").unwrap().param("length_mode").unwrap();
    let h = hover_text(&c.at("textDocument/hover", &uri, pos_of(&good, "haystack_exact", 1)));
    assert!(h.contains("haystack_exact") && h.contains(length_mode.doc), "{h}");
    let h = hover_text(&c.at("textDocument/hover", &uri, pos_of(&good, "\nheads static", 1)));
    assert!(h.contains(Kind::Heads.doc()), "{h}");

    // Completion after `=`: the constructors of the declaration's kind, and only those.
    let typed = format!("{good}heads h = ");
    c.change(&uri, 5, &typed);
    let got = labels(&c.at("textDocument/completion", &uri, lsp_pos(&typed, typed.len())));
    let want: Vec<String> = r.ctors_of(Kind::Heads).map(|f| f.name.to_string()).collect();
    assert_eq!(got, want);
    // … inside a constructor's block: its parameters (those not given yet), with their docs.
    let typed = format!("{good}trace t2 = generate(smol, niah) {{ max_new_tokens: 4, ca");
    c.change(&uri, 6, &typed);
    let got = c.at("textDocument/completion", &uri, lsp_pos(&typed, typed.len()));
    let want: Vec<String> = generate.params.iter().map(|p| p.name.to_string()).filter(|n| n != "max_new_tokens").collect();
    assert_eq!(labels(&got), want);
    let capture = got.as_array().unwrap().iter().find(|i| i["label"] == "capture").unwrap();
    assert!(capture["documentation"]["value"].as_str().unwrap().contains(generate.param("capture").unwrap().doc));
    // … after `param:`: its enum values.
    let typed = format!("{good}model m2 = gguf(\"x.gguf\") {{ dtype: ");
    c.change(&uri, 7, &typed);
    let got = labels(&c.at("textDocument/completion", &uri, lsp_pos(&typed, typed.len())));
    assert_eq!(got, ["f32", "bf16", "f16"]);
    // … and a parameter that takes a head set: the declared head sets and its constructors.
    let typed = format!("{good}table t3 = dynamism(base, ");
    c.change(&uri, 8, &typed);
    let got = labels(&c.at("textDocument/completion", &uri, lsp_pos(&typed, typed.len())));
    assert!(got.contains(&"static".to_string()) && got.contains(&"dynamic".to_string()) && !got.contains(&"base".to_string()), "{got:?}");
    // … inside a list of value functions: the functions, documented as in docs/LANGUAGE.md.
    let typed = format!("{good}trace t4 = generate(smol, niah) {{ capture: [");
    c.change(&uri, 9, &typed);
    let got = labels(&c.at("textDocument/completion", &uri, lsp_pos(&typed, typed.len())));
    let want: Vec<String> = r.funcs_of(Family::Capture).map(|f| f.name.to_string()).collect();
    assert_eq!(got, want);
    let typed = format!("{typed}retrieval(reasoning, top: 5)] }}\n");
    c.change(&uri, 10, &typed);
    let retrieval = r.func(Family::Capture, "retrieval").unwrap();
    let h = hover_text(&c.at("textDocument/hover", &uri, pos_of(&typed, "retrieval(reasoning", 2)));
    assert!(h.contains(retrieval.doc) && h.contains(&retrieval.doc_table()), "{h}");
    let h = hover_text(&c.at("textDocument/hover", &uri, pos_of(&typed, "top: 5", 1)));
    assert!(h.contains(retrieval.param("top").unwrap().doc), "{h}");
    c.change(&uri, 11, &good);

    // Definition of a name used as an argument: its declaration.
    let def = c.at("textDocument/definition", &uri, pos_of(&good, "generate(smol", "generate(".len() + 1));
    assert_eq!(def["uri"], uri);
    let (l, ch) = pos_of(&good, "model smol", "model ".len());
    assert_eq!(def["range"], json!({"start": {"line": l, "character": ch}, "end": {"line": l, "character": ch + 4}}));

    // Definition across an import, and of the import itself.
    let dir = tmp_dir("imports");
    std::fs::write(dir.join("common.rhx"), "# shared\nmodel tiny = gguf(\"smollm2-135m-instruct\") { device: cpu }\ndataset d = niah { lengths: [64], runs: 1 }\n").unwrap();
    let main_text = "import \"common.rhx\"\ntrace t = generate(tiny, d) { max_new_tokens: 2 }\n";
    std::fs::write(dir.join("main.rhx"), main_text).unwrap();
    let main_uri = uri_of(&dir.join("main.rhx"));
    assert_eq!(c.open(&main_uri, main_text), Vec::<Value>::new());
    let def = c.at("textDocument/definition", &main_uri, pos_of(main_text, "tiny", 1));
    assert_eq!(def["uri"], uri_of(&dir.join("common.rhx")));
    assert_eq!(def["range"]["start"], json!({"line": 1, "character": 6}));
    let def = c.at("textDocument/definition", &main_uri, pos_of(main_text, "common", 0));
    assert_eq!(def["uri"], uri_of(&dir.join("common.rhx")));
    // A mistake in the imported file is shown on the import, naming the place.
    let broken = "import \"common.rhx\"\ntrace t = generate(tiny, d) { max_new_tokens: 2 }\n";
    std::fs::write(dir.join("common.rhx"), "# shared\nmodel tiny = gguf(\"smollm2-135m-instruct\") { dtype: f33 }\ndataset d = niah { lengths: [64], runs: 1 }\n").unwrap();
    let diags = c.change(&main_uri, 2, broken);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0]["message"].as_str().unwrap().contains("common.rhx:2:"), "{}", diags[0]);
    assert_eq!(diags[0]["range"]["start"], json!({"line": 0, "character": 7}));
    assert_eq!(diags[0]["relatedInformation"][0]["location"]["uri"], uri_of(&dir.join("common.rhx")));

    // Formatting: exactly what `rhx fmt` writes.
    let messy = "model   smol=gguf( \"smollm2-135m-instruct\" ){dtype:f32,device:cpu}\ndataset niah = niah {lengths: [500,1000], runs: 2}  # two\n";
    let file = dir.join("messy.rhx");
    std::fs::write(&file, messy).unwrap();
    let furi = uri_of(&file);
    c.open(&furi, messy);
    let edits = c.request("textDocument/formatting", json!({"textDocument": {"uri": furi}, "options": {"tabSize": 2, "insertSpaces": true}}));
    let out = Command::new(env!("CARGO_BIN_EXE_rhx")).arg("fmt").arg(&file).output().unwrap();
    assert!(out.status.success());
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_ne!(formatted, messy);
    assert_eq!(edits.as_array().unwrap().len(), 1);
    assert_eq!(edits[0]["newText"], formatted);
    assert_eq!(edits[0]["range"], json!({"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}}));

    let status = c.stop();
    assert!(status.success(), "exit status {status}");
    eprintln!("lsp session: {:?}", started.elapsed());
}

/// Every prefix of real experiments (a file being typed from the top): checking, completion,
/// hover and definition at the cursor return without panicking, and the whole file checks.
#[test]
fn every_prefix_of_real_experiments_is_handled() {
    let started = Instant::now();
    let mut n = 0;
    for file in ["experiments/niah_smoke.rhx", "experiments/section5.rhx", "tests/lang/valid/sweeps.rhx"] {
        let path = Path::new(file);
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(rhx::lsp::diagnostics::check_document(path, &text, &NoShapes), vec![], "{file} checks");
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let prefix = &text[..end];
            // Checking is the expensive part; every third prefix, and each one ending a token.
            if end % 3 == 0 || prefix.ends_with(|c: char| !c.is_alphanumeric()) {
                let _ = rhx::lsp::diagnostics::check_document(path, prefix, &NoShapes);
            }
            let _ = rhx::lsp::completion::complete(path, prefix, end);
            let _ = rhx::lsp::hover::hover(path, prefix, end.saturating_sub(1));
            let _ = rhx::lsp::definition::definition(path, prefix, end.saturating_sub(1));
            let _ = rhx::lsp::formatting::format(prefix);
            n += 1;
        }
    }
    eprintln!("{n} prefixes in {:?}", started.elapsed());
}

/// The error-tolerant scan of half-typed text: what each open bracket belongs to.
#[test]
fn scan_owners_of_blocks_calls_and_lists() {
    use rhx::lsp::scan::{Callee, Doc, Owner};
    let doc = Doc::new("trace t = generate(m, d) { capture: [retrieval(copy_paste, ");
    let owners: Vec<Owner> = doc.frames(doc.toks.len()).iter().map(|f| f.owner).collect();
    assert_eq!(
        owners,
        vec![
            Owner::Params(Callee::Ctor(Kind::Trace, "generate")),
            Owner::ListOf(Callee::Ctor(Kind::Trace, "generate"), "capture"),
            Owner::Params(Callee::Func(Family::Capture, "retrieval")),
        ]
    );
}

#[test]
fn scan_declarations_imports_and_sweep_variables() {
    use rhx::lsp::scan::{declarations, Doc};
    let text = "import \"common.rhx\"\nmodel m = gguf(\"x\") { dtype: f32 }\nsweep k in [1, 2], mode in [a, b] {\n  trace t = generate(m, d)\n}\ntable x = scores(t)\n";
    let (decls, imports) = declarations(&Doc::new(text));
    let names: Vec<(&str, Option<Kind>)> = decls.iter().map(|d| (d.name.as_str(), d.kind)).collect();
    assert_eq!(names, vec![("m", Some(Kind::Model)), ("k", None), ("mode", None), ("t", Some(Kind::Trace)), ("x", Some(Kind::Table))]);
    assert_eq!(imports.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), ["common.rhx"]);
}

#[test]
fn scan_survives_unterminated_strings_and_stray_characters() {
    use rhx::lsp::scan::{tokens, Tok};
    let kinds: Vec<Tok> = tokens("a = \"open\nb = é 1.5e-3 0..=20").iter().map(|t| t.tok).collect();
    assert_eq!(kinds, [Tok::Ident, Tok::Punct, Tok::Str, Tok::Ident, Tok::Punct, Tok::Number, Tok::Number, Tok::Punct, Tok::Number]);
}

/// Byte offsets ↔ LSP positions count columns in UTF-16 units, both ways.
#[test]
fn positions_count_utf16_units() {
    use lsp_types::Position;
    use rhx::lsp::position::LineIndex;
    let text = "# é😀\nmodel m = x\n";
    let ix = LineIndex::new(text);
    let m = text.find("model").unwrap();
    assert_eq!(ix.position(m), Position::new(1, 0));
    // `é`: 2 bytes, 1 unit; `😀`: 4 bytes, 2 units.
    assert_eq!(ix.position(text.find('\n').unwrap()), Position::new(0, 5));
    assert_eq!(ix.offset(Position::new(0, 5)), text.find('\n').unwrap());
    assert_eq!(ix.offset(Position::new(0, 3)), text.find('😀').unwrap());
    assert_eq!(ix.offset(Position::new(0, 4)), text.find('😀').unwrap(), "the middle of a surrogate pair is its character");
    assert_eq!(ix.offset(Position::new(1, 6)), m + 6);
    assert_eq!(ix.offset(Position::new(1, 99)), text.len() - 1);
    assert_eq!(ix.offset(Position::new(9, 0)), text.len());
}
