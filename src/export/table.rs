//! A table artifact (`report::Table`, `table.json`) as Parquet: one row per table row, the row
//! label first (named by the table's row header), then per column a typed column — Float64 when
//! every cell is a number or empty, Utf8 otherwise — plus `<column> ±` (spread), `<column> n`
//! and `<column> (<reference label>)` where any cell has them.
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt64Builder};
use super::{ExportError, NamedColumn};
use crate::report::{CellValue, Table};

/// The columns of `table`.
pub fn table_columns(table: &Table) -> Result<Vec<NamedColumn>, ExportError> {
    for (i, r) in table.rows.iter().enumerate() {
        if r.cells.len() != table.columns.len() {
            return Err(ExportError::Input(format!("table `{}` row {i} (`{}`) has {} cells for {} columns", table.id, r.label, r.cells.len(), table.columns.len())));
        }
    }
    let label = if table.row_header.is_empty() { "row".to_string() } else { table.row_header.clone() };
    let mut labels = StringBuilder::new();
    table.rows.iter().for_each(|r| labels.append_value(&r.label));
    let mut out: Vec<NamedColumn> = vec![(label, Arc::new(labels.finish()), false)];
    for (c, col) in table.columns.iter().enumerate() {
        let cells = || table.rows.iter().map(move |r| &r.cells[c]);
        let name = match &col.unit {
            Some(u) if !u.is_empty() => format!("{} ({u})", col.name),
            _ => col.name.clone(),
        };
        let numeric = cells().all(|x| !matches!(x.value, CellValue::Text { .. }));
        if numeric {
            let mut b = Float64Builder::new();
            for x in cells() {
                b.append_option(match x.value {
                    CellValue::Number { value, .. } => Some(value),
                    _ => None,
                });
            }
            out.push((name.clone(), Arc::new(b.finish()), true));
        } else {
            let mut b = StringBuilder::new();
            for x in cells() {
                b.append_option(match &x.value {
                    CellValue::Text { text } => Some(text.clone()),
                    CellValue::Number { value, .. } => Some(value.to_string()),
                    CellValue::Empty => None,
                });
            }
            out.push((name.clone(), Arc::new(b.finish()), true));
        }
        if cells().any(|x| matches!(x.value, CellValue::Number { spread: Some(_), .. })) {
            let mut b = Float64Builder::new();
            cells().for_each(|x| b.append_option(if let CellValue::Number { spread, .. } = x.value { spread } else { None }));
            out.push((format!("{name} ±"), Arc::new(b.finish()), true));
        }
        if cells().any(|x| matches!(x.value, CellValue::Number { n: Some(_), .. })) {
            let mut b = UInt64Builder::new();
            cells().for_each(|x| b.append_option(if let CellValue::Number { n, .. } = x.value { n } else { None }));
            out.push((format!("{name} n"), Arc::new(b.finish()), true));
        }
        if cells().any(|x| x.reference.is_some()) {
            let mut b = Float64Builder::new();
            cells().for_each(|x| b.append_option(x.reference.as_ref().map(|r| r.value)));
            out.push((format!("{name} ({})", table.reference_label), Arc::new(b.finish()), true));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _, _)) = out.iter().find(|(n, _, _)| !seen.insert(n.clone())) {
        return Err(ExportError::Input(format!("table `{}` has two columns named `{dup}`", table.id)));
    }
    Ok(out)
}
