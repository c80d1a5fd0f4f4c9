//! Trace constructors: generations of a model on a dataset, with captures and interventions.
pub mod generate;
pub mod policy;
pub mod rag;
pub mod rag_loop;

use crate::engine::device::{self, DType, DeviceRequest};
use crate::engine::loader;
use crate::lang::Node;
use crate::ops::args::{node, req_enum};
use crate::ops::model::model_spec;
use crate::run::Ctx;

/// The model and dataset nodes of a trace, with the model loaded into `ctx` once per run (on
/// the device and in the dtype its declaration asks for).
pub(crate) fn load_model(ctx: &mut Ctx, model_name: &str, dataset_name: &str) -> Result<(Node, Node), String> {
    let model_node = node(ctx, model_name)?.clone();
    let data_node = node(ctx, dataset_name)?.clone();
    if !ctx.models.contains_key(model_name) {
        let spec = model_spec(&model_node)?;
        let dev_req: DeviceRequest = req_enum(&model_node, "device")?.parse().map_err(|e: device::DeviceError| e.to_string())?;
        let dtype: DType = req_enum(&model_node, "dtype")?.parse().map_err(|e: device::DeviceError| e.to_string())?;
        let dev = device::resolve(dev_req).map_err(|e| e.to_string())?;
        let lm = loader::load(&spec, dev, dtype.kind()).map_err(|e| format!("{e:#}"))?;
        ctx.models.insert(model_name.to_string(), lm);
    }
    Ok((model_node, data_node))
}
