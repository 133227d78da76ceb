//! MLIR contexts for lt2c: the builtin, func and gpu dialects (gpu only for `gpu.yield`, the
//! terminator of `lt2.loop`'s region) plus `lt2` loaded from its IRDL definition.

use std::sync::{Arc, Mutex};

use melior::dialect::DialectHandle;
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::Context;

use crate::error::IrError;

/// The IRDL source of the `lt2` dialect.
pub const LT2_IRDL: &str = include_str!("../lt2.irdl.mlir");

/// A context with every dialect lt2 IR uses, `lt2` loaded and verified.
pub fn new_context() -> Result<Context, IrError> {
    let context = Context::new();
    DialectHandle::func().register_dialect(&context);
    DialectHandle::func().load_dialect(&context);
    DialectHandle::gpu().register_dialect(&context);
    DialectHandle::gpu().load_dialect(&context);
    // SAFETY: the IRDL dialect handle is a static registration entry point of the MLIR C API.
    unsafe {
        let irdl = mlir_sys::mlirGetDialectHandle__irdl__();
        mlir_sys::mlirDialectHandleRegisterDialect(irdl, context.to_raw());
        mlir_sys::mlirDialectHandleLoadDialect(irdl, context.to_raw());
    }
    let defs = {
        let diags = capture_diagnostics(&context);
        let m = Module::parse(&context, LT2_IRDL);
        let msgs = diags.lock().map(|d| d.join("\n")).unwrap_or_default();
        m.ok_or_else(|| IrError::DialectLoad(msgs))?
    };
    if !melior::utility::load_irdl_dialects(&defs) {
        return Err(IrError::DialectLoad("mlirLoadIRDLDialects failed".into()));
    }
    // The definitions must outlive every use of the dialect: keep the module alive with the context.
    std::mem::forget(defs);
    Ok(context)
}

/// Parses and verifies lt2 IR text, returning MLIR's diagnostics on failure.
pub fn parse_module<'c>(context: &'c Context, source: &str) -> Result<Module<'c>, IrError> {
    let diags = capture_diagnostics(context);
    let module = Module::parse(context, source);
    let msgs = diags.lock().map(|d| d.clone()).unwrap_or_default();
    match module {
        Some(m) if m.as_operation().verify() => Ok(m),
        _ => {
            let mut all = msgs;
            if all.is_empty() {
                all.push("(MLIR gave no diagnostic)".into());
            }
            Err(IrError::Parse { diagnostics: all.join("\n") })
        }
    }
}

/// Collects the diagnostics MLIR emits from now on (until the context is dropped).
pub fn capture_diagnostics(context: &Context) -> Arc<Mutex<Vec<String>>> {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let s2 = sink.clone();
    context.attach_diagnostic_handler(move |d| {
        if let Ok(mut v) = s2.lock() {
            v.push(format!("{}: {}", d.location(), d));
        }
        true
    });
    sink
}
