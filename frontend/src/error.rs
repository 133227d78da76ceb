//! Errors the ONNX importer reports. Each names the node, its op type and domain, and the
//! reason; unsupported ops are collected over the whole model and reported together.

/// Why an ONNX model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("{path}: {reason}")]
    Load { path: String, reason: String },
    #[error("the model uses ops lt2c does not support:\n{}", list.iter().map(|u| format!("  - {u}")).collect::<Vec<_>>().join("\n"))]
    Unsupported { list: Vec<String> },
    #[error("node `{node}` ({domain}{op}): {reason}", domain = if domain.is_empty() { String::new() } else { format!("{domain}::") })]
    Node { node: String, op: String, domain: String, reason: String },
    #[error("graph: {0}")]
    Graph(String),
    #[error(transparent)]
    Ir(#[from] lt2_ir::IrError),
}
