//! Errors raised while making, parsing or verifying lt2 IR.

/// What went wrong with a piece of lt2 IR.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("the lt2 dialect definition (lt2.irdl.mlir) failed to load: {0}")]
    DialectLoad(String),
    #[error("IR does not parse or verify:\n{diagnostics}")]
    Parse { diagnostics: String },
    #[error("IR fails verification{}:\n{}", after.as_ref().map(|p| format!(" after pass `{p}`")).unwrap_or_default(), diagnostics.join("\n"))]
    Verify { after: Option<String>, diagnostics: Vec<String> },
    #[error("op `{op}`: attribute `{attr}` {reason}")]
    Attribute { op: String, attr: String, reason: String },
}
