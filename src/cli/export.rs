//! `rhx export`: a trace or table artifact as a Parquet file for notebooks (`src/export`).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::artifact::trace::{read_info, read_lines};
use crate::cli::artifact_arg::{self, Named};
use crate::cli::exp::{CacheDir, ProgramArgs};
use crate::export::{self, trace::Form, Metadata};

#[derive(Args)]
#[command(
    about = "Write a trace or table artifact as a Parquet file (pandas, polars, pyarrow, DuckDB)",
    after_help = "WHAT TO EXPORT:\n  \
EXP.rhx NODE            a node of an experiment, found in the cache as `rhx report` finds it\n                          \
(refused if not cached: `rhx run EXP.rhx` first; --set/--profile as for `rhx run`)\n  \
.rhx/cache/objects/ab/<key>   an artifact folder of the cache (`rhx plan` / `rhx cache ls` show keys)\n  \
out/trace.jsonl         a file written by `rhx trace --out`\n\n\
FORMS (traces):\n  \
long   one row per (sample, step, layer, head): sample, sample_id, step, token_id, token_text, layer, head,\n         \
argmax_pos, argmax_in_needle, is_retrieval_head, retrieval_weight, argmax_weight, reasoning_score\n  \
steps  one row per (sample, step): sample, sample_id, step, token_id, token_text, retrieval_layer,\n         \
retrieval_head, retrieval_weight (H_t as lists), argmax_pos, argmax_weight, reasoning_score\n         \
(per-head lists, layer-major: index = layer * heads + head)\n\
A table gets one row per table row and one typed column per table column.\n\
The file's key-value metadata holds rhx:model, rhx:key, rhx:version, rhx:provenance (JSON), rhx:form.\n\n\
EXAMPLES:\n  \
rhx export experiments/niah_smoke.rhx base --out base.parquet\n  \
rhx export experiments/niah_smoke.rhx base --form steps --out base_steps.parquet\n  \
rhx export experiments/section3.rhx dynamism --profile full --out table1.parquet\n  \
rhx export .rhx/cache/objects/3f/3f9c…/ --out t.parquet\n  \
rhx export out/niah.jsonl --heads-per-layer 9 --out niah.parquet\n\n\
READ IT:\n  \
python -c \"import pandas as pd; print(pd.read_parquet('base.parquet').groupby(['layer','head']).is_retrieval_head.mean())\"\n  \
python -c \"import polars as pl; print(pl.read_parquet('base.parquet').filter(pl.col('is_retrieval_head')))\""
)]
pub struct ExportArgs {
    /// An experiment file (.rhx, then NODE), an artifact folder of the cache, or a `rhx trace --out` file
    pub target: PathBuf,
    /// The node of the experiment to export
    pub node: Option<String>,
    /// The Parquet file to write (atomically: a temporary file renamed at the end)
    #[arg(long)]
    pub out: PathBuf,
    /// Layout of a trace (a table has one)
    #[arg(long, value_enum, default_value_t = CliForm::Long)]
    pub form: CliForm,
    /// Attention heads per layer, for a `rhx trace --out` file that does not record the model's shape
    #[arg(long)]
    pub heads_per_layer: Option<usize>,
    /// Override a parameter of the experiment, as for `rhx run` (repeatable)
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// The experiment's profile, as for `rhx run`
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub cache: CacheDir,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliForm {
    Long,
    Steps,
}

pub fn run(a: ExportArgs) -> Result<ExitCode> {
    if a.out.extension().is_none_or(|e| e != "parquet") {
        bail!("--out {}: give a .parquet file", a.out.display());
    }
    let program = ProgramArgs { file: a.target.clone(), overrides: a.overrides.clone(), profile: a.profile.clone() };
    let named = artifact_arg::resolve(&a.target, a.node.as_deref(), Some(&program), &a.cache.cache)?;
    let form = match a.form {
        CliForm::Long => Form::Long,
        CliForm::Steps => Form::Steps,
    };
    let mut meta = Metadata::new();
    meta.insert("rhx:version".into(), export::rhx_version());
    let (columns, what) = match &named {
        Named::Cached { artifact, node } => {
            let m = &artifact.manifest;
            meta.insert("rhx:key".into(), artifact.key.as_str().to_string());
            meta.insert("rhx:kind".into(), m.kind.clone());
            if let Some(n) = node {
                meta.insert("rhx:node".into(), n.clone());
                meta.insert("rhx:source".into(), a.target.display().to_string());
            } else {
                meta.insert("rhx:source".into(), artifact.dir.display().to_string());
            }
            let inputs: serde_json::Map<String, serde_json::Value> = m.inputs.iter().map(|i| (i.name.clone(), json!(i.key.as_str()))).collect();
            let mut provenance = json!({"kind": m.kind, "spec": m.spec, "inputs": inputs, "created": m.created, "rhx_version": m.rhx_version, "wall_time_s": m.wall_time_s});
            let models = models_behind(artifact);
            if let Some(m) = describe_models(&models) {
                meta.insert("rhx:model".into(), m);
            }
            provenance["models"] = json!(models);
            if artifact.file("trace.jsonl").is_some() {
                let lines = read_lines(artifact)?;
                let info = read_info(artifact)?;
                provenance["trace_info"] = serde_json::to_value(&info)?;
                meta.insert("rhx:provenance".into(), provenance.to_string());
                (trace_columns(&lines, Some((info.layers, info.heads)), a.heads_per_layer, form, &mut meta)?, format!("{} generations", lines.len()))
            } else if artifact.file("table.json").is_some() {
                if a.form != CliForm::Long {
                    bail!("--form applies to traces; a table has one row per table row");
                }
                let table: crate::report::Table = serde_json::from_slice(&artifact.read("table.json")?).with_context(|| format!("{}/table.json", artifact.dir.display()))?;
                meta.insert("rhx:form".into(), "table".into());
                meta.insert("rhx:table".into(), table.id.clone());
                meta.insert("rhx:caption".into(), table.caption.clone());
                meta.insert("rhx:provenance".into(), provenance.to_string());
                (export::table::table_columns(&table)?, format!("table `{}`, {} rows", table.id, table.rows.len()))
            } else {
                bail!("{}: a {} artifact ({}) is neither a trace (trace.jsonl) nor a table (table.json)", artifact.dir.display(), m.kind, artifact.file_names().collect::<Vec<_>>().join(", "));
            }
        }
        Named::TraceFile { path, lines, sha256 } => {
            meta.insert("rhx:source".into(), path.display().to_string());
            meta.insert("rhx:key".into(), format!("sha256:{sha256}"));
            meta.insert("rhx:provenance".into(), json!({"kind": "rhx trace --out", "file": path.display().to_string(), "sha256": sha256}).to_string());
            (trace_columns(lines, None, a.heads_per_layer, form, &mut meta)?, format!("{} generations", lines.len()))
        }
    };
    let rows = columns.first().map_or(0, |c| c.1.len());
    write_atomic_file(&a.out, |f| Ok(export::write_parquet(f, columns, &meta)?))?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    eprintln!("{what} → {} ({rows} rows, {size} bytes)", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn trace_columns(lines: &[crate::artifact::trace::TraceLine], info: Option<(usize, usize)>, heads_per_layer: Option<usize>, form: Form, meta: &mut Metadata) -> Result<Vec<export::NamedColumn>> {
    let (layers, heads) = export::trace::shape(lines, info, heads_per_layer)?;
    meta.insert("rhx:form".into(), form.name().into());
    meta.insert("rhx:layers".into(), layers.to_string());
    meta.insert("rhx:heads".into(), heads.to_string());
    Ok(match form {
        Form::Long => export::trace::long_columns(lines, layers, heads),
        Form::Steps => export::trace::steps_columns(lines),
    })
}

/// The `model.json` of the model nodes an artifact was computed from (a trace reads its model; a
/// table reads traces), found through the manifest's inputs in the same cache.
fn models_behind(artifact: &crate::cache::Artifact) -> Vec<serde_json::Value> {
    let Some(cache) = artifact.dir.ancestors().nth(3).and_then(|root| crate::cache::Cache::open(root).ok()) else { return vec![] };
    let mut found = Vec::new();
    let mut todo: Vec<crate::cache::Key> = artifact.manifest.inputs.iter().map(|i| i.key.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(k) = todo.pop() {
        if !seen.insert(k.clone()) {
            continue;
        }
        let Some(a) = cache.get(&k).ok().flatten() else { continue };
        match a.read("model.json").ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) {
            Some(m) => found.push(m),
            None => todo.extend(a.manifest.inputs.iter().map(|i| i.key.clone())),
        }
    }
    found
}

/// `rhx:model`: each model's source (its path, or Hub snapshot) and Hub revision.
fn describe_models(models: &[serde_json::Value]) -> Option<String> {
    let names: std::collections::BTreeSet<String> = models
        .iter()
        .map(|m| {
            let source = m["source"].as_str().unwrap_or("?");
            match m["revision"].as_str() {
                Some(r) => format!("{source} (Hub revision {r})"),
                None => source.to_string(),
            }
        })
        .collect();
    (!names.is_empty()).then(|| names.into_iter().collect::<Vec<_>>().join(", "))
}

/// Writes through a temporary file beside `path`, renamed into place at the end; nothing is
/// left behind on an error.
fn write_atomic_file(path: &Path, f: impl FnOnce(std::io::BufWriter<std::fs::File>) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = f(std::io::BufWriter::new(file)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", path.display())));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}
