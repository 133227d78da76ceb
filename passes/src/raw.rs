//! Small safe helpers over the MLIR C API for the rewrites passes do (use queries, replacing
//! uses, erasing ops) where melior has no wrapper. Every function takes handles that come from
//! a live module and keeps MLIR's invariants (ops are detached before they are destroyed).

use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirValue};

/// Every operation of the module, in pre-order (parents before the ops they contain).
pub fn all_ops(module: &Module) -> Vec<MlirOperation> {
    let mut v = Vec::new();
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        v.push(op.to_raw());
        WalkResult::Advance
    });
    v
}

/// The op's full name, e.g. `lt2.transpose`.
pub fn name(op: MlirOperation) -> String {
    // SAFETY: `op` is a live operation; the identifier's string is owned by the context.
    unsafe {
        let id = mlir_sys::mlirOperationGetName(op);
        let s = mlir_sys::mlirIdentifierStr(id);
        String::from_utf8_lossy(std::slice::from_raw_parts(s.data as *const u8, s.length)).into_owned()
    }
}

pub fn operand(op: MlirOperation, i: usize) -> MlirValue {
    // SAFETY: live operation, index checked by callers against num_operands.
    unsafe { mlir_sys::mlirOperationGetOperand(op, i as isize) }
}

pub fn num_results(op: MlirOperation) -> usize {
    // SAFETY: live operation.
    unsafe { mlir_sys::mlirOperationGetNumResults(op) as usize }
}

pub fn result(op: MlirOperation, i: usize) -> MlirValue {
    // SAFETY: live operation, index checked by callers.
    unsafe { mlir_sys::mlirOperationGetResult(op, i as isize) }
}

pub fn num_regions(op: MlirOperation) -> usize {
    // SAFETY: live operation.
    unsafe { mlir_sys::mlirOperationGetNumRegions(op) as usize }
}

/// Whether any op uses the value.
pub fn has_uses(v: MlirValue) -> bool {
    // SAFETY: live value.
    unsafe { !mlir_sys::mlirOpOperandIsNull(mlir_sys::mlirValueGetFirstUse(v)) }
}

/// The op defining `v`, if it is an op result (not a block argument).
pub fn defining_op(v: MlirValue) -> Option<MlirOperation> {
    // SAFETY: live value.
    unsafe { mlir_sys::mlirValueIsAOpResult(v).then(|| mlir_sys::mlirOpResultGetOwner(v)) }
}

/// Replaces every use of `of` with `with`.
pub fn replace_all_uses(of: MlirValue, with: MlirValue) {
    // SAFETY: both values are live and of the same type (callers check).
    unsafe { mlir_sys::mlirValueReplaceAllUsesOfWith(of, with) }
}

pub fn same_type(a: MlirValue, b: MlirValue) -> bool {
    // SAFETY: live values.
    unsafe { mlir_sys::mlirTypeEqual(mlir_sys::mlirValueGetType(a), mlir_sys::mlirValueGetType(b)) }
}

/// Detaches and destroys an op whose results have no uses.
pub fn erase(op: MlirOperation) {
    // SAFETY: callers only erase ops whose results are unused, so no dangling uses remain.
    unsafe {
        mlir_sys::mlirOperationRemoveFromParent(op);
        mlir_sys::mlirOperationDestroy(op);
    }
}

/// A string attribute of the op, if present.
pub fn str_attr(op: MlirOperation, attr: &str) -> Option<String> {
    // SAFETY: live operation; the name reference lives for the call.
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        if a.ptr.is_null() || !mlir_sys::mlirAttributeIsAString(a) {
            return None;
        }
        let s = mlir_sys::mlirStringAttrGetValue(a);
        Some(String::from_utf8_lossy(std::slice::from_raw_parts(s.data as *const u8, s.length)).into_owned())
    }
}

/// The op's parent op (None at the top).
pub fn parent_op(op: MlirOperation) -> Option<MlirOperation> {
    // SAFETY: live operation.
    unsafe {
        let p = mlir_sys::mlirOperationGetParentOperation(op);
        (!p.ptr.is_null()).then_some(p)
    }
}

/// Moves `op` right before `before` (possibly into another block).
pub fn move_before(op: MlirOperation, before: MlirOperation) {
    // SAFETY: both live; callers ensure dominance stays valid (moved ops have no operands).
    unsafe { mlir_sys::mlirOperationMoveBefore(op, before) }
}

/// The first op of the first block of region `r` of `op`.
pub fn first_op_in_region(op: MlirOperation, r: usize) -> Option<MlirOperation> {
    // SAFETY: live operation, region index checked by callers.
    unsafe {
        let region = mlir_sys::mlirOperationGetRegion(op, r as isize);
        let block = mlir_sys::mlirRegionGetFirstBlock(region);
        if block.ptr.is_null() {
            return None;
        }
        let first = mlir_sys::mlirBlockGetFirstOperation(block);
        (!first.ptr.is_null()).then_some(first)
    }
}

/// The `i64` elements of a dense array attribute.
pub fn i64s_attr(op: MlirOperation, attr: &str) -> Option<Vec<i64>> {
    // SAFETY: live operation.
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        if a.ptr.is_null() || !mlir_sys::mlirAttributeIsADenseI64Array(a) {
            return None;
        }
        let n = mlir_sys::mlirDenseArrayGetNumElements(a);
        Some((0..n).map(|i| mlir_sys::mlirDenseI64ArrayGetElement(a, i)).collect())
    }
}

/// The value's type.
pub fn value_type(v: MlirValue) -> mlir_sys::MlirType {
    // SAFETY: live value.
    unsafe { mlir_sys::mlirValueGetType(v) }
}

/// The single value of an `lt2.constant` (a splat or one-element constant), as f64.
pub fn const_scalar(v: MlirValue) -> Option<f64> {
    let op = defining_op(v)?;
    if name(op) != "lt2.constant" {
        return None;
    }
    let attr = "value";
    // SAFETY: live op; the attribute is dense int-or-fp elements (IRDL-verified).
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        if a.ptr.is_null() || !mlir_sys::mlirAttributeIsADenseFPElements(a) {
            return None;
        }
        if !mlir_sys::mlirDenseElementsAttrIsSplat(a) && mlir_sys::mlirElementsAttrGetNumElements(a) != 1 {
            return None;
        }
        Some(mlir_sys::mlirDenseElementsAttrGetFloatValue(a, 0) as f64)
    }
}

/// Creates op `name` right before `before`, with attributes given as MLIR attribute text.
pub fn create_before(
    before: MlirOperation,
    name: &str,
    operands: &[MlirValue],
    results: &[mlir_sys::MlirType],
    attrs: &[(&str, String)],
) -> Option<MlirOperation> {
    // SAFETY: live op; `before`'s block takes ownership of the new op.
    unsafe {
        let mut state = op_state(before, name, operands, results, attrs)?;
        let op = mlir_sys::mlirOperationCreate(&mut state);
        if op.ptr.is_null() {
            return None;
        }
        mlir_sys::mlirBlockInsertOwnedOperationBefore(mlir_sys::mlirOperationGetBlock(before), before, op);
        Some(op)
    }
}

/// Sets attribute `attr` of `op` from MLIR attribute text; false when the text does not parse.
pub fn set_attr(op: MlirOperation, attr: &str, text: &str) -> bool {
    // SAFETY: live op; the strings outlive the calls.
    unsafe {
        let ctx = mlir_sys::mlirOperationGetContext(op);
        let sref = |s: &str| mlir_sys::MlirStringRef { data: s.as_ptr() as *const _, length: s.len() };
        let a = mlir_sys::mlirAttributeParseGet(ctx, sref(text));
        if a.ptr.is_null() {
            return false;
        }
        mlir_sys::mlirOperationSetAttributeByName(op, sref(attr), a);
        true
    }
}

/// Replaces every use of `old` with `new` when they have one type; else says both types (a
/// raising pass built a result that does not stand in for the one it replaces).
pub fn replace_same_type(old: MlirValue, new: MlirValue) -> Result<(), String> {
    if !same_type(old, new) {
        return Err(format!("the raised result's type {} differs from {}", type_text(value_type(new)), type_text(value_type(old))));
    }
    replace_all_uses(old, new);
    Ok(())
}

/// Makes operand `i` of `op` read `v`.
pub fn set_operand(op: MlirOperation, i: usize, v: MlirValue) {
    // SAFETY: live op and value of the same context; `i` is below the operand count (callers
    // read the operand first).
    unsafe { mlir_sys::mlirOperationSetOperand(op, i as isize, v) }
}

/// The op after `op` in its block (None at the end).
pub fn next_op(op: MlirOperation) -> Option<MlirOperation> {
    // SAFETY: live op.
    let n = unsafe { mlir_sys::mlirOperationGetNextInBlock(op) };
    (!n.ptr.is_null()).then_some(n)
}

/// Parses MLIR type text (`tensor<4x8xbf16>`) in `op`'s context.
pub fn parse_type(op: MlirOperation, text: &str) -> Option<mlir_sys::MlirType> {
    // SAFETY: live op; the string outlives the call.
    unsafe {
        let ctx = mlir_sys::mlirOperationGetContext(op);
        let t = mlir_sys::mlirTypeParseGet(ctx, mlir_sys::MlirStringRef { data: text.as_ptr() as *const _, length: text.len() });
        (!t.ptr.is_null()).then_some(t)
    }
}

/// MLIR's text of a type.
pub fn type_text(t: mlir_sys::MlirType) -> String {
    let mut out = String::new();
    unsafe extern "C" fn cb(s: mlir_sys::MlirStringRef, data: *mut std::ffi::c_void) {
        // SAFETY: `data` is the `String` passed below; MLIR hands valid UTF-8 pieces.
        let out = unsafe { &mut *(data as *mut String) };
        let bytes = unsafe { std::slice::from_raw_parts(s.data as *const u8, s.length) };
        out.push_str(&String::from_utf8_lossy(bytes));
    }
    // SAFETY: live type; the callback only appends to `out`.
    unsafe { mlir_sys::mlirTypePrint(t, Some(cb), &mut out as *mut String as *mut _) };
    out
}

/// The rank of a ranked tensor value (None otherwise).
pub fn rank(v: MlirValue) -> Option<usize> {
    // SAFETY: live value; shaped-type queries are only made on ranked shaped types.
    unsafe {
        let t = mlir_sys::mlirValueGetType(v);
        (mlir_sys::mlirTypeIsARankedTensor(t)).then(|| mlir_sys::mlirShapedTypeGetRank(t) as usize)
    }
}

/// The op defining `v` when it is named `name`.
pub fn def(v: MlirValue, name: &str) -> Option<MlirOperation> {
    defining_op(v).filter(|&d| self::name(d) == name)
}

/// x when `v` is `pow(x, 2)` or `mul(x, x)` (the squares of decomposed norms).
pub fn square_of(v: MlirValue) -> Option<MlirValue> {
    if let Some(p) = def(v, "lt2.pow") {
        return (const_scalar(operand(p, 1)) == Some(2.0)).then(|| operand(p, 0));
    }
    let m = def(v, "lt2.mul")?;
    (operand(m, 0).ptr == operand(m, 1).ptr).then(|| operand(m, 0))
}

/// An integer attribute of the op (`axis = 3 : i64`).
pub fn int_attr(op: MlirOperation, attr: &str) -> Option<i64> {
    // SAFETY: live operation; the name reference lives for the call.
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        (!a.ptr.is_null() && mlir_sys::mlirAttributeIsAInteger(a)).then(|| mlir_sys::mlirIntegerAttrGetValueInt(a))
    }
}

/// A boolean attribute of the op.
pub fn bool_attr(op: MlirOperation, attr: &str) -> Option<bool> {
    // SAFETY: live operation; the name reference lives for the call.
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        (!a.ptr.is_null() && mlir_sys::mlirAttributeIsABool(a)).then(|| mlir_sys::mlirBoolAttrGetValue(a))
    }
}

/// The strings of an array-of-strings attribute (`shape = ["batch", "seq", "32"]`).
pub fn strs_attr(op: MlirOperation, attr: &str) -> Option<Vec<String>> {
    // SAFETY: live operation; element strings are owned by the context.
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        if a.ptr.is_null() || !mlir_sys::mlirAttributeIsAArray(a) {
            return None;
        }
        (0..mlir_sys::mlirArrayAttrGetNumElements(a))
            .map(|i| {
                let e = mlir_sys::mlirArrayAttrGetElement(a, i);
                mlir_sys::mlirAttributeIsAString(e).then(|| {
                    let s = mlir_sys::mlirStringAttrGetValue(e);
                    String::from_utf8_lossy(std::slice::from_raw_parts(s.data as *const u8, s.length)).into_owned()
                })
            })
            .collect()
    }
}

/// The single value of an integer `lt2.constant`.
pub fn const_int(v: MlirValue) -> Option<i64> {
    let op = def(v, "lt2.constant")?;
    let attr = "value";
    // SAFETY: live op; the attribute is dense elements (IRDL-verified).
    unsafe {
        let a = mlir_sys::mlirOperationGetAttributeByName(op, mlir_sys::MlirStringRef { data: attr.as_ptr() as *const _, length: attr.len() });
        if a.ptr.is_null() || !mlir_sys::mlirAttributeIsADenseIntElements(a) {
            return None;
        }
        if !mlir_sys::mlirDenseElementsAttrIsSplat(a) && mlir_sys::mlirElementsAttrGetNumElements(a) != 1 {
            return None;
        }
        Some(mlir_sys::mlirDenseElementsAttrGetInt64Value(a, 0))
    }
}

/// The op using `v` and the operand index, when `v` has exactly one use.
pub fn single_use(v: MlirValue) -> Option<(MlirOperation, usize)> {
    // SAFETY: live value; use-list traversal.
    unsafe {
        let u = mlir_sys::mlirValueGetFirstUse(v);
        if mlir_sys::mlirOpOperandIsNull(u) || !mlir_sys::mlirOpOperandIsNull(mlir_sys::mlirOpOperandGetNextUse(u)) {
            return None;
        }
        Some((mlir_sys::mlirOpOperandGetOwner(u), mlir_sys::mlirOpOperandGetOperandNumber(u) as usize))
    }
}

/// The static dims of a ranked tensor value (None for a dynamic one).
pub fn dims(v: MlirValue) -> Option<Vec<Option<i64>>> {
    let r = rank(v)?;
    // SAFETY: live value of ranked tensor type (checked by `rank`).
    unsafe {
        let t = mlir_sys::mlirValueGetType(v);
        Some((0..r).map(|i| if mlir_sys::mlirShapedTypeIsDynamicDim(t, i as isize) { None } else { Some(mlir_sys::mlirShapedTypeGetDimSize(t, i as isize)) }).collect())
    }
}

pub fn num_operands(op: MlirOperation) -> usize {
    // SAFETY: live operation.
    unsafe { mlir_sys::mlirOperationGetNumOperands(op) as usize }
}

/// Which result of its op `v` is (0 for block arguments).
pub fn result_number(v: MlirValue) -> usize {
    // SAFETY: live value; only op results are asked for their number.
    unsafe { if mlir_sys::mlirValueIsAOpResult(v) { mlir_sys::mlirOpResultGetResultNumber(v) as usize } else { 0 } }
}

/// Whether two ops carry the same attributes (names and values; attributes are uniqued).
pub fn same_attributes(a: MlirOperation, b: MlirOperation) -> bool {
    // SAFETY: live operations; indices below the attribute counts.
    unsafe {
        let n = mlir_sys::mlirOperationGetNumAttributes(a);
        if n != mlir_sys::mlirOperationGetNumAttributes(b) {
            return false;
        }
        (0..n).all(|i| {
            let (x, y) = (mlir_sys::mlirOperationGetAttribute(a, i), mlir_sys::mlirOperationGetAttribute(b, i));
            mlir_sys::mlirIdentifierEqual(x.name, y.name) && mlir_sys::mlirAttributeEqual(x.attribute, y.attribute)
        })
    }
}

/// Whether two values are the same, or the same result of ops of the same name, attributes and
/// type over operands that are the same in turn (a weight read twice, or a shape computation
/// an exporter repeated): lt2 ops are pure. Looks at most 8 ops deep.
pub fn same_outside(a: MlirValue, b: MlirValue) -> bool {
    same_value(a, b, 8)
}

fn same_value(a: MlirValue, b: MlirValue, depth: usize) -> bool {
    if a.ptr == b.ptr {
        return true;
    }
    match (defining_op(a), defining_op(b)) {
        (Some(x), Some(y)) => {
            depth > 0
                && num_regions(x) == 0
                && num_regions(y) == 0
                && name(x) == name(y)
                && num_operands(x) == num_operands(y)
                && result_number(a) == result_number(b)
                && same_type(a, b)
                && same_attributes(x, y)
                && (0..num_operands(x)).all(|j| same_value(operand(x, j), operand(y, j), depth - 1))
        }
        _ => false,
    }
}

/// The ops using `v` (one entry per use).
pub fn users(v: MlirValue) -> Vec<MlirOperation> {
    let mut out = Vec::new();
    // SAFETY: live value; use-list traversal.
    unsafe {
        let mut u = mlir_sys::mlirValueGetFirstUse(v);
        while !mlir_sys::mlirOpOperandIsNull(u) {
            out.push(mlir_sys::mlirOpOperandGetOwner(u));
            u = mlir_sys::mlirOpOperandGetNextUse(u);
        }
    }
    out
}

/// A new detached region with one block of arguments `args` (located at `at`'s location).
pub fn new_region_with_block(at: MlirOperation, args: &[mlir_sys::MlirType]) -> (mlir_sys::MlirRegion, mlir_sys::MlirBlock) {
    // SAFETY: live op for the location; the region takes ownership of the block.
    unsafe {
        let loc = mlir_sys::mlirOperationGetLocation(at);
        let locs = vec![loc; args.len()];
        let block = mlir_sys::mlirBlockCreate(args.len() as isize, args.as_ptr(), locs.as_ptr());
        let region = mlir_sys::mlirRegionCreate();
        mlir_sys::mlirRegionAppendOwnedBlock(region, block);
        (region, block)
    }
}

/// A copy of `op` (same operands, attributes and result types) appended to `block`.
pub fn clone_into(op: MlirOperation, block: mlir_sys::MlirBlock) -> MlirOperation {
    // SAFETY: live op and block; the block takes ownership of the clone.
    unsafe {
        let c = mlir_sys::mlirOperationClone(op);
        mlir_sys::mlirBlockAppendOwnedOperation(block, c);
        c
    }
}

pub fn block_arg(block: mlir_sys::MlirBlock, i: usize) -> MlirValue {
    // SAFETY: live block; index below its argument count (callers created it).
    unsafe { mlir_sys::mlirBlockGetArgument(block, i as isize) }
}

/// Builds an operation state (name, operands, results, attribute text) at `at`'s location.
fn op_state(at: MlirOperation, name: &str, operands: &[MlirValue], results: &[mlir_sys::MlirType], attrs: &[(&str, String)]) -> Option<mlir_sys::MlirOperationState> {
    // SAFETY: live op; strings outlive the calls; the state copies what it needs.
    unsafe {
        let ctx = mlir_sys::mlirOperationGetContext(at);
        let loc = mlir_sys::mlirOperationGetLocation(at);
        let sref = |s: &str| mlir_sys::MlirStringRef { data: s.as_ptr() as *const _, length: s.len() };
        let mut state = mlir_sys::mlirOperationStateGet(sref(name), loc);
        mlir_sys::mlirOperationStateAddOperands(&mut state, operands.len() as isize, operands.as_ptr());
        mlir_sys::mlirOperationStateAddResults(&mut state, results.len() as isize, results.as_ptr());
        let mut named = Vec::new();
        for (k, text) in attrs {
            let a = mlir_sys::mlirAttributeParseGet(ctx, sref(text));
            if a.ptr.is_null() {
                return None;
            }
            named.push(mlir_sys::mlirNamedAttributeGet(mlir_sys::mlirIdentifierGet(ctx, sref(k)), a));
        }
        mlir_sys::mlirOperationStateAddAttributes(&mut state, named.len() as isize, named.as_ptr());
        Some(state)
    }
}

/// Creates op `name` at the end of `block`, located like `at`.
pub fn append_op(block: mlir_sys::MlirBlock, at: MlirOperation, name: &str, operands: &[MlirValue], results: &[mlir_sys::MlirType], attrs: &[(&str, String)]) -> Option<MlirOperation> {
    // SAFETY: live block and op; the block takes ownership of the new op.
    unsafe {
        let mut state = op_state(at, name, operands, results, attrs)?;
        let op = mlir_sys::mlirOperationCreate(&mut state);
        if op.ptr.is_null() {
            return None;
        }
        mlir_sys::mlirBlockAppendOwnedOperation(block, op);
        Some(op)
    }
}

/// Creates op `name` owning `region` right before `before`.
pub fn create_with_region_before(before: MlirOperation, name: &str, operands: &[MlirValue], results: &[mlir_sys::MlirType], attrs: &[(&str, String)], region: mlir_sys::MlirRegion) -> Option<MlirOperation> {
    // SAFETY: live op; the new op takes ownership of the region, `before`'s block of the op.
    unsafe {
        let mut state = op_state(before, name, operands, results, attrs)?;
        mlir_sys::mlirOperationStateAddOwnedRegions(&mut state, 1, &region);
        let op = mlir_sys::mlirOperationCreate(&mut state);
        if op.ptr.is_null() {
            return None;
        }
        let block = mlir_sys::mlirOperationGetBlock(before);
        mlir_sys::mlirBlockInsertOwnedOperationBefore(block, before, op);
        Some(op)
    }
}

/// The first block of region `r` of `op` (None when the region is empty).
pub fn region_block(op: MlirOperation, r: usize) -> Option<mlir_sys::MlirBlock> {
    // SAFETY: live operation, region index checked by callers.
    unsafe {
        let b = mlir_sys::mlirRegionGetFirstBlock(mlir_sys::mlirOperationGetRegion(op, r as isize));
        (!b.ptr.is_null()).then_some(b)
    }
}

/// The block's terminator (None when its last op is not one).
pub fn terminator(block: mlir_sys::MlirBlock) -> Option<MlirOperation> {
    // SAFETY: live block.
    let t = unsafe { mlir_sys::mlirBlockGetTerminator(block) };
    (!t.ptr.is_null()).then_some(t)
}

/// Which argument of `block` the value is (None for op results and other blocks' arguments).
pub fn block_arg_number(v: MlirValue, block: mlir_sys::MlirBlock) -> Option<usize> {
    // SAFETY: live value; owner queried only for block arguments.
    unsafe {
        (mlir_sys::mlirValueIsABlockArgument(v) && mlir_sys::mlirBlockArgumentGetOwner(v).ptr == block.ptr).then(|| mlir_sys::mlirBlockArgumentGetArgNumber(v) as usize)
    }
}

/// A new detached region holding the blocks of region `r` of `op` (which is left empty).
pub fn take_region(op: MlirOperation, r: usize) -> mlir_sys::MlirRegion {
    // SAFETY: live op; the new region owns the moved blocks until an op takes it.
    unsafe {
        let region = mlir_sys::mlirRegionCreate();
        mlir_sys::mlirRegionTakeBody(region, mlir_sys::mlirOperationGetRegion(op, r as isize));
        region
    }
}

/// A copy of `op` inserted right before `before`.
pub fn clone_before(op: MlirOperation, before: MlirOperation) -> MlirOperation {
    // SAFETY: live ops; `before`'s block takes ownership of the clone.
    unsafe {
        let c = mlir_sys::mlirOperationClone(op);
        mlir_sys::mlirBlockInsertOwnedOperationBefore(mlir_sys::mlirOperationGetBlock(before), before, c);
        c
    }
}

/// Copies every attribute of `from` onto `to` except those named in `except`.
pub fn copy_attributes(from: MlirOperation, to: MlirOperation, except: &[&str]) {
    // SAFETY: live ops of one context; indices below the attribute count.
    unsafe {
        for i in 0..mlir_sys::mlirOperationGetNumAttributes(from) {
            let a = mlir_sys::mlirOperationGetAttribute(from, i);
            let s = mlir_sys::mlirIdentifierStr(a.name);
            let key = std::slice::from_raw_parts(s.data as *const u8, s.length);
            if !except.iter().any(|e| e.as_bytes() == key) {
                mlir_sys::mlirOperationSetAttributeByName(to, s, a.attribute);
            }
        }
    }
}

/// The block's arguments.
pub fn block_args(block: mlir_sys::MlirBlock) -> Vec<MlirValue> {
    // SAFETY: live block; indices below its argument count.
    unsafe { (0..mlir_sys::mlirBlockGetNumArguments(block)).map(|i| mlir_sys::mlirBlockGetArgument(block, i)).collect() }
}
