//! Op importers grouped by family; each file registers its (domain, op_type) pairs here.

mod activations;
mod attention;
mod attention_parts;
mod composite;
mod control;
mod gdn;
mod math;
mod ms;
mod nbits;
mod nn;
mod select;
mod shape;
mod sparse;

use tract_onnx::pb::NodeProto;

use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::Value;

/// Imports one node: returns a value per node output.
pub type ImportFn = fn(&mut Importer, &NodeProto) -> Result<Vec<Value>, FrontendError>;

/// The importer for an op, if lt2c supports it.
pub fn lookup(domain: &str, op_type: &str) -> Option<ImportFn> {
    let d = if domain == "ai.onnx" { "" } else { domain };
    math::lookup(d, op_type)
        .or_else(|| shape::lookup(d, op_type))
        .or_else(|| nn::lookup(d, op_type))
        .or_else(|| attention::lookup(d, op_type))
        .or_else(|| gdn::lookup(d, op_type))
        .or_else(|| control::lookup(d, op_type))
        .or_else(|| select::lookup(d, op_type))
        .or_else(|| sparse::lookup(d, op_type))
        .or_else(|| ms::lookup(d, op_type))
        .or_else(|| composite::lookup(d, op_type))
        .or_else(|| activations::lookup(d, op_type))
}
