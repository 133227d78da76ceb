//! Typed builders for lt2 IR. Each op has one function here that writes it (generic MLIR
//! syntax, parsed and verified afterwards by `context::parse_module`), so op names, operand
//! order and attribute spellings have a single source.

use std::fmt::Write;

use crate::ops::{Lt2Op, LOOP_YIELD, MAX_CARRIED};
use crate::types::{Elem, TensorType};

/// An SSA value being built: its printed name (`%12`, `%7#1`, `%arg0`) and type.
#[derive(Clone, Debug, PartialEq)]
pub struct Val {
    pub name: String,
    pub ty: TensorType,
}

/// Elementwise binary ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
}

/// Elementwise unary ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Sigmoid,
    Softplus,
    Sqrt,
    Silu,
    Log,
    Tanh,
    Relu,
    Reciprocal,
    Abs,
    Sin,
    Cos,
}

/// Reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// A graph-level argument: its type, symbolic dims and the ONNX name it came from.
#[derive(Clone, Debug)]
pub struct Arg {
    pub ty: TensorType,
    pub dims: Vec<String>,
    pub onnx_name: String,
}

/// An `lt2.loop` whose region is being built.
struct OpenLoop {
    name: String,
    carried: Vec<TensorType>,
    trip_count: i64,
    loc: String,
}

/// Builds one `func.func` (the entry point) with nested `lt2.loop` regions.
pub struct FuncBuilder {
    name: String,
    args: Vec<Arg>,
    body: String,
    indent: usize,
    next_id: usize,
    /// Loops whose region is being built, innermost last.
    open_loops: Vec<OpenLoop>,
}

fn fmt_f32(v: f32) -> String {
    if !v.is_finite() {
        // MLIR spells infinities and NaNs by their bit pattern.
        return format!("0x{:08X}", v.to_bits());
    }
    // MLIR float literals need a '.'; 9 significant digits round-trip any f32.
    format!("{:.8e}", v as f64)
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\22"),
            '\\' => o.push_str("\\5C"),
            '\n' => o.push_str("\\0A"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\{:02X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Values of a constant.
pub enum ConstValues<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
    Bool(&'a [bool]),
}

/// Row-major items nested as MLIR's dense literal wants them (`[[1, 2], [3, 4]]`).
fn nested(items: &[String], dims: &[Option<i64>]) -> String {
    match dims.split_first() {
        None => items.first().cloned().unwrap_or_default(),
        Some((&d, rest)) => {
            let n = d.unwrap_or(0).max(0) as usize;
            let inner: usize = rest.iter().map(|x| x.unwrap_or(0).max(0) as usize).product();
            let parts: Vec<String> = (0..n).map(|i| nested(&items[i * inner..(i + 1) * inner], rest)).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

fn str_array(xs: &[String]) -> String {
    format!("[{}]", xs.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

fn i64_array(xs: &[i64]) -> String {
    if xs.is_empty() {
        "array<i64>".into()
    } else {
        format!("array<i64: {}>", xs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
    }
}

impl FuncBuilder {
    /// Starts the function `name` with graph-level arguments.
    pub fn new(name: &str, args: Vec<Arg>) -> FuncBuilder {
        FuncBuilder { name: name.into(), args, body: String::new(), indent: 2, next_id: 0, open_loops: Vec::new() }
    }

    /// The function's arguments as values.
    pub fn args(&self) -> Vec<Val> {
        self.args.iter().enumerate().map(|(i, a)| Val { name: format!("%arg{i}"), ty: a.ty.clone() }).collect()
    }

    fn fresh(&mut self) -> String {
        self.next_id += 1;
        format!("%v{}", self.next_id)
    }

    fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.body.push(' ');
        }
        self.body.push_str(s);
        self.body.push('\n');
    }

    /// Emits one op with `results` result types; returns its results.
    fn op(&mut self, op: Lt2Op, operands: &[&Val], attrs: &[(&str, String)], results: &[TensorType], loc: &str) -> Vec<Val> {
        let name = self.fresh();
        let ops: Vec<&str> = operands.iter().map(|v| v.name.as_str()).collect();
        let ins: Vec<String> = operands.iter().map(|v| v.ty.to_string()).collect();
        let outs: Vec<String> = results.iter().map(|t| t.to_string()).collect();
        let attr_s = if attrs.is_empty() {
            String::new()
        } else {
            format!(" {{{}}}", attrs.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "))
        };
        let lhs = match results.len() {
            0 => String::new(),
            1 => format!("{name} = "),
            n => format!("{name}:{n} = "),
        };
        let out_s = if results.len() == 1 { outs[0].clone() } else { format!("({})", outs.join(", ")) };
        let text = format!(
            "{lhs}\"{}\"({}){attr_s} : ({}) -> {out_s} loc({})",
            op.name(),
            ops.join(", "),
            ins.join(", "),
            quote(loc)
        );
        self.line(&text);
        match results.len() {
            1 => vec![Val { name, ty: results[0].clone() }],
            _ => results.iter().enumerate().map(|(i, t)| Val { name: format!("{name}#{i}"), ty: t.clone() }).collect(),
        }
    }

    fn one(&mut self, op: Lt2Op, operands: &[&Val], attrs: &[(&str, String)], ty: TensorType, loc: &str) -> Val {
        self.op(op, operands, attrs, &[ty], loc).remove(0)
    }

    /// `lt2.weight`: a named weight.
    pub fn weight(&mut self, name: &str, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Weight, &[], &[("name", quote(name))], ty, loc)
    }
    /// `lt2.constant` holding `values` (printed as a dense attribute; keep it small).
    pub fn constant(&mut self, ty: TensorType, values: ConstValues<'_>, loc: &str) -> Val {
        let items: Vec<String> = match values {
            ConstValues::F32(v) => v.iter().map(|&x| fmt_f32(x)).collect(),
            ConstValues::I64(v) => v.iter().map(|x| x.to_string()).collect(),
            ConstValues::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
        };
        let dense = if ty.rank() == 0 { items.first().cloned().unwrap_or_default() } else { nested(&items, &ty.dims) };
        self.one(Lt2Op::Constant, &[], &[("value", format!("dense<{dense}> : {ty}"))], ty, loc)
    }
    /// `lt2.embed`: table rows picked by ids.
    pub fn embed(&mut self, table: &Val, ids: &Val, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Embed, &[table, ids], &[], ty, loc)
    }
    /// `lt2.gather` along `axis`.
    pub fn gather(&mut self, data: &Val, idx: &Val, axis: i64, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Gather, &[data, idx], &[("axis", format!("{axis} : i64"))], ty, loc)
    }
    /// `lt2.rms_norm`.
    pub fn rms_norm(&mut self, x: &Val, scale: &Val, epsilon: f32, axis: i64, ty: TensorType, loc: &str) -> Val {
        self.one(
            Lt2Op::RmsNorm,
            &[x, scale],
            &[("epsilon", format!("{} : f32", fmt_f32(epsilon))), ("axis", format!("{axis} : i64"))],
            ty,
            loc,
        )
    }
    /// `lt2.linear`: x times weight w (transposed when `transpose_w`), optional bias.
    pub fn linear(&mut self, x: &Val, w: &Val, bias: Option<&Val>, transpose_w: bool, ty: TensorType, loc: &str) -> Val {
        let mut ops = vec![x, w];
        ops.extend(bias);
        self.one(Lt2Op::Linear, &ops, &[("transpose_w", transpose_w.to_string())], ty, loc)
    }
    /// `lt2.matmul` of two activations.
    pub fn matmul(&mut self, a: &Val, b: &Val, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::MatMul, &[a, b], &[], ty, loc)
    }
    /// Elementwise binary op with broadcasting.
    pub fn binary(&mut self, kind: BinaryOp, a: &Val, b: &Val, ty: TensorType, loc: &str) -> Val {
        let op = match kind {
            BinaryOp::Add => Lt2Op::Add,
            BinaryOp::Sub => Lt2Op::Sub,
            BinaryOp::Mul => Lt2Op::Mul,
            BinaryOp::Div => Lt2Op::Div,
            BinaryOp::Pow => Lt2Op::Pow,
            BinaryOp::Min => Lt2Op::Min,
            BinaryOp::Max => Lt2Op::Max,
        };
        self.one(op, &[a, b], &[], ty, loc)
    }
    /// Elementwise unary op.
    pub fn unary(&mut self, kind: UnaryOp, x: &Val, loc: &str) -> Val {
        let op = match kind {
            UnaryOp::Neg => Lt2Op::Neg,
            UnaryOp::Exp => Lt2Op::Exp,
            UnaryOp::Sigmoid => Lt2Op::Sigmoid,
            UnaryOp::Softplus => Lt2Op::Softplus,
            UnaryOp::Sqrt => Lt2Op::Sqrt,
            UnaryOp::Silu => Lt2Op::Silu,
            UnaryOp::Log => Lt2Op::Log,
            UnaryOp::Tanh => Lt2Op::Tanh,
            UnaryOp::Relu => Lt2Op::Relu,
            UnaryOp::Reciprocal => Lt2Op::Reciprocal,
            UnaryOp::Abs => Lt2Op::Abs,
            UnaryOp::Sin => Lt2Op::Sin,
            UnaryOp::Cos => Lt2Op::Cos,
        };
        let ty = x.ty.clone();
        self.one(op, &[x], &[], ty, loc)
    }
    /// Reduction over non-negative `axes`.
    pub fn reduce(&mut self, kind: ReduceOp, x: &Val, axes: &[i64], keepdims: bool, ty: TensorType, loc: &str) -> Val {
        let op = match kind {
            ReduceOp::Sum => Lt2Op::ReduceSum,
            ReduceOp::Mean => Lt2Op::ReduceMean,
            ReduceOp::Max => Lt2Op::ReduceMax,
        };
        self.one(op, &[x], &[("axes", i64_array(axes)), ("keepdims", keepdims.to_string())], ty, loc)
    }
    /// `lt2.reshape` to dim expressions.
    pub fn reshape(&mut self, x: &Val, shape: &[String], ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Reshape, &[x], &[("shape", str_array(shape))], ty, loc)
    }
    /// `lt2.transpose`.
    pub fn transpose(&mut self, x: &Val, perm: &[i64], ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Transpose, &[x], &[("perm", i64_array(perm))], ty, loc)
    }
    /// `lt2.expand` to dim expressions.
    pub fn expand(&mut self, x: &Val, shape: &[String], ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Expand, &[x], &[("shape", str_array(shape))], ty, loc)
    }
    /// `lt2.range`: int64 [size].
    pub fn range(&mut self, start: i64, delta: i64, size: &str, ty: TensorType, loc: &str) -> Val {
        self.one(
            Lt2Op::Range,
            &[],
            &[("start", format!("{start} : i64")), ("delta", format!("{delta} : i64")), ("size", quote(size))],
            ty,
            loc,
        )
    }
    /// `lt2.concat` of two tensors.
    pub fn concat(&mut self, a: &Val, b: &Val, axis: i64, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Concat, &[a, b], &[("axis", format!("{axis} : i64"))], ty, loc)
    }
    /// `lt2.slice` with constant bounds.
    #[allow(clippy::too_many_arguments)]
    pub fn slice(&mut self, x: &Val, axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64], ty: TensorType, loc: &str) -> Val {
        self.one(
            Lt2Op::Slice,
            &[x],
            &[("axes", i64_array(axes)), ("starts", i64_array(starts)), ("ends", i64_array(ends)), ("steps", i64_array(steps))],
            ty,
            loc,
        )
    }
    /// `lt2.causal_conv` (channels-last) with optional bias and past state; returns (y, state_out).
    #[allow(clippy::too_many_arguments)]
    pub fn causal_conv(&mut self, x: &Val, w: &Val, bias: Option<&Val>, past: Option<&Val>, activation: &str, y: TensorType, state: TensorType, loc: &str) -> (Val, Val) {
        let mut ops = vec![x, w];
        ops.extend(bias);
        ops.extend(past);
        let seg = format!("array<i32: 1, 1, {}, {}>", bias.is_some() as i32, past.is_some() as i32);
        let mut r = self.op(Lt2Op::CausalConv, &ops, &[("activation", quote(activation)), ("operandSegmentSizes", seg)], &[y, state], loc);
        let s = r.pop().expect("two results");
        (r.pop().expect("two results"), s)
    }
    /// `lt2.gdn` (LinearAttention-27 semantics); returns (out, state_out).
    #[allow(clippy::too_many_arguments)]
    pub fn gdn(
        &mut self,
        q: &Val,
        k: &Val,
        v: &Val,
        g: Option<&Val>,
        beta: Option<&Val>,
        state: Option<&Val>,
        q_heads: i64,
        kv_heads: i64,
        scale: f32,
        update_rule: &str,
        out: TensorType,
        state_out: TensorType,
        loc: &str,
    ) -> (Val, Val) {
        let mut ops = vec![q, k, v];
        ops.extend(g);
        ops.extend(beta);
        ops.extend(state);
        let seg = format!("array<i32: 1, 1, 1, {}, {}, {}>", g.is_some() as i32, beta.is_some() as i32, state.is_some() as i32);
        let mut r = self.op(
            Lt2Op::Gdn,
            &ops,
            &[
                ("q_heads", format!("{q_heads} : i64")),
                ("kv_heads", format!("{kv_heads} : i64")),
                ("scale", format!("{} : f32", fmt_f32(scale))),
                ("update_rule", quote(update_rule)),
                ("operandSegmentSizes", seg),
            ],
            &[out, state_out],
            loc,
        );
        let s = r.pop().expect("two results");
        (r.pop().expect("two results"), s)
    }
    /// `lt2.attention` over packed heads; `window` = (left, right), -1 = unbounded; `top_left`
    /// aligns the mask to query i at position i (ONNX without past) instead of i + Lk - Lq.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(&mut self, q: &Val, k: &Val, v: &Val, q_heads: i64, kv_heads: i64, scale: f32, causal: bool, window: (i64, i64), top_left: bool, ty: TensorType, loc: &str) -> Val {
        self.attention_masked(q, k, v, None, q_heads, kv_heads, scale, causal, window, top_left, ty, loc)
    }
    /// `lt2.attention` with an optional mask added to the scores.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_masked(&mut self, q: &Val, k: &Val, v: &Val, mask: Option<&Val>, q_heads: i64, kv_heads: i64, scale: f32, causal: bool, window: (i64, i64), top_left: bool, ty: TensorType, loc: &str) -> Val {
        let mut ops = vec![q, k, v];
        ops.extend(mask);
        self.one(
            Lt2Op::Attention,
            &ops,
            &[
                ("q_heads", format!("{q_heads} : i64")),
                ("kv_heads", format!("{kv_heads} : i64")),
                ("scale", format!("{} : f32", fmt_f32(scale))),
                ("causal", causal.to_string()),
                ("window_left", format!("{} : i64", window.0)),
                ("window_right", format!("{} : i64", window.1)),
                ("top_left", top_left.to_string()),
            ],
            ty,
            loc,
        )
    }
    /// `lt2.softmax` along `axis`.
    pub fn softmax(&mut self, x: &Val, axis: i64, loc: &str) -> Val {
        let ty = x.ty.clone();
        self.one(Lt2Op::Softmax, &[x], &[("axis", format!("{axis} : i64"))], ty, loc)
    }
    /// `lt2.where`: cond ? a : b.
    pub fn select(&mut self, cond: &Val, a: &Val, b: &Val, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Where, &[cond, a, b], &[], ty, loc)
    }
    /// `lt2.compare` (`predicate`: eq lt le gt ge and or not); `b` is None for `not`.
    pub fn compare(&mut self, predicate: &str, a: &Val, b: Option<&Val>, ty: TensorType, loc: &str) -> Val {
        let mut ops = vec![a];
        ops.extend(b);
        self.one(Lt2Op::Compare, &ops, &[("predicate", quote(predicate))], ty, loc)
    }
    /// `lt2.cast` to the element type of `ty`.
    pub fn cast(&mut self, x: &Val, ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::Cast, &[x], &[], ty, loc)
    }
    /// `lt2.trilu`.
    pub fn trilu(&mut self, x: &Val, upper: bool, k: i64, loc: &str) -> Val {
        let ty = x.ty.clone();
        self.one(Lt2Op::Trilu, &[x], &[("upper", upper.to_string()), ("k", format!("{k} : i64"))], ty, loc)
    }
    /// `lt2.dim_values`: int64 values of dim expressions, computed when the model runs.
    pub fn dim_values(&mut self, dims: &[String], ty: TensorType, loc: &str) -> Val {
        self.one(Lt2Op::DimValues, &[], &[("dims", str_array(dims))], ty, loc)
    }
    /// `lt2.cumsum`: running sums along `axis` (ONNX CumSum with a constant axis).
    pub fn cumsum(&mut self, x: &Val, axis: i64, exclusive: bool, reverse: bool, loc: &str) -> Val {
        let ty = x.ty.clone();
        self.one(Lt2Op::CumSum, &[x], &[("axis", format!("{axis} : i64")), ("exclusive", exclusive.to_string()), ("reverse", reverse.to_string())], ty, loc)
    }
    /// `lt2.lightning_indexer`.
    #[allow(clippy::too_many_arguments)]
    pub fn lightning_indexer(&mut self, q: &Val, k: &Val, w: Option<&Val>, num_heads: i64, top_k: i64, score: &str, ty: TensorType, loc: &str) -> Val {
        let mut ops = vec![q, k];
        ops.extend(w);
        self.one(
            Lt2Op::LightningIndexer,
            &ops,
            &[("num_heads", format!("{num_heads} : i64")), ("top_k", format!("{top_k} : i64")), ("score", quote(score))],
            ty,
            loc,
        )
    }
    /// `lt2.topk`: (values, indices).
    pub fn topk(&mut self, x: &Val, axis: i64, largest: bool, k: &str, values: TensorType, indices: TensorType, loc: &str) -> (Val, Val) {
        let mut r = self.op(
            Lt2Op::TopK,
            &[x],
            &[("axis", format!("{axis} : i64")), ("largest", largest.to_string()), ("k", quote(k))],
            &[values, indices],
            loc,
        );
        let i = r.pop().expect("two results");
        (r.pop().expect("two results"), i)
    }
    /// `lt2.sparse_attention`.
    #[allow(clippy::too_many_arguments)]
    pub fn sparse_attention(&mut self, q: &Val, k: &Val, v: &Val, idx: &Val, q_heads: i64, kv_heads: i64, scale: f32, ty: TensorType, loc: &str) -> Val {
        self.one(
            Lt2Op::SparseAttention,
            &[q, k, v, idx],
            &[("q_heads", format!("{q_heads} : i64")), ("kv_heads", format!("{kv_heads} : i64")), ("scale", format!("{} : f32", fmt_f32(scale)))],
            ty,
            loc,
        )
    }
    /// `lt2.rope` over packed heads.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(&mut self, x: &Val, cos: &Val, sin: &Val, pos: Option<&Val>, num_heads: i64, interleaved: bool, rotary_dim: i64, loc: &str) -> Val {
        let mut ops = vec![x, cos, sin];
        ops.extend(pos);
        let ty = x.ty.clone();
        self.one(
            Lt2Op::Rope,
            &ops,
            &[
                ("num_heads", format!("{num_heads} : i64")),
                ("interleaved", interleaved.to_string()),
                ("rotary_dim", format!("{rotary_dim} : i64")),
            ],
            ty,
            loc,
        )
    }

    /// Opens an `lt2.loop` carrying `inits`; returns (iteration value, carried values inside the
    /// region). Ops built until `end_loop` go into the region.
    pub fn begin_loop(&mut self, inits: &[Val], trip_count: i64, loc: &str) -> Result<(Val, Vec<Val>), String> {
        if inits.is_empty() || inits.len() > MAX_CARRIED {
            return Err(format!("a loop must carry 1 to {MAX_CARRIED} values, this one carries {}", inits.len()));
        }
        let name = self.fresh();
        let ops: Vec<&str> = inits.iter().map(|v| v.name.as_str()).collect();
        // The result count is known at end_loop (carried + scan outputs): leave a placeholder.
        self.line(&format!("{name}@LHS = \"{}\"({}) ({{", Lt2Op::Loop.name(), ops.join(", ")));
        let iter = Val { name: format!("{name}_iter"), ty: TensorType::new(vec![], Elem::I64) };
        let carried: Vec<Val> = inits.iter().enumerate().map(|(i, v)| Val { name: format!("{name}_c{i}"), ty: v.ty.clone() }).collect();
        let mut head = format!("^bb0({}: {}", iter.name, iter.ty);
        for c in &carried {
            let _ = write!(head, ", {}: {}", c.name, c.ty);
        }
        head.push_str("):");
        self.line(&head);
        self.indent += 2;
        self.open_loops.push(OpenLoop { name, carried: inits.iter().map(|v| v.ty.clone()).collect(), trip_count, loc: loc.to_string() });
        Ok((iter, carried))
    }

    /// Closes the innermost loop with the next carried values and the per-iteration scan
    /// values; returns the loop's results: the last carried values, then each scan value
    /// stacked over iterations (`[trip_count, ...]`).
    pub fn end_loop(&mut self, yields: &[Val], scans: &[Val]) -> Result<Vec<Val>, String> {
        let l = self.open_loops.pop().ok_or("end_loop without begin_loop")?;
        let tys = &l.carried;
        if yields.len() != tys.len() || yields.iter().zip(tys).any(|(y, t)| &y.ty != t) {
            return Err(format!(
                "loop body yields ({}) but carries ({})",
                yields.iter().map(|y| y.ty.to_string()).collect::<Vec<_>>().join(", "),
                tys.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        if tys.len() + scans.len() > MAX_CARRIED {
            return Err(format!("a loop can have at most {MAX_CARRIED} carried values and scan outputs together"));
        }
        let all: Vec<&Val> = yields.iter().chain(scans).collect();
        let ys: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
        let ts: Vec<String> = all.iter().map(|v| v.ty.to_string()).collect();
        self.line(&format!("{LOOP_YIELD} {} : {}", ys.join(", "), ts.join(", ")));
        self.indent -= 2;
        let mut results: Vec<TensorType> = tys.clone();
        for s in scans {
            let mut dims = vec![Some(l.trip_count)];
            dims.extend(s.ty.dims.iter().copied());
            results.push(TensorType::new(dims, s.ty.elem));
        }
        let segs = |k: usize| (0..MAX_CARRIED).map(|i| if i < k { "1" } else { "0" }).collect::<Vec<_>>().join(", ");
        let in_types: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
        let out_types: Vec<String> = results.iter().map(|t| t.to_string()).collect();
        self.line(&format!(
            "}}) {{trip_count = {} : i64, operandSegmentSizes = array<i32: {}>, resultSegmentSizes = array<i32: {}>}} : ({}) -> {} loc({})",
            l.trip_count,
            segs(tys.len()),
            segs(results.len()),
            in_types.join(", "),
            if results.len() == 1 { out_types[0].clone() } else { format!("({})", out_types.join(", ")) },
            quote(&l.loc)
        ));
        let name = l.name;
        let lhs = if results.len() == 1 { name.clone() } else { format!("{name}:{}", results.len()) };
        self.body = self.body.replacen(&format!("{name}@LHS"), &lhs, 1);
        Ok(match results.len() {
            1 => vec![Val { name, ty: results[0].clone() }],
            _ => results.iter().enumerate().map(|(i, t)| Val { name: format!("{name}#{i}"), ty: t.clone() }).collect(),
        })
    }

    /// Finishes the function returning `outputs` (with their ONNX names and symbolic dims),
    /// and wraps it in a module.
    pub fn finish(self, outputs: &[(Val, String, Vec<String>)]) -> Result<String, String> {
        if !self.open_loops.is_empty() {
            return Err("unclosed lt2.loop".into());
        }
        let mut s = String::from("module {\n");
        let args: Vec<String> = self
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| format!("%arg{i}: {} {{lt2.dims = {}, lt2.name = {}}}", a.ty, str_array(&a.dims), quote(&a.onnx_name)))
            .collect();
        let rets: Vec<String> = outputs
            .iter()
            .map(|(v, name, dims)| format!("{} {{lt2.dims = {}, lt2.name = {}}}", v.ty, str_array(dims), quote(name)))
            .collect();
        let _ = writeln!(s, "  func.func @{}({}) -> ({}) {{", self.name, args.join(", "), rets.join(", "));
        s.push_str(&self.body);
        let vals: Vec<&str> = outputs.iter().map(|(v, _, _)| v.name.as_str()).collect();
        let tys: Vec<String> = outputs.iter().map(|(v, _, _)| v.ty.to_string()).collect();
        let _ = writeln!(s, "    func.return {} : {}", vals.join(", "), tys.join(", "));
        s.push_str("  }\n}\n");
        Ok(s)
    }
}
