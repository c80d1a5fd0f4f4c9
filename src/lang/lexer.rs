//! A small scanner that runs before the pest parser. It records comments (the formatter keeps
//! them) and rejects, with precise spans, what pest would report vaguely: unterminated strings,
//! invalid escapes, characters that cannot appear in `.rhx`, unbalanced or too deeply nested
//! brackets.
use super::diagnostics::{Code, Diagnostic};
use super::source::{FileId, Span};

/// A `# ...` comment (without the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Deepest bracket nesting accepted (keeps every recursive stage far from the stack limit).
pub const MAX_DEPTH: usize = 48;

/// Scans `text`; returns its comments, or the first lexical error.
pub fn scan(file: FileId, text: &str) -> Result<Vec<Comment>, Diagnostic> {
    let bytes = text.as_bytes();
    let mut comments = vec![];
    let mut stack: Vec<(u8, usize)> = vec![];
    let mut i = 0;
    let sp = |s: usize, e: usize| Span::new(file, s, e);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => {
                let end = text[i..].find('\n').map(|j| i + j).unwrap_or(text.len());
                comments.push(Comment {
                    start: i,
                    end,
                    text: text[i..end].trim_end().to_string(),
                });
                i = end;
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => {
                            return Err(Diagnostic::new(Code::Syntax, sp(start, i), "unterminated string")
                                .label("this string is never closed")
                                .help("close it with `\"` on the same line; write a line break inside a string as `\\n`"));
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let esc_len = escape_len(&text[i..]).map_err(|len| {
                                let end = super::source::floor_char_boundary(
                                    text,
                                    (i + len.max(2)).min(text.len()),
                                );
                                let shown = &text[i..end];
                                Diagnostic::new(
                                    Code::Syntax,
                                    sp(i, i + shown.len()),
                                    format!("invalid escape `{shown}` in string"),
                                )
                                .label("not a valid escape")
                                .help("valid escapes: \\\" \\\\ \\n \\t \\r \\0 \\u{hex}")
                            })?;
                            i += esc_len;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'{' | b'[' | b'(' => {
                stack.push((b, i));
                if stack.len() > MAX_DEPTH {
                    return Err(Diagnostic::new(
                        Code::Syntax,
                        sp(i, i + 1),
                        format!("brackets nested more than {MAX_DEPTH} deep"),
                    )
                    .label("too deep"));
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                let want = match b {
                    b'}' => b'{',
                    b']' => b'[',
                    _ => b'(',
                };
                match stack.pop() {
                    Some((open, _)) if open == want => {}
                    Some((open, at)) => {
                        return Err(Diagnostic::new(
                            Code::Syntax,
                            sp(i, i + 1),
                            format!(
                                "mismatched `{}`: expected `{}` to close the `{}`",
                                b as char,
                                closer(open) as char,
                                open as char
                            ),
                        )
                        .label(format!("expected `{}`", closer(open) as char))
                        .note(sp(at, at + 1), "opened here"));
                    }
                    None => {
                        return Err(Diagnostic::new(
                            Code::Syntax,
                            sp(i, i + 1),
                            format!("unexpected `{}`", b as char),
                        )
                        .label("nothing to close here"));
                    }
                }
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' | b'=' | b':' | b',' | b'.' | b'-' | b'+' | b'_' => i += 1,
            b if b.is_ascii_alphanumeric() => i += 1,
            _ => {
                let c = text[i..].chars().next().unwrap_or('?');
                if c == '\u{FEFF}' {
                    i += c.len_utf8();
                    continue;
                }
                let mut d = Diagnostic::new(
                    Code::Syntax,
                    sp(i, i + c.len_utf8()),
                    format!("unexpected character `{}`", super::parser::show_char(c)),
                )
                .label("not allowed here");
                d = match c {
                    '\'' => d.help("strings use double quotes: \"...\""),
                    ';' => d.help("separate parameters with `,`; declarations need no separator"),
                    '/' => d.help("comments start with `#`"),
                    _ => d.help(
                        "names are ASCII letters, digits and `_`; other text goes in a \"string\"",
                    ),
                };
                return Err(d);
            }
        }
    }
    if let Some((open, at)) = stack.pop() {
        return Err(Diagnostic::new(
            Code::Syntax,
            sp(at, at + 1),
            format!("unclosed `{}`", open as char),
        )
        .label(format!("this `{}` is never closed", open as char))
        .help(format!("add `{}`", closer(open) as char)));
    }
    Ok(comments)
}

fn closer(open: u8) -> u8 {
    match open {
        b'{' => b'}',
        b'[' => b']',
        _ => b')',
    }
}

/// Length in bytes of the escape at the start of `s` (which starts with `\`), or the length of
/// the invalid escape as an error.
fn escape_len(s: &str) -> Result<usize, usize> {
    let mut chars = s.chars();
    chars.next();
    match chars.next() {
        Some('"' | '\\' | 'n' | 't' | 'r' | '0') => Ok(2),
        Some('u') => {
            let rest = &s[2..];
            if !rest.starts_with('{') {
                return Err(2);
            }
            let close = match rest.find('}') {
                Some(c) if c <= 7 => c,
                _ => return Err(rest.find(['"', '\n']).unwrap_or(rest.len()).min(8) + 2),
            };
            let hex = &rest[1..close];
            match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                Some(_) if !hex.is_empty() => Ok(close + 3),
                _ => Err(close + 3),
            }
        }
        Some(c) => Err(1 + c.len_utf8()),
        None => Err(1),
    }
}

/// Decodes the escapes of a string literal's inner text (already validated by [`scan`]).
pub fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, '0')) => out.push('\0'),
            Some((_, 'u')) => {
                let rest = &inner[i + 2..];
                if let Some(close) = rest.find('}') {
                    if let Some(ch) = u32::from_str_radix(&rest[1..close], 16)
                        .ok()
                        .and_then(char::from_u32)
                    {
                        out.push(ch);
                    }
                    for _ in 0..close + 1 {
                        chars.next();
                    }
                }
            }
            Some((_, c)) => out.push(c),
            None => {}
        }
    }
    out
}
