//! Chat templates: a model's own Jinja template rendered with minijinja the way HF's
//! `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders it with
//! jinja2 (`transformers.utils.chat_template_utils`).
//!
//! HF's environment is an `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[AssistantTracker, loopcontrols])` with `tojson` replaced by
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` and the
//! globals `raise_exception`, `strftime_now`, `dict`, `namespace`. The template sees
//! `messages`, `tools=None`, `documents=None`, `add_generation_prompt` and the tokenizer's
//! special tokens map (`bos_token`, `eos_token`, ...) plus any extra keyword arguments.
//!
//! On top of minijinja this module adds what jinja2 does differently and templates rely on:
//! Python's string methods (via `minijinja_contrib::pycompat`, with `strip`/`split`/`find`...
//! reimplemented with Python's exact semantics), Python's printing of values (`None`, `True`,
//! `1e-07`), HF's `tojson`, jinja2's `trim` and `string` filters, and the `{% generation %}`
//! block (rendered as its body).
//!
//! Known gaps: `strftime_now` formats the current time in UTC (Python uses local time); the
//! `~` operator and `join` stringify `none`/booleans the minijinja way (`none`, `true`);
//! JSON objects passed in `extra` arrive with sorted keys (serde_json's map), so a template
//! printing them with `tojson` shows them sorted, where Python keeps insertion order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, Value};

use crate::engine::tokenizer::{py_isspace, Tokenizer, TokenizerError};
use crate::support::pyrepr::py_float_repr;

/// One chat message. Deserialises from `{"role": ..., "content": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template does not compile.
    #[error("chat template does not parse: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)` (e.g. roles that do not alternate).
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    #[error("rendering the chat template failed: {0}")]
    Render(String),
    #[error("{}: the tokenizer has no chat template", .0.display())]
    NoTemplate(std::path::PathBuf),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Marker carried as the source of the error `raise_exception` returns.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn chat_error(e: Error) -> ChatError {
    // raise_exception's message, wherever in the chain it is.
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<Raised>() {
            return ChatError::Raised(r.0.clone());
        }
        src = s.source();
    }
    match e.kind() {
        ErrorKind::SyntaxError => ChatError::Syntax(format!("{e:#}")),
        _ => ChatError::Render(format!("{e:#}")),
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    pub fn new(template: &str) -> Result<Self, ChatError> {
        let mut env = hf_environment();
        env.add_template_owned("chat_template", rewrite_generation_blocks(template))
            .map_err(chat_error)?;
        Ok(ChatTemplate { env })
    }

    /// Renders like HF's `apply_chat_template(messages, tokenize=False, ...)`; `extra` are the
    /// template keyword arguments (special tokens such as `bos_token`, `enable_thinking`, ...).
    /// `extra` may override `tools` / `documents` (both `None` by default).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String, ChatError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_iter([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let mut ctx: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(msgs)),
            ("tools".into(), Value::from(())),
            ("documents".into(), Value::from(())),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
        ];
        for (k, v) in extra {
            let v = json_to_value(v);
            match ctx.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v,
                None => ctx.push((k.clone(), v)),
            }
        }
        let ctx = Value::from_iter(ctx);
        let tmpl = self.env.get_template("chat_template").map_err(chat_error)?;
        tmpl.render(ctx).map_err(chat_error)
    }
}

/// Renders `template` for `messages` (see [`ChatTemplate::render`]).
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extra: &BTreeMap<String, serde_json::Value>,
) -> Result<String, ChatError> {
    ChatTemplate::new(template)?.render(messages, add_generation_prompt, extra)
}

/// HF's `tokenizer.apply_chat_template(messages, tokenize=False, ...)`: the tokenizer's own
/// template with its special tokens map, overridden by `extra`.
pub fn apply_chat_template(
    tokenizer: &Tokenizer,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extra: &BTreeMap<String, serde_json::Value>,
) -> Result<String, ChatError> {
    let template = tokenizer
        .chat_template
        .as_deref()
        .ok_or_else(|| ChatError::NoTemplate(tokenizer.source.clone()))?;
    let mut kwargs = tokenizer.template_kwargs();
    kwargs.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    render_chat(template, messages, add_generation_prompt, &kwargs)
}

/// HF's `apply_chat_template(..., tokenize=True)`: the rendering encoded without adding special
/// tokens (the template writes them itself).
pub fn apply_chat_template_ids(
    tokenizer: &Tokenizer,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extra: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<u32>, ChatError> {
    let text = apply_chat_template(tokenizer, messages, add_generation_prompt, extra)?;
    Ok(tokenizer.encode_ids(&text, false)?)
}

/// The environment HF renders chat templates in, rebuilt on minijinja.
pub fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(py_method);
    env.set_formatter(|out, _state, value| {
        out.write_str(&py_str(value))
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write output"))
    });
    env.add_filter("tojson", tojson_filter);
    env.add_filter("trim", trim_filter);
    env.add_filter("string", |v: Value| py_str(&v));
    env.add_function(
        "raise_exception",
        |message: Value| -> Result<Value, Error> {
            let message = py_str(&message);
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(Raised(message)))
        },
    );
    env.add_function("strftime_now", |format: String| {
        strftime(&format, now_utc())
    });
    env
}

/// `{% generation %}...{% endgeneration %}` (HF's AssistantTracker extension) becomes
/// `{% if true %}...{% endif %}`, keeping the whitespace-control markers.
fn rewrite_generation_blocks(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (lead, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[body.len() - 1..]),
            None => (body, ""),
        };
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => write!(out, "{{%{lead} {r} {trail}%}}").unwrap(),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            Value::from_iter(o.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Python's str() / repr()


/// Python's `repr(str)`.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                write!(out, "\\x{:02x}", c as u32).unwrap()
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn py_repr(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => py_repr_str(v.as_str().unwrap_or_default()),
        _ => py_str(v),
    }
}

/// Python's `str()` of a template value, as jinja2 prints it (`None`, `True`, `[1, 'a']`).
pub fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::String => v.as_str().unwrap_or_default().to_owned(),
        ValueKind::Number => match f64::try_from(v.clone()) {
            Ok(f) if !v.is_integer() => py_float_repr(f),
            _ => v.to_string(),
        },
        ValueKind::Seq => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|x| py_repr(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let mut items = Vec::new();
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    let val = v.get_item(&k).unwrap_or_default();
                    items.push(format!("{}: {}", py_repr(&k), py_repr(&val)));
                }
            }
            format!("{{{}}}", items.join(", "))
        }
        _ => v.to_string(),
    }
}

// ------------------------------------------------------------------------------------------------
// Filters

/// jinja2's `trim(value, chars=None)`: Python's `str.strip`.
fn trim_filter(v: Value, chars: Option<String>) -> String {
    py_strip(&py_str(&v), chars.as_deref(), true, true).to_owned()
}

fn py_strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let matcher = |c: char| match chars {
        Some(set) => set.contains(c),
        None => py_isspace(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(matcher);
    }
    if right {
        out = out.trim_end_matches(matcher);
    }
    out
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson_filter(value: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let mut ensure_ascii = false;
    let mut indent: Option<String> = None;
    let mut separators: Option<(String, String)> = None;
    let mut sort_keys = false;
    let positional = ["ensure_ascii", "indent", "separators", "sort_keys"];
    let mut params: Vec<(&str, Value)> = args
        .0
        .iter()
        .cloned()
        .zip(positional)
        .map(|(v, n)| (n, v))
        .collect();
    if args.0.len() > positional.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 positional arguments",
        ));
    }
    for name in positional {
        if kwargs.has(name) {
            params.push((name, kwargs.get::<Value>(name)?));
        }
    }
    kwargs.assert_all_used()?;
    for (name, v) in params {
        match name {
            "ensure_ascii" => ensure_ascii = v.is_true(),
            "sort_keys" => sort_keys = v.is_true(),
            "indent" => {
                indent = match v.kind() {
                    ValueKind::None | ValueKind::Undefined => None,
                    ValueKind::String => Some(v.as_str().unwrap_or_default().to_owned()),
                    ValueKind::Number => Some(" ".repeat(v.as_i64().unwrap_or(0).max(0) as usize)),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            "tojson: indent must be an int or a string",
                        ))
                    }
                }
            }
            "separators" => {
                if !v.is_none() && !v.is_undefined() {
                    let parts: Vec<Value> = v.try_iter()?.collect();
                    if parts.len() != 2 {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            "tojson: separators must be a pair",
                        ));
                    }
                    separators = Some((py_str(&parts[0]), py_str(&parts[1])));
                }
            }
            _ => unreachable!(),
        }
    }
    let (item_sep, key_sep) = separators.unwrap_or_else(|| {
        (
            if indent.is_some() {
                ",".into()
            } else {
                ", ".into()
            },
            ": ".into(),
        )
    });
    let opts = JsonOpts {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    json_dump(&value, &opts, 0, &mut out)?;
    Ok(out)
}

struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    write!(out, "\\u{:04x}", unit).unwrap();
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        py_float_repr(f)
    }
}

fn json_key(k: &Value, opts: &JsonOpts) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number => {
            let mut s = String::new();
            json_dump(k, opts, 0, &mut s)?;
            s
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: keys must be str, int, float, bool or None, not {}",
                    k.kind()
                ),
            ))
        }
    })
}

fn json_dump(v: &Value, opts: &JsonOpts, level: usize, out: &mut String) -> Result<(), Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string())
            } else {
                out.push_str(&json_float(f64::try_from(v.clone()).unwrap_or(f64::NAN)))
            }
        }
        ValueKind::String => json_str(v.as_str().unwrap_or_default(), opts.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, level + 1);
                json_dump(item, opts, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs: Vec<(String, Value)> = Vec::new();
            for k in v.try_iter()? {
                let val = v.get_item(&k)?;
                pairs.push((json_key(&k, opts)?, val));
            }
            if opts.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, val)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, level + 1);
                json_str(k, opts.ensure_ascii, out);
                out.push_str(&opts.key_sep);
                json_dump(val, opts, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "tojson: Object of type Undefined is not JSON serializable",
            ))
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: Object of type {other} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Python methods

/// Python string methods with Python's semantics where minijinja-contrib's differ (whitespace
/// set, character indices, `split()` without separator), then minijinja-contrib's pycompat.
fn py_method(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let arg_str = |i: usize| -> Result<Option<String>, Error> {
            match args.get(i) {
                None => Ok(None),
                Some(v) if v.is_none() || v.is_undefined() => Ok(None),
                Some(v) => v.as_str().map(|x| Some(x.to_owned())).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{method}: expected a string argument"),
                    )
                }),
            }
        };
        let arg_int = |i: usize| -> Result<Option<i64>, Error> {
            match args.get(i) {
                None => Ok(None),
                Some(v) if v.is_none() => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{method}: expected an integer argument"),
                    )
                }),
            }
        };
        match method {
            "strip" | "lstrip" | "rstrip" => {
                let chars = arg_str(0)?;
                let (l, r) = match method {
                    "strip" => (true, true),
                    "lstrip" => (true, false),
                    _ => (false, true),
                };
                return Ok(Value::from(py_strip(s, chars.as_deref(), l, r)));
            }
            "split" | "rsplit" => {
                let sep = arg_str(0)?;
                let maxsplit = arg_int(1)?.unwrap_or(-1);
                let parts = py_split(s, sep.as_deref(), maxsplit, method == "rsplit")?;
                return Ok(Value::from(parts));
            }
            "find" | "rfind" | "index" | "rindex" => {
                let needle = arg_str(0)?.unwrap_or_default();
                let found = if method.starts_with('r') {
                    s.rfind(&needle)
                } else {
                    s.find(&needle)
                };
                return match found {
                    Some(b) => Ok(Value::from(s[..b].chars().count() as i64)),
                    None if method.ends_with("find") => Ok(Value::from(-1i64)),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "substring not found",
                    )),
                };
            }
            "isspace" => {
                return Ok(Value::from(!s.is_empty() && s.chars().all(py_isspace)));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.split` / `str.rsplit`.
fn py_split(
    s: &str,
    sep: Option<&str>,
    maxsplit: i64,
    from_right: bool,
) -> Result<Vec<String>, Error> {
    let limit = if maxsplit < 0 {
        usize::MAX
    } else {
        maxsplit as usize
    };
    match sep {
        Some("") => Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
        Some(sep) => {
            let mut parts: Vec<String> = if from_right {
                let mut v: Vec<String> = s
                    .rsplitn(limit.saturating_add(1), sep)
                    .map(str::to_owned)
                    .collect();
                v.reverse();
                v
            } else {
                s.splitn(limit.saturating_add(1), sep)
                    .map(str::to_owned)
                    .collect()
            };
            if parts.is_empty() {
                parts.push(String::new());
            }
            Ok(parts)
        }
        None => {
            // Runs of whitespace separate; leading/trailing whitespace gives no empty strings.
            let chars: Vec<char> = s.chars().collect();
            let mut parts = Vec::new();
            if !from_right {
                let mut i = 0;
                while i < chars.len() {
                    while i < chars.len() && py_isspace(chars[i]) {
                        i += 1;
                    }
                    if i >= chars.len() {
                        break;
                    }
                    if parts.len() == limit {
                        let rest: String = chars[i..].iter().collect();
                        parts.push(rest);
                        break;
                    }
                    let start = i;
                    while i < chars.len() && !py_isspace(chars[i]) {
                        i += 1;
                    }
                    parts.push(chars[start..i].iter().collect());
                }
            } else {
                let mut i = chars.len();
                while i > 0 {
                    while i > 0 && py_isspace(chars[i - 1]) {
                        i -= 1;
                    }
                    if i == 0 {
                        break;
                    }
                    if parts.len() == limit {
                        parts.push(chars[..i].iter().collect());
                        break;
                    }
                    let end = i;
                    while i > 0 && !py_isspace(chars[i - 1]) {
                        i -= 1;
                    }
                    parts.push(chars[i..end].iter().collect());
                }
                parts.reverse();
            }
            Ok(parts)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// strftime_now

/// (year, month 1-12, day 1-31, hour, minute, second, weekday 0=Monday, day of year 1-366)
type Civil = (i64, u32, u32, u32, u32, u32, u32, u32);

fn now_utc() -> Civil {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    civil_from_unix(secs)
}

/// Unix seconds to the proleptic Gregorian calendar in UTC (Howard Hinnant's algorithm).
fn civil_from_unix(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let d = (doy_mar - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if m <= 2 { y + 1 } else { y };
    let weekday = ((days + 3).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday (3)
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + u32::from(leap && m > 2);
    (
        year,
        m,
        d,
        (sod / 3600) as u32,
        ((sod % 3600) / 60) as u32,
        (sod % 60) as u32,
        weekday,
        yday,
    )
}

/// Python's `strftime` for the C-locale directives templates use.
fn strftime(format: &str, t: Civil) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let (year, month, day, hour, minute, second, weekday, yday) = t;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => write!(out, "{year}").unwrap(),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)).unwrap(),
            Some('m') => write!(out, "{month:02}").unwrap(),
            Some('d') => write!(out, "{day:02}").unwrap(),
            Some('e') => write!(out, "{day:>2}").unwrap(),
            Some('-') => match chars.next() {
                Some('d') => write!(out, "{day}").unwrap(),
                Some('m') => write!(out, "{month}").unwrap(),
                Some('H') => write!(out, "{hour}").unwrap(),
                Some(o) => write!(out, "%-{o}").unwrap(),
                None => out.push_str("%-"),
            },
            Some('b') | Some('h') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('a') => out.push_str(&DAYS[weekday as usize][..3]),
            Some('A') => out.push_str(DAYS[weekday as usize]),
            Some('w') => write!(out, "{}", (weekday + 1) % 7).unwrap(),
            Some('u') => write!(out, "{}", weekday + 1).unwrap(),
            Some('j') => write!(out, "{yday:03}").unwrap(),
            Some('H') => write!(out, "{hour:02}").unwrap(),
            Some('I') => write!(out, "{:02}", if hour % 12 == 0 { 12 } else { hour % 12 }).unwrap(),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('M') => write!(out, "{minute:02}").unwrap(),
            Some('S') => write!(out, "{second:02}").unwrap(),
            Some('F') => write!(out, "{year}-{month:02}-{day:02}").unwrap(),
            Some('D') => write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100)).unwrap(),
            Some('T') => write!(out, "{hour:02}:{minute:02}:{second:02}").unwrap(),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0, 3, 1));
        // 2024-07-26 12:34:56 UTC was a Friday, day 208 of a leap year.
        assert_eq!(
            civil_from_unix(1_721_997_296),
            (2024, 7, 26, 12, 34, 56, 4, 208)
        );
        assert_eq!(
            strftime("%d %b %Y", civil_from_unix(1_721_997_296)),
            "26 Jul 2024"
        );
        assert_eq!(
            strftime("%A %B %-d %H:%M %p %j %%", civil_from_unix(1_721_997_296)),
            "Friday July 26 12:34 PM 208 %"
        );
    }

    #[test]
    fn python_split() {
        let f = |s: &str, sep: Option<&str>, n: i64, r: bool| py_split(s, sep, n, r).unwrap();
        assert_eq!(f("  a  b\tc \n", None, -1, false), ["a", "b", "c"]);
        assert_eq!(f(" a b c ", None, 1, false), ["a", "b c "]);
        assert_eq!(f(" a b c ", None, 1, true), [" a b", "c"]);
        assert_eq!(f("a,b,,c", Some(","), -1, false), ["a", "b", "", "c"]);
        assert_eq!(f("a b c d", Some(" "), 2, false), ["a", "b", "c d"]);
        assert_eq!(f("a b c d", Some(" "), 2, true), ["a b", "c", "d"]);
        assert_eq!(f("", Some(","), -1, false), [""]);
        assert!(f("", None, -1, false).is_empty());
    }

    #[test]
    fn generation_blocks() {
        assert_eq!(
            rewrite_generation_blocks("a{%- generation %}b{% endgeneration -%}c{{ x }}{% if y %}"),
            "a{%- if true %}b{% endif -%}c{{ x }}{% if y %}"
        );
    }
}
