//! The lt2 verifier: what IRDL cannot say. `lt2.loop` regions must take (iteration, carried...)
//! with the carried types fixed across iterations and end in a yield of those types; trip
//! counts are positive. Every error is collected, not just the first.

use melior::ir::block::BlockLike;
use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::{Module, RegionLike, Type, ValueLike};

use crate::error::IrError;
use crate::ops::{attr_i64, Lt2Op, LOOP_YIELD};

/// Verifies a module with MLIR's verifier (IRDL constraints included) and the lt2 rules;
/// `after` names the pass that just ran, for the message.
pub fn verify_module(module: &Module, after: Option<&str>) -> Result<(), IrError> {
    let mut errs = Vec::new();
    if !module.as_operation().verify() {
        errs.push("MLIR verifier failed (see diagnostics above)".to_string());
    }
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        if crate::ops::lt2_op(&op) == Some(Lt2Op::Loop) {
            let loc = op.location().to_string();
            let mut e = |m: String| errs.push(format!("{loc}: lt2.loop: {m}"));
            match attr_i64(&op, "trip_count") {
                Ok(t) if t < 1 => e(format!("trip_count is {t}; it must be at least 1")),
                Err(err) => e(err.to_string()),
                _ => {}
            }
            let inits: Vec<Type> = op.operands().map(|v| v.r#type()).collect();
            let results: Vec<Type> = op.results().map(|v| v.r#type()).collect();
            if results.len() < inits.len() || results[..inits.len()] != inits[..] {
                e("the first results must have the types of the carried inputs".into());
            }
            let n_scan = results.len().saturating_sub(inits.len());
            match op.region(0).ok().and_then(|r| r.first_block()) {
                None => e("has no body block".into()),
                Some(b) => {
                    let args: Vec<Type> = (0..b.argument_count()).filter_map(|i| b.argument(i).ok()).map(|a| a.r#type()).collect();
                    if args.len() != inits.len() + 1 || args.get(1..) != Some(&inits[..]) {
                        e(format!("body takes {} arguments; it must take the iteration and the {} carried values with their types", args.len(), inits.len()));
                    } else if args[0].to_string() != "tensor<i64>" {
                        e("the body's first argument (the iteration) must be tensor<i64>".into());
                    }
                    match b.terminator() {
                        Some(t) if t.name().as_string_ref().as_str() == Ok(LOOP_YIELD) => {
                            let ys: Vec<Type> = t.operands().map(|v| v.r#type()).collect();
                            if ys.len() != inits.len() + n_scan || ys[..inits.len().min(ys.len())] != inits[..inits.len().min(ys.len())] {
                                e(format!("the body must yield the {} carried values (same types) then {n_scan} scan values", inits.len()));
                            } else {
                                // Scan result k is the yielded value stacked: [trip_count, ...dims].
                                for (k, y) in ys[inits.len()..].iter().enumerate() {
                                    let want = scan_type(&y.to_string(), attr_i64(&op, "trip_count").unwrap_or(0));
                                    if want.as_deref() != Some(results[inits.len() + k].to_string().as_str()) {
                                        e(format!("scan result {k} has type {}, expected the yielded {y} stacked over iterations", results[inits.len() + k]));
                                    }
                                }
                            }
                        }
                        _ => e(format!("the body must end with {LOOP_YIELD}")),
                    }
                }
            }
        }
        WalkResult::Advance
    });
    if errs.is_empty() {
        Ok(())
    } else {
        Err(IrError::Verify { after: after.map(String::from), diagnostics: errs })
    }
}

/// `tensor<AxBxf32>` stacked `trip` times: `tensor<tripxAxBxf32>`.
fn scan_type(t: &str, trip: i64) -> Option<String> {
    let inner = t.strip_prefix("tensor<")?;
    Some(format!("tensor<{trip}x{inner}"))
}
