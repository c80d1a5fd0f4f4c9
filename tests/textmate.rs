//! The TextMate grammar (`editors/rhx.tmLanguage.json`): the committed file is what
//! `rhx::lsp::textmate` generates (`RHX_UPDATE_DOCS=1` rewrites it), and its patterns, run by
//! Oniguruma (the regex engine of VS Code's TextMate tokenizer), give the expected scopes: every
//! keyword and literal of the pest grammar (read here from `grammar/rhx.pest` on its own), every
//! declaration kind, constructor and value function of the schema, comments, strings, numbers.
use onig::{Region, SearchOptions};
use rhx::lang::schema::{registry, Kind};
use rhx::lsp::textmate::{grammar_json, GRAMMAR_PATH};
use serde_json::Value;

#[test]
fn committed_grammar_is_generated() {
    let generated = grammar_json();
    if std::env::var_os("RHX_UPDATE_DOCS").is_some() {
        std::fs::write(GRAMMAR_PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(GRAMMAR_PATH).unwrap_or_default();
    assert!(committed == generated, "{GRAMMAR_PATH} is stale: run `RHX_UPDATE_DOCS=1 cargo test --release --test textmate`");
    // The VS Code manifest points at it under the same scope name.
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string("editors/package.json").unwrap()).unwrap();
    let g = &manifest["contributes"]["grammars"][0];
    assert_eq!(g["path"], "./rhx.tmLanguage.json");
    assert_eq!(g["scopeName"], serde_json::from_str::<Value>(&generated).unwrap()["scopeName"]);
}

/// A TextMate tokenizer for one line, enough for this grammar: `match` rules with captures and
/// `begin`/`end` rules with nested patterns; the earliest match wins, ties go to the first rule
/// (the end pattern before the nested ones). Returns the scopes over each byte.
struct Tokenizer {
    grammar: Value,
}

enum Rule<'g> {
    Match(&'g Value),
    End,
}

impl Tokenizer {
    fn new() -> Self {
        Tokenizer { grammar: serde_json::from_str(&grammar_json()).unwrap() }
    }

    fn resolve<'g>(&'g self, patterns: &'g Value) -> Vec<&'g Value> {
        patterns
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p["include"].as_str() {
                Some(inc) => &self.grammar["repository"][inc.trim_start_matches('#')],
                None => p,
            })
            .collect()
    }

    fn scopes(&self, line: &str) -> Vec<Vec<String>> {
        let mut out = vec![vec![]; line.len()];
        let mut stack: Vec<&Value> = vec![];
        let mut pos = 0;
        while pos <= line.len() {
            let mut candidates: Vec<(Rule, &str)> = vec![];
            let nested = match stack.last() {
                Some(r) => {
                    candidates.push((Rule::End, r["end"].as_str().unwrap()));
                    &r["patterns"]
                }
                None => &self.grammar["patterns"],
            };
            for r in self.resolve(nested) {
                let pat = r["match"].as_str().or(r["begin"].as_str()).unwrap();
                candidates.push((Rule::Match(r), pat));
            }
            let mut best: Option<(usize, Region, &Rule)> = None;
            for (rule, pat) in &candidates {
                let re = onig::Regex::new(pat).unwrap_or_else(|e| panic!("pattern {pat:?} is not Oniguruma: {e}"));
                let mut region = Region::new();
                if let Some(at) = re.search_with_options(line, pos, line.len(), SearchOptions::SEARCH_OPTION_NONE, Some(&mut region)) {
                    if best.as_ref().is_none_or(|(b, _, _)| at < *b) {
                        best = Some((at, region, rule));
                    }
                }
            }
            let Some((_, region, rule)) = best else { break };
            let (s, e) = region.pos(0).unwrap();
            let outer: Vec<String> = stack.iter().filter_map(|r| r["name"].as_str().map(String::from)).collect();
            for scopes in &mut out[pos..s] {
                scopes.extend(outer.iter().cloned());
            }
            let mut mark = |from: usize, to: usize, name: &str| {
                for scopes in &mut out[from..to] {
                    scopes.push(name.to_string());
                }
            };
            match rule {
                Rule::End => {
                    mark(s, e, &outer.join(" "));
                    stack.pop();
                }
                Rule::Match(r) => {
                    for o in &outer {
                        mark(s, e, o);
                    }
                    if let Some(name) = r["name"].as_str() {
                        mark(s, e, name);
                    }
                    if let Some(caps) = r["captures"].as_object() {
                        for (i, c) in caps {
                            if let Some((cs, ce)) = region.pos(i.parse().unwrap()) {
                                mark(cs, ce, c["name"].as_str().unwrap());
                            }
                        }
                    }
                    if r.get("begin").is_some() {
                        stack.push(r);
                    }
                }
            }
            pos = if e > pos { e } else { pos + 1 };
        }
        out
    }

    /// The scopes of `word`'s bytes (its first occurrence) in `line`.
    fn scope_of(&self, line: &str, word: &str) -> Vec<String> {
        let at = line.find(word).unwrap_or_else(|| panic!("`{word}` in `{line}`"));
        let all = self.scopes(line);
        let first = all[at].clone();
        for (i, s) in all[at..at + word.len()].iter().enumerate() {
            assert_eq!(*s, first, "`{word}` in `{line}` has one scope throughout (byte {i})");
        }
        first
    }
}

fn has(scopes: &[String], name: &str) -> bool {
    scopes.iter().any(|s| s.split(' ').any(|x| x == name))
}

#[test]
fn keywords_of_the_pest_grammar_and_names_of_the_schema_are_scoped() {
    let t = Tokenizer::new();
    let pest = std::fs::read_to_string("grammar/rhx.pest").unwrap();
    let kw = regex::Regex::new(r#"(?m)^kw_\w+\s*=\s*@\{\s*"(\w+)""#).unwrap();
    let keywords: Vec<&str> = kw.captures_iter(&pest).map(|c| c.get(1).unwrap().as_str()).collect();
    assert!(keywords.len() >= 6, "{keywords:?}");
    for k in &keywords {
        let line = format!("{k} x");
        assert!(has(&t.scope_of(&line, k), "keyword.control.rhx"), "keyword `{k}`: {:?}", t.scopes(&line));
    }
    let bools = regex::Regex::new(r#"(?m)^bool\s*=.*"(true)".*"(false)""#).unwrap().captures(&pest).expect("the bool rule");
    for b in [&bools[1], &bools[2]] {
        assert!(has(&t.scope_of(&format!("x: {b}"), b), "constant.language.rhx"), "{b}");
    }
    for k in Kind::ALL {
        let line = format!("  {} my_name = x", k.name());
        assert!(has(&t.scope_of(&line, k.name()), "storage.type.rhx"), "kind `{}`", k.name());
        assert!(has(&t.scope_of(&line, "my_name"), "entity.name.variable.rhx"));
    }
    let r = registry();
    let names: Vec<&str> = r.ctors.iter().map(|c| c.func.name).chain(r.funcs.iter().map(|(_, f)| f.name)).collect();
    for n in names {
        let line = format!("trace t = g(m, {n}(1), k: {n})");
        let scopes = t.scopes(&line);
        let first = line.find(&format!("{n}(")).unwrap();
        assert!(has(&scopes[first], "support.function.rhx"), "`{n}`: {:?}", scopes[first]);
        assert!(has(&scopes[line.rfind(n).unwrap()], "support.function.rhx"), "`{n}` as a bare value");
    }
}

#[test]
fn comments_strings_numbers_and_parameters_are_scoped() {
    let t = Tokenizer::new();
    let line = r#"dataset d = niah { needle: "a # not a comment {uuid} \" still", runs: 1_000, depths: 0.5e-1, lengths: 0..=20 step 5 }  # "not a string" 12"#;
    assert!(has(&t.scope_of(line, "# not a comment"), "string.quoted.double.rhx"));
    assert!(has(&t.scope_of(line, "{uuid}"), "variable.other.placeholder.rhx"));
    assert!(has(&t.scope_of(line, "{uuid}"), "string.quoted.double.rhx"));
    assert!(has(&t.scope_of(line, r#"\""#), "constant.character.escape.rhx"));
    assert!(has(&t.scope_of(line, " still"), "string.quoted.double.rhx"), "the escaped quote does not end the string");
    assert!(has(&t.scope_of(line, "# \"not a string\" 12"), "comment.line.number-sign.rhx"));
    assert!(!has(&t.scope_of(line, "# \"not a string\" 12"), "string.quoted.double.rhx"));
    for n in ["1_000", "0.5e-1", "20", "5"] {
        assert!(has(&t.scope_of(line, n), "constant.numeric.rhx"), "number `{n}`");
    }
    assert!(has(&t.scopes(line)[line.find("0..=").unwrap()], "constant.numeric.rhx"));
    assert!(has(&t.scope_of(line, "..="), "keyword.operator.rhx"));
    assert!(has(&t.scope_of(line, "step"), "keyword.control.rhx"));
    assert!(has(&t.scope_of(line, "needle"), "variable.parameter.rhx"));
    assert!(has(&t.scope_of(line, "niah"), "support.function.rhx"));
    // A parameter named like a keyword is a parameter; a name with a digit is not a number.
    let line = r#"experiment "x" { profile: "full" } model m2 = hf("x2")"#;
    assert!(has(&t.scope_of(line, "profile"), "variable.parameter.rhx"));
    assert!(has(&t.scope_of(line, "experiment"), "keyword.control.rhx"));
    assert!(!has(&t.scope_of(line, "m2"), "constant.numeric.rhx"));
    assert!(has(&t.scope_of("haystack: builtin.alice", "builtin.alice"), "support.constant.rhx"));
}
