//! Artifacts as Parquet files for notebooks (`rhx export`): a trace in a long form (one row per
//! sample, step, layer and head) or a per-step form (list columns), and a table with one typed
//! column per table column. What made the artifact (model, key, rhx version, provenance) goes
//! into the file's key-value metadata, so a data frame keeps its origin.
pub mod table;
pub mod trace;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

/// Errors building or writing an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Input(String),
    #[error("building the Arrow columns: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The metadata every export carries, under `rhx:` keys: `rhx:model`, `rhx:key`,
/// `rhx:version`, `rhx:provenance` (JSON), `rhx:form`, `rhx:source`, and more per form.
pub type Metadata = BTreeMap<String, String>;

/// A named column and whether it may hold nulls.
pub type NamedColumn = (String, ArrayRef, bool);

/// Writes the columns as one Parquet file (Snappy), with `meta` both as Parquet key-value
/// metadata (what `pyarrow.parquet.read_metadata(f).metadata` and polars'
/// `read_parquet_metadata` show) and as the Arrow schema's metadata (`table.schema.metadata`).
pub fn write_parquet<W: Write + Send>(out: W, columns: Vec<NamedColumn>, meta: &Metadata) -> Result<(), ExportError> {
    let batch = RecordBatch::try_from_iter_with_nullable(columns)?;
    let schema = Schema::new_with_metadata(batch.schema().fields().clone(), meta.clone());
    let batch = batch.with_schema(Arc::new(schema))?;
    let kv = meta.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_key_value_metadata(Some(kv)).build();
    let mut w = ArrowWriter::try_new(out, batch.schema(), Some(props))?;
    w.write(&batch)?;
    w.into_inner()?.flush().map_err(|e| ExportError::Input(format!("writing the Parquet file: {e}")))?;
    Ok(())
}

/// `0.1.0 (commit)`: the version `rhx --version` prints.
pub fn rhx_version() -> String {
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("RHX_GIT_COMMIT"), ")").to_string()
}
