//! Byte offsets ↔ LSP positions. The language's spans are byte ranges; LSP counts lines from 0
//! and columns in UTF-16 code units (the protocol's default encoding), so a line with `é` or
//! an emoji before the span shifts the column by 1 or 2, not by its UTF-8 length.
use lsp_types::{Position, Range};

/// Line starts of one text, for conversions both ways.
pub struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The position of byte `offset` (clamped to the text, moved back to a character boundary).
    pub fn position(&self, offset: usize) -> Position {
        let offset = crate::lang::source::floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let col: usize = self.text[self.starts[line]..offset].chars().map(char::len_utf16).sum();
        Position::new(line as u32, col as u32)
    }

    pub fn range(&self, start: usize, end: usize) -> Range {
        Range::new(self.position(start), self.position(end.max(start)))
    }

    /// The byte offset of a position; a column past the line's end is its end, a line past the
    /// text's end is the text's end (clients send both while edits are in flight).
    pub fn offset(&self, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else { return self.text.len() };
        let end = self.starts.get(pos.line as usize + 1).map_or(self.text.len(), |&e| e - 1);
        // A column inside a surrogate pair (the middle of an emoji) means that character.
        let mut units = 0u32;
        for (i, c) in self.text[start..end].char_indices() {
            units += c.len_utf16() as u32;
            if units > pos.character {
                return start + i;
            }
        }
        end
    }

    /// The position just past the text's last character.
    pub fn end(&self) -> Position {
        self.position(self.text.len())
    }
}
