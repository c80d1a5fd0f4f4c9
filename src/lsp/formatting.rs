//! Formatting: the function `rhx fmt` uses ([`crate::lang::format_source`]), returned as one
//! edit over the whole document (none when it is already formatted). A file that does not
//! parse is not formatted; the error says where, as `rhx fmt` does.
use lsp_types::TextEdit;

use super::position::LineIndex;

pub fn format(text: &str) -> Result<Vec<TextEdit>, String> {
    let out = crate::lang::format_source(text).map_err(|d| match &d.location {
        Some(l) => format!("cannot format: {}:{}: {}", l.line, l.col, d.message),
        None => format!("cannot format: {}", d.message),
    })?;
    if out == text {
        return Ok(vec![]);
    }
    let index = LineIndex::new(text);
    Ok(vec![TextEdit { range: index.range(0, text.len()), new_text: out }])
}
