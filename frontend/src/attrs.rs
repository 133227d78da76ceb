//! Reading ONNX node attributes with errors that name the node, op and attribute.

use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};

use crate::error::FrontendError;

/// An attribute-level error for `node`.
pub fn node_err(node: &NodeProto, reason: impl Into<String>) -> FrontendError {
    FrontendError::Node {
        node: node_name(node),
        op: node.op_type.clone(),
        domain: node.domain.clone(),
        reason: reason.into(),
    }
}

/// The node's name, or its first output when unnamed.
pub fn node_name(node: &NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output.first().map(|o| format!("<{o}>")).unwrap_or_else(|| "<unnamed>".into())
    }
}

fn find<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    find(node, name).map(|a| a.i).unwrap_or(default)
}

pub fn float(node: &NodeProto, name: &str, default: f32) -> f32 {
    find(node, name).map(|a| a.f).unwrap_or(default)
}

pub fn has(node: &NodeProto, name: &str) -> bool {
    find(node, name).is_some()
}

pub fn string(node: &NodeProto, name: &str, default: &str) -> Result<String, FrontendError> {
    match find(node, name) {
        None => Ok(default.to_string()),
        Some(a) => String::from_utf8(a.s.clone()).map_err(|_| node_err(node, format!("attribute `{name}` is not UTF-8"))),
    }
}

pub fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    find(node, name).map(|a| a.ints.clone())
}

pub fn required_int(node: &NodeProto, name: &str) -> Result<i64, FrontendError> {
    find(node, name).map(|a| a.i).ok_or_else(|| node_err(node, format!("required attribute `{name}` is missing")))
}

pub fn tensor<'a>(node: &'a NodeProto, name: &str) -> Option<&'a TensorProto> {
    find(node, name).and_then(|a| a.t.as_ref())
}

pub fn graph<'a>(node: &'a NodeProto, name: &str) -> Result<&'a GraphProto, FrontendError> {
    find(node, name).and_then(|a| a.g.as_ref()).ok_or_else(|| node_err(node, format!("subgraph attribute `{name}` is missing")))
}
