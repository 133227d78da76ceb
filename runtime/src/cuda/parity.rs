//! Every op on the CUDA backend against the CPU backend (the oracle), on random inputs and on
//! the error cases: f32 outputs within a relative L2 error of 1e-5, int64 and bool outputs
//! equal, and an error on one backend exactly when the other errs (a device-detected error may
//! surface at the download). Skipped, saying why, where no usable GPU is present; on the GPU
//! machine the test binary runs it (scripts/gpu-check.sh).

use std::collections::HashMap;

use crate::backend::Backend;
use crate::cpu::shape::test_util::{rel_err, Lcg};
use crate::plan::*;
use crate::tensor::{Data, Tensor};


struct Case {
    name: String,
    op: Op,
    inputs: Vec<Option<Tensor>>,
    env: HashMap<String, i64>,
}

fn t(g: &mut Lcg, shape: &[usize]) -> Tensor {
    g.tensor(shape)
}
fn pos(g: &mut Lcg, shape: &[usize]) -> Tensor {
    let x = g.tensor(shape);
    Tensor::f32(x.shape.clone(), x.as_f32().unwrap().iter().map(|v| v.abs() + 0.1).collect())
}
fn i64s(shape: &[usize], f: impl Fn(usize) -> i64) -> Tensor {
    let n = shape.iter().product();
    Tensor::i64(shape.to_vec(), (0..n).map(f).collect())
}
fn bools(shape: &[usize], f: impl Fn(usize) -> bool) -> Tensor {
    let n = shape.iter().product();
    Tensor { shape: shape.to_vec(), data: Data::Bool((0..n).map(f).collect()) }
}
fn env(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

fn cases() -> Vec<Case> {
    let mut g = Lcg::new(2024);
    let mut v: Vec<Case> = Vec::new();
    let mut add = |name: &str, op: Op, inputs: Vec<Option<Tensor>>, e: HashMap<String, i64>| v.push(Case { name: name.into(), op, inputs, env: e });
    let none = HashMap::new;

    // Binary, f32 and int64, broadcasting, errors.
    for kind in [BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul, BinaryKind::Div, BinaryKind::Pow, BinaryKind::Min, BinaryKind::Max, BinaryKind::SiluMul] {
        let op = Op::Binary(Binary { kind: kind as i32 });
        add(&format!("binary {kind:?} bcast"), op.clone(), vec![Some(pos(&mut g, &[2, 1, 3])), Some(t(&mut g, &[4, 1]))], none());
        add(&format!("binary {kind:?} same"), op.clone(), vec![Some(pos(&mut g, &[5, 7])), Some(t(&mut g, &[5, 7]))], none());
        add(&format!("binary {kind:?} scalar"), op.clone(), vec![Some(Tensor::f32(vec![], vec![1.5])), Some(t(&mut g, &[3, 2]))], none());
        let a = i64s(&[2, 3], |i| i as i64 * 7 - 20);
        let b = i64s(&[3], |i| [3, -2, 5][i]);
        add(&format!("binary {kind:?} i64"), op.clone(), vec![Some(a), Some(b)], none());
    }
    // Four outputs per thread (elementwise.cu lt2_binary4_f32): same shapes, a row vector, a
    // scalar, one value per row of 8, each operand broadcast.
    for (kind, sa, sb) in [
        (BinaryKind::Add, &[4usize, 64][..], &[4usize, 64][..]),
        (BinaryKind::Mul, &[3, 5, 8], &[8]),
        (BinaryKind::Sub, &[1], &[6, 12]),
        (BinaryKind::Div, &[2, 3, 8], &[3, 1]),
        (BinaryKind::Max, &[8], &[5, 1, 8]),
        (BinaryKind::SiluMul, &[3, 16], &[3, 16]),
    ] {
        add(&format!("binary {kind:?} {sa:?} {sb:?} (float4)"), Op::Binary(Binary { kind: kind as i32 }), vec![Some(pos(&mut g, sa)), Some(pos(&mut g, sb))], none());
    }
    for kind in [UnaryKind::Silu, UnaryKind::Exp, UnaryKind::Sigmoid] {
        add(&format!("unary {kind:?} [6, 40] (float4)"), Op::Unary(Unary { kind: kind as i32 }), vec![Some(t(&mut g, &[6, 40]))], none());
    }
    let div = Op::Binary(Binary { kind: BinaryKind::Div as i32 });
    add("binary Div i64 by zero", div.clone(), vec![Some(i64s(&[3], |i| i as i64)), Some(i64s(&[3], |i| i as i64 - 1))], none());
    add("binary Div i64 MIN/-1", div.clone(), vec![Some(i64s(&[2], |_| i64::MIN)), Some(i64s(&[2], |i| [-1, 7][i]))], none());
    add("binary dtype mismatch", div, vec![Some(i64s(&[3], |i| i as i64)), Some(t(&mut g, &[3]))], none());
    add("binary bad bcast", Op::Binary(Binary { kind: 0 }), vec![Some(t(&mut g, &[2, 3])), Some(t(&mut g, &[4]))], none());
    add("binary 5-d bcast", Op::Binary(Binary { kind: 2 }), vec![Some(t(&mut g, &[2, 1, 3, 1, 2])), Some(t(&mut g, &[1, 4, 1, 5, 1]))], none());

    // Unary.
    for k in 0..=13 {
        let kind = UnaryKind::try_from(k).unwrap();
        let op = Op::Unary(Unary { kind: k });
        let x = if matches!(kind, UnaryKind::Log | UnaryKind::Sqrt) { pos(&mut g, &[4, 33]) } else { Tensor::f32(vec![4, 33], g.vec(132).iter().map(|v| v * 30.0).collect()) };
        add(&format!("unary {kind:?}"), op.clone(), vec![Some(x)], none());
        add(&format!("unary {kind:?} i64"), op.clone(), vec![Some(i64s(&[5], |i| i as i64 * 3 - 7))], none());
        add(&format!("unary {kind:?} bool"), op, vec![Some(bools(&[3], |i| i % 2 == 0))], none());
    }

    // Reduce.
    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
        for (axes, keep) in [(vec![0, 2], true), (vec![2, -3], false), (vec![], false), (vec![1], true), (vec![-1], false)] {
            let op = Op::Reduce(Reduce { kind: kind as i32, axes: axes.clone(), keepdims: keep });
            add(&format!("reduce {kind:?} {axes:?} {keep}"), op.clone(), vec![Some(t(&mut g, &[3, 40, 5]))], none());
            add(&format!("reduce {kind:?} {axes:?} {keep} i64"), op, vec![Some(i64s(&[3, 4, 5], |i| (i as i64 * 37) % 23 - 11))], none());
        }
        let op = Op::Reduce(Reduce { kind: kind as i32, axes: vec![1], keepdims: false });
        add(&format!("reduce {kind:?} empty"), op.clone(), vec![Some(Tensor::f32(vec![2, 0], vec![]))], none());
        add(&format!("reduce {kind:?} empty i64"), op.clone(), vec![Some(Tensor::i64(vec![2, 0], vec![]))], none());
        add(&format!("reduce {kind:?} bool"), op, vec![Some(bools(&[2, 2], |_| true))], none());
    }
    add("reduce twice", Op::Reduce(Reduce { kind: 0, axes: vec![1, -1], keepdims: false }), vec![Some(t(&mut g, &[2, 3]))], none());
    add("reduce long row", Op::Reduce(Reduce { kind: 1, axes: vec![1], keepdims: true }), vec![Some(t(&mut g, &[3, 5000]))], none());

    // CumSum.
    for (axis, exclusive, reverse) in [(1, false, false), (1, true, false), (-1, false, true), (0, true, true)] {
        let op = Op::CumSum(CumSum { axis, exclusive, reverse });
        add(&format!("cumsum {axis} {exclusive} {reverse}"), op.clone(), vec![Some(t(&mut g, &[3, 70, 5]))], none());
        add(&format!("cumsum {axis} {exclusive} {reverse} i64"), op, vec![Some(i64s(&[3, 70, 5], |i| (i as i64 * 37) % 23 - 11))], none());
    }
    add("cumsum bool", Op::CumSum(CumSum { axis: 0, exclusive: false, reverse: false }), vec![Some(bools(&[2], |_| true))], none());
    add("cumsum empty", Op::CumSum(CumSum { axis: 1, exclusive: false, reverse: false }), vec![Some(Tensor::f32(vec![2, 0], vec![]))], none());

    // Shape ops.
    let e = env(&[("batch", 2), ("seq", 3)]);
    add("reshape", Op::Reshape(Reshape { shape: vec!["batch".into(), "seq*4".into()] }), vec![Some(t(&mut g, &[2, 3, 4]))], e.clone());
    add("reshape bad", Op::Reshape(Reshape { shape: vec!["batch".into(), "seq".into()] }), vec![Some(t(&mut g, &[2, 3, 4]))], e.clone());
    for perm in [vec![2, 0, 1], vec![], vec![0, 2, 1], vec![0, 0, 1]] {
        add(&format!("transpose {perm:?}"), Op::Transpose(Transpose { perm: perm.clone() }), vec![Some(t(&mut g, &[2, 3, 4]))], none());
        add(&format!("transpose {perm:?} i64"), Op::Transpose(Transpose { perm: perm.clone() }), vec![Some(i64s(&[2, 3, 4], |i| i as i64))], none());
    }
    add("transpose 4-d bool", Op::Transpose(Transpose { perm: vec![3, 1, 0, 2] }), vec![Some(bools(&[2, 3, 4, 5], |i| i % 3 == 0))], none());
    add("expand", Op::Expand(Expand { shape: vec!["2".into(), "1".into(), "n".into()] }), vec![Some(t(&mut g, &[3, 1]))], env(&[("n", 4)]));
    add("expand bool", Op::Expand(Expand { shape: vec!["3".into()] }), vec![Some(bools(&[1], |_| true))], none());
    add("expand bad", Op::Expand(Expand { shape: vec!["2".into(), "5".into()] }), vec![Some(t(&mut g, &[3, 1]))], none());
    add("range", Op::Range(Range { start: 5, delta: -2, size: "n+1".into(), positional: false }), vec![], env(&[("n", 3)]));
    add("range empty", Op::Range(Range { start: 0, delta: 1, size: "0".into(), positional: false }), vec![], none());
    add("dim values", Op::DimValues(DimValues { dims: vec!["n+1".into(), "b*n".into()], shape: vec![2] }), vec![], env(&[("n", 3), ("b", 2)]));
    add("dim value scalar", Op::DimValues(DimValues { dims: vec!["n-1".into()], shape: vec![] }), vec![], env(&[("n", 7)]));
    add("dim values unbound", Op::DimValues(DimValues { dims: vec!["m".into()], shape: vec![1] }), vec![], none());
    add("range overflow", Op::Range(Range { start: i64::MAX, delta: 1, size: "2".into(), positional: false }), vec![], none());
    let concat = Op::Concat(Concat { axis: -2 });
    add("concat", concat.clone(), vec![Some(t(&mut g, &[2, 1, 3])), Some(t(&mut g, &[2, 2, 3])), Some(t(&mut g, &[2, 4, 3]))], none());
    add("concat i64 axis0", Op::Concat(Concat { axis: 0 }), vec![Some(i64s(&[2], |i| i as i64)), Some(i64s(&[1], |_| 3))], none());
    add("concat bool", Op::Concat(Concat { axis: 0 }), vec![Some(bools(&[1], |_| true)), Some(bools(&[2], |i| i == 1))], none());
    add("concat bad", concat.clone(), vec![Some(t(&mut g, &[2, 1, 3])), Some(t(&mut g, &[2, 2, 4]))], none());
    add("concat dtype", concat, vec![Some(t(&mut g, &[2, 1, 3])), Some(i64s(&[2, 1, 3], |_| 0))], none());
    let x56 = i64s(&[5, 6], |i| i as i64);
    for (axes, starts, ends, steps) in [
        (vec![1, 0], vec![-1, 1], vec![i64::MIN, 100], vec![-2, 2]),
        (vec![], vec![0, 2], vec![2, -1], vec![]),
        (vec![0], vec![i64::MAX], vec![i64::MIN], vec![-1]),
        (vec![0], vec![3], vec![2], vec![1]),
        (vec![1], vec![7], vec![9], vec![]),
        (vec![-1], vec![1], vec![4], vec![i64::MAX]),
        (vec![0], vec![0], vec![1], vec![0]),
        (vec![0, 0], vec![0, 0], vec![1, 1], vec![]),
    ] {
        let op = Op::Slice(Slice { axes: axes.clone(), starts: starts.clone(), ends: ends.clone(), steps: steps.clone() });
        add(&format!("slice {axes:?} {starts:?} {ends:?} {steps:?}"), op.clone(), vec![Some(x56.clone())], none());
        add(&format!("slice f32 {axes:?} {starts:?}"), op, vec![Some(t(&mut g, &[5, 6]))], none());
    }
    add("embed", Op::Embed(Embed {}), vec![Some(t(&mut g, &[10, 6])), Some(i64s(&[2, 3], |i| [1, 9, 0, -1, 4, -10][i]))], none());
    add("embed out of range", Op::Embed(Embed {}), vec![Some(t(&mut g, &[10, 6])), Some(i64s(&[2], |i| [1, 10][i]))], none());
    add("embed f32 ids", Op::Embed(Embed {}), vec![Some(t(&mut g, &[10, 6])), Some(t(&mut g, &[2]))], none());
    add("gather middle", Op::Gather(Gather { axis: -2 }), vec![Some(i64s(&[2, 5, 3], |i| i as i64 * 7 - 11)), Some(i64s(&[2, 2], |i| [4, -5, 2, -1][i]))], none());
    add("gather bool scalar", Op::Gather(Gather { axis: 0 }), vec![Some(bools(&[3, 2], |i| i % 4 == 0)), Some(Tensor::i64(vec![], vec![2]))], none());
    add("gather bad axis", Op::Gather(Gather { axis: 3 }), vec![Some(t(&mut g, &[2, 5, 3])), Some(i64s(&[1], |_| 0))], none());

    // Norm, matmul.
    add("rms_norm last", Op::RmsNorm(RmsNorm { epsilon: 1e-5, axis: -1 }), vec![Some(t(&mut g, &[3, 4, 16])), Some(t(&mut g, &[16]))], none());
    add("rms_norm wide", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: -1 }), vec![Some(t(&mut g, &[3, 3000])), Some(t(&mut g, &[3000]))], none());
    add("rms_norm many short rows", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: -1 }), vec![Some(t(&mut g, &[37, 5, 96])), Some(t(&mut g, &[96]))], none());
    add("rms_norm rows of 1024", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: -1 }), vec![Some(t(&mut g, &[9, 1024])), Some(t(&mut g, &[1024]))], none());
    add("rms_norm long rows, n % 4 != 0", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: -1 }), vec![Some(t(&mut g, &[4, 1030])), Some(t(&mut g, &[1030]))], none());
    add("rms_norm short rows, n % 4 != 0", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: -1 }), vec![Some(t(&mut g, &[6, 30])), Some(t(&mut g, &[30]))], none());
    add("rms_norm axis1 bcast", Op::RmsNorm(RmsNorm { epsilon: 0.5, axis: 1 }), vec![Some(t(&mut g, &[2, 3, 4])), Some(t(&mut g, &[1, 4]))], none());
    add("rms_norm scalar scale", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: 0 }), vec![Some(t(&mut g, &[2, 3, 4])), Some(Tensor::f32(vec![], vec![2.0]))], none());
    add("rms_norm bad scale", Op::RmsNorm(RmsNorm { epsilon: 1e-6, axis: -1 }), vec![Some(t(&mut g, &[2, 3, 4])), Some(t(&mut g, &[3]))], none());
    for tw in [false, true] {
        let op = Op::Linear(Linear { transpose_w: tw, ..Default::default() });
        let w = if tw { t(&mut g, &[7, 5]) } else { t(&mut g, &[5, 7]) };
        add(&format!("linear tw={tw} bias"), op.clone(), vec![Some(t(&mut g, &[2, 3, 5])), Some(w.clone()), Some(t(&mut g, &[7]))], none());
        add(&format!("linear tw={tw}"), op.clone(), vec![Some(t(&mut g, &[1, 1, 5])), Some(w.clone()), None], none());
        let wb = if tw { t(&mut g, &[300, 260]) } else { t(&mut g, &[260, 300]) };
        add(&format!("linear tw={tw} big"), op.clone(), vec![Some(t(&mut g, &[33, 260])), Some(wb), Some(t(&mut g, &[300]))], none());
        add(&format!("linear tw={tw} bad bias"), op, vec![Some(t(&mut g, &[2, 5])), Some(w), Some(t(&mut g, &[5]))], none());
    }
    add("linear k=0", Op::Linear(Linear { transpose_w: false, ..Default::default() }), vec![Some(Tensor::f32(vec![2, 0], vec![])), Some(Tensor::f32(vec![0, 3], vec![])), Some(t(&mut g, &[3]))], none());
    add("linear m=0", Op::Linear(Linear { transpose_w: false, ..Default::default() }), vec![Some(Tensor::f32(vec![0, 4], vec![])), Some(t(&mut g, &[4, 3])), None], none());
    for (sa, sb) in [
        (vec![2, 1, 3, 4], vec![5, 4, 2]),
        (vec![4], vec![4]),
        (vec![4], vec![2, 4, 3]),
        (vec![2, 3, 4], vec![4]),
        (vec![2, 3, 4, 5], vec![2, 3, 5, 6]),
        (vec![3, 4], vec![4, 2]),
        (vec![2, 3, 4], vec![4, 5]),
        (vec![1, 70, 64], vec![1, 64, 70]),
        (vec![2, 3, 4], vec![3, 3, 4]),
    ] {
        add(&format!("matmul {sa:?} {sb:?}"), Op::MatMul(MatMul {}), vec![Some(t(&mut g, &sa)), Some(t(&mut g, &sb))], none());
    }

    // Softmax, where, compare, cast, trilu, topk.
    let mut sm = t(&mut g, &[3, 5]);
    if let Data::F32(x) = &mut sm.data {
        x[5..10].fill(f32::NEG_INFINITY);
        x[0] = 80.0;
    }
    for ax in [-1, 0] {
        add(&format!("softmax {ax}"), Op::Softmax(Softmax { axis: ax }), vec![Some(sm.clone())], none());
    }
    add("softmax long", Op::Softmax(Softmax { axis: 1 }), vec![Some(t(&mut g, &[2, 3000]))], none());
    add("softmax scalar", Op::Softmax(Softmax { axis: 0 }), vec![Some(Tensor::f32(vec![], vec![3.0]))], none());
    let c = bools(&[3, 1], |i| i != 1);
    add("where f32", Op::Where(Where {}), vec![Some(c.clone()), Some(t(&mut g, &[1, 4])), Some(Tensor::f32(vec![], vec![f32::NEG_INFINITY]))], none());
    add("where i64", Op::Where(Where {}), vec![Some(c.clone()), Some(i64s(&[3, 4], |i| i as i64)), Some(i64s(&[4], |i| -(i as i64)))], none());
    add("where bool", Op::Where(Where {}), vec![Some(c.clone()), Some(bools(&[2, 1, 4], |i| i % 2 == 0)), Some(bools(&[1], |_| true))], none());
    add("where not bool", Op::Where(Where {}), vec![Some(t(&mut g, &[3])), Some(t(&mut g, &[3])), Some(t(&mut g, &[3]))], none());
    for k in 0..=7 {
        let kind = CompareKind::try_from(k).unwrap();
        let op = Op::Compare(Compare { kind: k });
        let mut a = t(&mut g, &[3, 4]);
        if let Data::F32(x) = &mut a.data {
            x[0] = 0.5;
            x[5] = f32::NAN;
        }
        let b = Tensor::f32(vec![4], vec![0.5, 0.0, -0.2, f32::NAN]);
        add(&format!("compare {kind:?} f32"), op.clone(), vec![Some(a), Some(b)], none());
        add(&format!("compare {kind:?} i64"), op.clone(), vec![Some(i64s(&[3], |i| i as i64)), Some(i64s(&[3, 1], |i| i as i64))], none());
        add(&format!("compare {kind:?} bool"), op.clone(), vec![Some(bools(&[2, 3], |i| i % 2 == 0)), Some(bools(&[3], |i| i < 2))], none());
        add(&format!("compare {kind:?} unary"), op, vec![Some(bools(&[2, 3], |i| i % 2 == 0)), None], none());
    }
    let fx = Tensor::f32(vec![6], vec![1.7, -2.9, 0.0, f32::NAN, 1e30, -1e30]);
    for to in [DType::F32, DType::I64, DType::Bool] {
        let op = Op::Cast(Cast { to: to as i32 });
        add(&format!("cast f32->{to:?}"), op.clone(), vec![Some(fx.clone())], none());
        add(&format!("cast i64->{to:?}"), op.clone(), vec![Some(i64s(&[4], |i| [0, -3, i64::MAX, 5][i]))], none());
        add(&format!("cast bool->{to:?}"), op, vec![Some(bools(&[3], |i| i != 1))], none());
    }
    for (upper, k) in [(false, 0), (true, 1), (false, -1), (true, -2)] {
        let op = Op::Trilu(Trilu { upper, k });
        add(&format!("trilu {upper} {k}"), op.clone(), vec![Some(t(&mut g, &[2, 3, 4]))], none());
        add(&format!("trilu {upper} {k} i64"), op.clone(), vec![Some(i64s(&[3, 3], |i| i as i64 + 1))], none());
        add(&format!("trilu {upper} {k} bool"), op, vec![Some(bools(&[4, 2], |_| true))], none());
    }
    add("trilu rank1", Op::Trilu(Trilu { upper: false, k: 0 }), vec![Some(t(&mut g, &[3]))], none());
    let mut tk = Tensor::f32(vec![2, 4], vec![1.0, 3.0, 3.0, 2.0, 0.0, -1.0, 5.0, f32::NEG_INFINITY]);
    add("topk largest", Op::TopK(TopK { axis: 1, largest: true, k: "min(3,seq+1)".into() }), vec![Some(tk.clone())], env(&[("seq", 2)]));
    add("topk smallest axis0", Op::TopK(TopK { axis: 0, largest: false, k: "1".into() }), vec![Some(tk.clone())], none());
    add("topk too many", Op::TopK(TopK { axis: 1, largest: true, k: "5".into() }), vec![Some(tk.clone())], none());
    tk = t(&mut g, &[3, 50, 2]);
    add("topk middle", Op::TopK(TopK { axis: 1, largest: true, k: "7".into() }), vec![Some(tk)], none());

    // Causal conv.
    for (k, state, bias, act) in [(4, true, true, ""), (4, false, false, "silu"), (1, false, true, "swish"), (3, true, false, "none")] {
        let (b, l, c) = (2, 5, 6);
        let w = t(&mut g, &[c, k]);
        let ins = vec![Some(t(&mut g, &[b, l, c])), Some(w), bias.then(|| t(&mut g, &[c])), state.then(|| t(&mut g, &[b, c, k - 1]))];
        add(&format!("causal_conv k={k} state={state} bias={bias} {act}"), Op::CausalConv(CausalConv { activation: act.into() }), ins, none());
    }
    let ins = vec![Some(t(&mut g, &[3, 7, 300])), Some(t(&mut g, &[300, 4])), Some(t(&mut g, &[300])), Some(t(&mut g, &[3, 300, 3]))];
    add("causal_conv 300 channels (two channel blocks)", Op::CausalConv(CausalConv { activation: "silu".into() }), ins, none());
    add("causal_conv short", Op::CausalConv(CausalConv { activation: "".into() }), vec![Some(t(&mut g, &[1, 1, 3])), Some(t(&mut g, &[3, 1, 4])), None, Some(t(&mut g, &[1, 3, 3]))], none());
    add("causal_conv bad act", Op::CausalConv(CausalConv { activation: "gelu".into() }), vec![Some(t(&mut g, &[1, 2, 3])), Some(t(&mut g, &[3, 2])), None, None], none());

    // GDN.
    for (n, rule) in [UpdateRule::GatedDelta, UpdateRule::Linear, UpdateRule::Gated, UpdateRule::Delta].into_iter().enumerate() {
        for (nb, tt, hq, hkv, dk, dv, g_per_dim, beta_per_head, with_state) in [
            (2, 6, 4, 2, 5, 3, false, true, true),
            (1, 9, 2, 2, 8, 16, true, false, false),
            (2, 3, 2, 1, 40, 70, true, true, true),
            (1, 4, 1, 1, 70, 300, false, true, true),
        ] {
            let gated = matches!(rule, UpdateRule::Gated | UpdateRule::GatedDelta);
            let delta = matches!(rule, UpdateRule::Delta | UpdateRule::GatedDelta);
            let gw = if g_per_dim { hkv * dk } else { hkv };
            let bw = if beta_per_head { hkv } else { 1 };
            let decay = Tensor::f32(vec![nb, tt, gw], (0..nb * tt * gw).map(|_| -0.05 - 0.45 * g.unit()).collect());
            let beta = Tensor::f32(vec![nb, tt, bw], (0..nb * tt * bw).map(|_| 0.05 + 0.9 * g.unit()).collect());
            let ins = vec![
                Some(t(&mut g, &[nb, tt, hq * dk])),
                Some(t(&mut g, &[nb, tt, hkv * dk])),
                Some(t(&mut g, &[nb, tt, hkv * dv])),
                with_state.then(|| t(&mut g, &[nb, hkv, dk, dv])),
                gated.then_some(decay),
                delta.then_some(beta),
            ];
            let op = Op::Gdn(Gdn { q_heads: hq as u32, kv_heads: hkv as u32, scale: if n % 2 == 0 { 0.0 } else { 0.37 }, update_rule: rule as i32 });
            add(&format!("gdn {rule:?} b{nb} t{tt} h{hq}/{hkv} k{dk} v{dv}"), op, ins, none());
        }
    }
    // GDN prefill lengths (the chunked form, chunks of 64; T not a multiple of 64 leaves a short
    // last chunk) with keys of unit L2 norm as in real GDN layers (the delta rule diverges
    // otherwise), GQA, K not a multiple of 32, V = 192, K = 128 (the chunked kernels' largest).
    // Per-key-dim decay and K > 128 stay on the recurrence.
    for (n, (nb, tt, hq, hkv, dk, dv, rule, g_per_dim, beta_per_head, with_state)) in [
        (1, 65, 4, 2, 40, 192, UpdateRule::GatedDelta, false, true, true),
        (2, 130, 2, 1, 96, 192, UpdateRule::GatedDelta, false, false, false),
        (1, 300, 2, 2, 70, 192, UpdateRule::GatedDelta, false, true, true),
        (1, 130, 6, 2, 33, 100, UpdateRule::Delta, false, true, true),
        (1, 300, 2, 1, 40, 192, UpdateRule::Gated, false, false, false),
        (1, 65, 2, 2, 24, 192, UpdateRule::Linear, false, false, true),
        (1, 129, 2, 1, 128, 192, UpdateRule::GatedDelta, false, true, true),
        (1, 64, 1, 1, 130, 48, UpdateRule::GatedDelta, false, true, true),
        (1, 130, 2, 1, 40, 192, UpdateRule::GatedDelta, true, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let gated = matches!(rule, UpdateRule::Gated | UpdateRule::GatedDelta);
        let delta = matches!(rule, UpdateRule::Delta | UpdateRule::GatedDelta);
        let gw = if g_per_dim { hkv * dk } else { hkv };
        let bw = if beta_per_head { hkv } else { 1 };
        let decay = Tensor::f32(vec![nb, tt, gw], (0..nb * tt * gw).map(|_| -0.05 - 0.45 * g.unit()).collect());
        let beta = Tensor::f32(vec![nb, tt, bw], (0..nb * tt * bw).map(|_| 0.05 + 0.9 * g.unit()).collect());
        let mut keys = g.vec(nb * tt * hkv * dk);
        for row in keys.chunks_mut(dk) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let ins = vec![
            Some(t(&mut g, &[nb, tt, hq * dk])),
            Some(Tensor::f32(vec![nb, tt, hkv * dk], keys)),
            Some(t(&mut g, &[nb, tt, hkv * dv])),
            with_state.then(|| t(&mut g, &[nb, hkv, dk, dv])),
            gated.then_some(decay),
            delta.then_some(beta),
        ];
        let op = Op::Gdn(Gdn { q_heads: hq as u32, kv_heads: hkv as u32, scale: if n % 2 == 0 { 0.0 } else { 0.37 }, update_rule: rule as i32 });
        add(&format!("gdn prefill {rule:?} b{nb} t{tt} h{hq}/{hkv} k{dk} v{dv} g_per_dim={g_per_dim} state={with_state}"), op, ins, none());
    }
    let gop = Op::Gdn(Gdn { q_heads: 2, kv_heads: 1, scale: 0.0, update_rule: UpdateRule::GatedDelta as i32 });
    add("gdn missing beta", gop.clone(), vec![Some(t(&mut g, &[1, 2, 6])), Some(t(&mut g, &[1, 2, 3])), Some(t(&mut g, &[1, 2, 2])), None, Some(t(&mut g, &[1, 2, 1])), None], none());
    add("gdn bad state", gop, vec![Some(t(&mut g, &[1, 2, 6])), Some(t(&mut g, &[1, 2, 3])), Some(t(&mut g, &[1, 2, 2])), Some(t(&mut g, &[1, 1, 2, 3])), Some(t(&mut g, &[1, 2, 1])), Some(t(&mut g, &[1, 2, 1]))], none());

    // Attention.
    let att = |hq: u32, hkv: u32, scale: f32, causal: bool, wl: i64, wr: i64, top_left: bool| {
        Op::Attention(Attention { q_heads: hq, kv_heads: hkv, scale, causal, window_left: wl, window_right: wr, top_left, operand_dtype: 0 })
    };
    for (lq, lk, causal) in [(5, 5, false), (5, 5, true), (3, 7, true), (6, 4, true), (1, 6, true), (3, 7, false), (1, 1, true)] {
        let ins = vec![Some(t(&mut g, &[2, lq, 4 * 8])), Some(t(&mut g, &[2, lk, 2 * 8])), Some(t(&mut g, &[2, lk, 2 * 3]))];
        add(&format!("attention {lq}x{lk} causal={causal}"), att(4, 2, 0.0, causal, -1, -1, false), ins, none());
    }
    for (wl, wr, tl) in [(2, 0, false), (1, 1, false), (-1, 2, false), (3, -1, true), (0, 0, false)] {
        let ins = vec![Some(t(&mut g, &[1, 9, 2 * 16])), Some(t(&mut g, &[1, 11, 16])), Some(t(&mut g, &[1, 11, 16]))];
        add(&format!("attention window ({wl},{wr}) top_left={tl}"), att(2, 1, 0.0, true, wl, wr, tl), ins, none());
    }
    let ins = vec![Some(t(&mut g, &[1, 70, 2 * 64])), Some(t(&mut g, &[1, 70, 2 * 64])), Some(t(&mut g, &[1, 70, 2 * 128]))];
    add("attention 70 tokens d64 dv128", att(2, 2, 0.0, true, -1, -1, false), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 3, 40])), Some(t(&mut g, &[1, 100, 40])), Some(t(&mut g, &[1, 100, 256]))];
    add("attention decode-like dv256", att(1, 1, 0.0, true, 31, 0, false), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 4, 2])), Some(t(&mut g, &[1, 2, 2])), Some(t(&mut g, &[1, 2, 3]))];
    add("attention masked rows, huge scale", att(1, 1, 1e4, true, -1, -1, false), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 2, 8])), Some(t(&mut g, &[1, 3, 4])), Some(t(&mut g, &[1, 3, 6]))];
    add("attention bad heads", att(2, 3, 0.0, false, -1, -1, false), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 2, 4])), Some(t(&mut g, &[1, 3, 4])), Some(t(&mut g, &[1, 3, 300]))];
    add("attention dv300", att(1, 1, 0.0, false, -1, -1, false), ins, none());
    let ins = vec![Some(t(&mut g, &[2, 40, 2 * 16])), Some(t(&mut g, &[2, 40, 16])), Some(t(&mut g, &[2, 40, 600]))];
    add("attention dv600 gqa causal", att(2, 1, 0.0, true, -1, -1, false), ins, none());
    // One query over a long cache: the split-over-keys decode kernel (GQA, windows, Dv not a
    // multiple of 32, splits with no visible key).
    for (lk, hq, hkv, wl, dv, causal) in [(1000, 4, 2, -1, 24, true), (300, 2, 2, 100, 128, true), (129, 8, 1, -1, 256, false), (2000, 2, 1, 10, 40, true)] {
        let ins = vec![Some(t(&mut g, &[2, 1, hq as usize * 16])), Some(t(&mut g, &[2, lk, hkv as usize * 16])), Some(t(&mut g, &[2, lk, hkv as usize * dv]))];
        add(&format!("attention split decode lk={lk} hq={hq} hkv={hkv} wl={wl} dv={dv}"), att(hq, hkv, 0.0, causal, wl, -1, false), ins, none());
    }
    // Many queries: the register-tiled prefill kernel (GQA, Lq != Lk, windows, top-left,
    // value heads split over launches, head dims not a multiple of 4, masks).
    for (lq, lk, hq, hkv, d, dv, causal, wl, wr, tl) in [
        (130, 130, 4, 2, 128, 128, true, -1, -1, false),
        (40, 170, 2, 1, 64, 192, true, -1, -1, false),
        (100, 100, 2, 2, 48, 3, false, -1, -1, false),
        (77, 77, 2, 1, 5, 70, true, 20, 0, false),
        (64, 90, 1, 1, 32, 300, true, -1, 3, true),
        (20, 20, 3, 3, 128, 64, true, -1, -1, false),
    ] {
        let ins = vec![Some(t(&mut g, &[2, lq, hq as usize * d])), Some(t(&mut g, &[2, lk, hkv as usize * d])), Some(t(&mut g, &[2, lk, hkv as usize * dv]))];
        add(&format!("attention tiled {lq}x{lk} h{hq}/{hkv} d{d} dv{dv} causal={causal} w=({wl},{wr}) top_left={tl}"), att(hq, hkv, 0.0, causal, wl, wr, tl), ins, none());
    }
    // bf16 / fp16 operands (`--dtype`): q, k, v rounded on both backends; many queries run on
    // tensor cores, which also round the probabilities (a looser bar, MMA_TOL), the rest
    // (decode, masks, head dims not a multiple of 16) on the fp32 kernels with rounded loads.
    for (dt, name) in [(DType::Bf16, "bf16"), (DType::F16, "fp16")] {
        let att_dt = |hq: u32, hkv: u32, causal: bool, wl: i64| Op::Attention(Attention { q_heads: hq, kv_heads: hkv, scale: 0.0, causal, window_left: wl, window_right: -1, top_left: false, operand_dtype: dt as i32 });
        for (lq, lk, hq, hkv, d, dv, causal, wl) in [(200, 200, 4, 2, 128, 128, true, -1), (70, 130, 2, 1, 64, 192, true, 50), (33, 33, 2, 2, 16, 16, false, -1), (300, 317, 2, 2, 48, 96, true, -1), (129, 129, 1, 1, 112, 32, false, -1), (260, 260, 2, 1, 128, 128, true, 70)] {
            let ins = vec![Some(t(&mut g, &[2, lq, hq as usize * d])), Some(t(&mut g, &[2, lk, hkv as usize * d])), Some(t(&mut g, &[2, lk, hkv as usize * dv]))];
            add(&format!("attention {name} {lq}x{lk} h{hq}/{hkv} d{d} dv{dv} (tensor cores)"), att_dt(hq, hkv, causal, wl), ins, none());
        }
        for (lq, lk, d, dv) in [(1, 300, 128, 128), (40, 40, 20, 24), (3, 9, 16, 16)] {
            let ins = vec![Some(t(&mut g, &[1, lq, 2 * d])), Some(t(&mut g, &[1, lk, d])), Some(t(&mut g, &[1, lk, dv]))];
            add(&format!("attention {name} {lq}x{lk} d{d} dv{dv} rounded loads"), att_dt(2, 1, true, -1), ins, none());
        }
    }
    let mut fm = t(&mut g, &[1, 2, 33, 40]);
    if let Data::F32(x) = &mut fm.data {
        for r in 0..33 {
            x[r * 40 + (r * 7) % 40] = f32::NEG_INFINITY;
        }
    }
    let ins = vec![Some(t(&mut g, &[2, 33, 2 * 16])), Some(t(&mut g, &[2, 40, 16])), Some(t(&mut g, &[2, 40, 24])), Some(fm)];
    add("attention tiled f32 mask", att(2, 1, 0.0, false, -1, -1, false), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 50, 16])), Some(t(&mut g, &[1, 50, 16])), Some(t(&mut g, &[1, 50, 8])), Some(bools(&[1, 1, 50, 50], |i| (i / 50 + i % 50) % 3 != 0))];
    add("attention tiled bool mask", att(1, 1, 0.0, true, -1, -1, false), ins, none());
    let mut fm = t(&mut g, &[1, 1, 5, 6]);
    if let Data::F32(x) = &mut fm.data {
        x[7] = f32::NEG_INFINITY;
    }
    let ins = vec![Some(t(&mut g, &[2, 5, 2 * 8])), Some(t(&mut g, &[2, 6, 8])), Some(t(&mut g, &[2, 6, 4])), Some(fm)];
    add("attention f32 mask", att(2, 1, 0.0, false, -1, -1, false), ins, none());
    let ins = vec![Some(t(&mut g, &[2, 5, 8])), Some(t(&mut g, &[2, 5, 8])), Some(t(&mut g, &[2, 5, 4])), Some(bools(&[2, 1, 1, 5], |i| i != 1 && i != 6))];
    add("attention bool mask", att(1, 1, 0.0, true, -1, -1, false), ins, none());

    // RoPE.
    let caches = |g: &mut Lcg, p: usize, half: usize| (Tensor::f32(vec![p, half], g.vec(p * half)), Tensor::f32(vec![p, half], g.vec(p * half)));
    for (interleaved, rd) in [(true, 0), (false, 0), (false, 4), (true, 6)] {
        let (c, s) = caches(&mut g, 10, if rd == 0 { 4 } else { rd / 2 });
        let ins = vec![Some(t(&mut g, &[2, 3, 2 * 8])), Some(c), Some(s), Some(i64s(&[2, 3], |i| [0, 4, 9, 1, 2, 3][i]))];
        add(&format!("rope 3d interleaved={interleaved} rd={rd}"), Op::Rope(Rope { num_heads: 2, interleaved, rotary_dim: rd as u32 }), ins, none());
    }
    let ins = vec![Some(t(&mut g, &[2, 3, 4, 8])), Some(t(&mut g, &[2, 4, 4])), Some(t(&mut g, &[2, 4, 4])), None];
    add("rope 4d no positions", Op::Rope(Rope { num_heads: 0, interleaved: false, rotary_dim: 0 }), ins, none());
    let (c, s) = caches(&mut g, 4, 4);
    let ins = vec![Some(t(&mut g, &[1, 2, 8])), Some(c), Some(s), Some(i64s(&[1, 2], |i| [1, 4][i]))];
    add("rope position out of range", Op::Rope(Rope { num_heads: 1, interleaved: false, rotary_dim: 0 }), ins, none());

    // Sparse.
    let (b, tt, s, h, d) = (2, 5, 7, 2, 6);
    let ins = vec![Some(t(&mut g, &[b, tt, h * d])), Some(t(&mut g, &[b, s, d])), None];
    add("indexer mean_dot", Op::LightningIndexer(LightningIndexer { num_heads: h as u32, top_k: 4, score: "mean_dot".into() }), ins, none());
    let ins = vec![Some(t(&mut g, &[b, tt, h * d])), Some(t(&mut g, &[b, s, d])), Some(pos(&mut g, &[b, tt, h]))];
    add("indexer relu_weighted", Op::LightningIndexer(LightningIndexer { num_heads: h as u32, top_k: 9, score: "relu_weighted".into() }), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 1, h * d])), Some(t(&mut g, &[1, 300, d])), None];
    add("indexer decode 300", Op::LightningIndexer(LightningIndexer { num_heads: h as u32, top_k: 16, score: "mean_dot".into() }), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 1, h * d])), Some(t(&mut g, &[1, 3, d])), Some(pos(&mut g, &[1, 1, h]))];
    add("indexer missing weights", Op::LightningIndexer(LightningIndexer { num_heads: h as u32, top_k: 2, score: "mean_dot".into() }), ins, none());
    let sa = |hq: u32, hkv: u32| Op::SparseAttention(SparseAttention { q_heads: hq, kv_heads: hkv, scale: 0.0 });
    let idx = i64s(&[b, tt, 4], |i| [0, 3, -1, 6, 2, -1, -1, -1][i % 8]);
    let ins = vec![Some(t(&mut g, &[b, tt, 4 * 6])), Some(t(&mut g, &[b, s, 2 * 6])), Some(t(&mut g, &[b, s, 2 * 5])), Some(idx)];
    add("sparse attention gqa", sa(4, 2), ins, none());
    let idx = i64s(&[1, 2, 40], |i| (i as i64 * 7) % 50 - 1);
    let ins = vec![Some(t(&mut g, &[1, 2, 8])), Some(t(&mut g, &[1, 50, 8])), Some(t(&mut g, &[1, 50, 40])), Some(idx)];
    add("sparse attention 40 picks", sa(1, 1), ins, none());
    let idx = i64s(&[1, 2, 3], |i| [0, 2, -1, 1, -1, 0][i]);
    let ins = vec![Some(t(&mut g, &[1, 2, 4])), Some(t(&mut g, &[1, 3, 4])), Some(t(&mut g, &[1, 3, 300])), Some(idx)];
    add("sparse attention dv300", sa(1, 1), ins, none());
    let idx = i64s(&[1, 1, 2], |i| [0, 9][i]);
    let ins = vec![Some(t(&mut g, &[1, 1, 4])), Some(t(&mut g, &[1, 3, 4])), Some(t(&mut g, &[1, 3, 4])), Some(idx)];
    add("sparse attention out of range", sa(1, 1), ins, none());
    // The indexer's scores (tiled, or a block per query for a few queries) and top-k: long rows
    // (radix select where S > top_k), exact ties from small-integer inputs (the scores are
    // exact, so ties are too), -1 padding (top_k beyond the causal prefix, top_k > S), batches,
    // rows scored in chunks (a small chunk under test), the rank-counting fallback (top_k
    // beyond the sort buffer).
    let small_ints = |g: &mut Lcg, shape: &[usize]| {
        let x = g.tensor(shape);
        Tensor::f32(x.shape.clone(), x.as_f32().unwrap().iter().map(|v| (v * 2.4).round()).collect())
    };
    let ix = |h: usize, k: u32, score: &str| Op::LightningIndexer(LightningIndexer { num_heads: h as u32, top_k: k, score: score.into() });
    let ins = vec![Some(t(&mut g, &[2, 3, 4 * 16])), Some(t(&mut g, &[2, 2600, 16])), None];
    add("indexer long rows S>top_k random", ix(4, 2048, "mean_dot"), ins, none());
    let ins = vec![Some(small_ints(&mut g, &[2, 3, 2 * 5])), Some(small_ints(&mut g, &[2, 2600, 5])), None];
    add("indexer long rows S>top_k ties", ix(2, 2048, "mean_dot"), ins, none());
    let w = Tensor::f32(vec![1, 4, 3], (0..12).map(|i| [0.0, 0.5, 1.0, 1.5][i % 4]).collect());
    let ins = vec![Some(small_ints(&mut g, &[1, 4, 3 * 4])), Some(small_ints(&mut g, &[1, 2300, 4])), Some(w)];
    add("indexer long rows relu_weighted ties", ix(3, 2048, "relu_weighted"), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 2, 4])), Some(t(&mut g, &[1, 3000, 4])), Some(Tensor::f32(vec![1, 2, 1], vec![0.0; 2]))];
    add("indexer all scores tied (zero weights)", ix(1, 2048, "relu_weighted"), ins, none());
    let ins = vec![Some(small_ints(&mut g, &[2, 300, 2 * 3])), Some(small_ints(&mut g, &[2, 300, 3])), None];
    add("indexer prefill 300 top_k 100 ties, chunked rows", ix(2, 100, "mean_dot"), ins, none());
    let ins = vec![Some(small_ints(&mut g, &[2, 20, 2 * 8])), Some(small_ints(&mut g, &[2, 2600, 8])), None];
    add("indexer 20 queries over 2600 keys, chunked rows", ix(2, 2048, "mean_dot"), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 70, 16 * 64])), Some(t(&mut g, &[1, 70, 64])), None];
    add("indexer H16 D64 prefill top_k 2048 > S", ix(16, 2048, "mean_dot"), ins, none());
    let ins = vec![Some(t(&mut g, &[2, 1, 16 * 64])), Some(t(&mut g, &[2, 1100, 64])), None];
    add("indexer H16 D64 decode over 1100 keys", ix(16, 2048, "mean_dot"), ins, none());
    let ins = vec![Some(t(&mut g, &[2, 40, 3 * 40])), Some(t(&mut g, &[2, 200, 40])), Some(pos(&mut g, &[2, 40, 3]))];
    add("indexer relu_weighted top_k 1", ix(3, 1, "relu_weighted"), ins, none());
    let ins = vec![Some(small_ints(&mut g, &[1, 1, 2])), Some(small_ints(&mut g, &[1, 9000, 2])), None];
    add("indexer top_k 9000 (rank fallback)", ix(1, 9000, "mean_dot"), ins, none());
    // The tiled sparse attention: LT2's shape (16 heads over one latent of 576, values 512)
    // in prefill (index lists split over blocks, several chunks a block) and decode (split,
    // merged), GQA over several 16-head groups, value heads over two launches, odd head dims
    // (4-byte copies), rows with no valid index, an out-of-range index in a later chunk, and the
    // untiled fallback (a head dim too wide for shared memory).
    let causal = |b: usize, tt: usize, s: usize, kk: usize| {
        i64s(&[b, tt, kk], move |i| {
            let (ti, e) = ((i / kk) % tt, i % kk);
            let p = ti + s - tt;
            if e <= p {
                (p - e) as i64
            } else {
                -1
            }
        })
    };
    let holes = |shape: &[usize], s: usize| i64s(shape, move |i| if i % 7 == 3 { -1 } else { ((i * 7919 + 13) % s) as i64 });
    let ins = vec![Some(t(&mut g, &[1, 200, 16 * 576])), Some(t(&mut g, &[1, 200, 576])), Some(t(&mut g, &[1, 200, 512])), Some(causal(1, 200, 200, 256))];
    add("sparse attention LT2 shape prefill 200", sa(16, 1), ins, none());
    let ins = vec![Some(t(&mut g, &[2, 1, 16 * 576])), Some(t(&mut g, &[2, 3000, 576])), Some(t(&mut g, &[2, 3000, 512])), Some(causal(2, 1, 1500, 2048))];
    add("sparse attention LT2 shape decode over 3000 keys", sa(16, 1), ins, none());
    let ins = vec![Some(t(&mut g, &[2, 140, 4 * 20])), Some(t(&mut g, &[2, 300, 20])), Some(t(&mut g, &[2, 300, 16])), Some(holes(&[2, 140, 256], 300))];
    add("sparse attention 280 rows of 4 chunks", sa(4, 1), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 3, 20 * 64])), Some(t(&mut g, &[1, 90, 64])), Some(t(&mut g, &[1, 90, 64])), Some(holes(&[1, 3, 80], 90))];
    add("sparse attention 20 heads (two head groups)", sa(20, 1), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 2, 32 * 68])), Some(t(&mut g, &[1, 90, 2 * 68])), Some(t(&mut g, &[1, 90, 2 * 600])), Some(holes(&[1, 2, 70], 90))];
    add("sparse attention gqa dv600 (two launches)", sa(32, 2), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 4, 3 * 70])), Some(t(&mut g, &[1, 60, 70])), Some(t(&mut g, &[1, 60, 37])), Some(holes(&[1, 4, 100], 60))];
    add("sparse attention dk70 dv37 (4-byte copies)", sa(3, 1), ins, none());
    let idx = i64s(&[1, 6, 50], |i| if (i / 50) % 3 == 0 { -1 } else { ((i * 31) % 40) as i64 });
    let ins = vec![Some(t(&mut g, &[1, 6, 2 * 8])), Some(t(&mut g, &[1, 40, 2 * 8])), Some(t(&mut g, &[1, 40, 2 * 12])), Some(idx)];
    add("sparse attention rows with no index", sa(2, 2), ins, none());
    let idx = i64s(&[1, 2, 100], |i| if i == 170 { 35 } else { (i % 30) as i64 });
    let ins = vec![Some(t(&mut g, &[1, 2, 2 * 8])), Some(t(&mut g, &[1, 30, 8])), Some(t(&mut g, &[1, 30, 8])), Some(idx)];
    add("sparse attention out of range in a later chunk", sa(2, 1), ins, none());
    let ins = vec![Some(t(&mut g, &[1, 2, 3000])), Some(t(&mut g, &[1, 5, 3000])), Some(t(&mut g, &[1, 5, 8])), Some(i64s(&[1, 2, 3], |i| [0, 4, -1, 2, 1, 3][i]))];
    add("sparse attention dk3000 (untiled fallback)", sa(1, 1), ins, none());
    v
}

/// The bar of the tensor-core attention cases: it rounds the softmax probabilities to the
/// operand type (FlashAttention's choice), the CPU keeps them fp32.
const MMA_TOL: f64 = 1e-2;

/// Compares two op results (f32 within relative L2 error `tol`); None when they agree.
fn compare(cpu: &Result<Vec<Tensor>, String>, gpu: &Result<Vec<Tensor>, String>, tol: f64) -> Option<String> {
    match (cpu, gpu) {
        (Err(_), Err(_)) => None,
        (Err(e), Ok(_)) => Some(format!("the CPU fails ({e}) but CUDA succeeds")),
        (Ok(_), Err(e)) => Some(format!("CUDA fails: {e}")),
        (Ok(a), Ok(b)) => {
            if a.len() != b.len() {
                return Some(format!("{} outputs on the CPU, {} on CUDA", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x.shape != y.shape || x.dtype() != y.dtype() {
                    return Some(format!("output {i}: CPU {:?} {:?}, CUDA {:?} {:?}", x.dtype(), x.shape, y.dtype(), y.shape));
                }
                match (&x.data, &y.data) {
                    (Data::F32(p), Data::F32(q)) => {
                        let same_special = p.iter().zip(q).all(|(u, w)| u.is_finite() == w.is_finite() && (u.is_finite() || u.to_bits() == w.to_bits() || (u.is_nan() && w.is_nan())));
                        let fp: Vec<f32> = p.iter().map(|u| if u.is_finite() { *u } else { 0.0 }).collect();
                        let fq: Vec<f32> = q.iter().map(|u| if u.is_finite() { *u } else { 0.0 }).collect();
                        let e = rel_err(&fq, &fp);
                        if !same_special || e > tol {
                            return Some(format!("output {i}: relative error {e:e} (non-finite values agree: {same_special})"));
                        }
                    }
                    _ if x.data != y.data => return Some(format!("output {i}: CPU {:?} vs CUDA {:?}", x.data, y.data)),
                    _ => {}
                }
            }
            None
        }
    }
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let Some(cu) = crate::cuda::test_backend() else { return };
    eprintln!("CUDA backend on {}", cu.description());
    let mut failures = Vec::new();
    // LT2_PARITY_FILTER=a,b runs only the cases whose name contains a or b (compute-sanitizer
    // runs over the newest kernels: scripts/gpu-check.sh SANITIZE=1).
    let filter: Vec<String> = std::env::var("LT2_PARITY_FILTER").map(|f| f.split(',').map(str::to_string).collect()).unwrap_or_default();
    let all: Vec<Case> = cases().into_iter().filter(|c| filter.is_empty() || filter.iter().any(|f| c.name.contains(f.as_str()))).collect();
    assert!(!all.is_empty(), "LT2_PARITY_FILTER={filter:?} matches no case");
    for c in &all {
        let refs: Vec<Option<&Tensor>> = c.inputs.iter().map(|t| t.as_ref()).collect();
        let cpu = crate::cpu::run_op(&c.op, &refs, &c.env).map_err(|e| e.0);
        let gpu = (|| {
            let bufs: Vec<Option<super::CudaBuf>> = c.inputs.iter().map(|t| t.as_ref().map(|t| cu.upload(t)).transpose()).collect::<Result<_, _>>()?;
            let brefs: Vec<Option<&super::CudaBuf>> = bufs.iter().map(|b| b.as_ref()).collect();
            let outs = cu.run_op(&c.op, &brefs, &c.env)?;
            outs.iter().map(|b| cu.download(b)).collect::<Result<Vec<_>, _>>()
        })()
        .map_err(|e| e.0);
        let tol = if c.name.ends_with("(tensor cores)") { MMA_TOL } else { 1e-5 };
        if let Some(why) = compare(&cpu, &gpu, tol) {
            failures.push(format!("{}: {why}", c.name));
        }
        if let (true, Ok(a), Ok(b)) = (c.name.ends_with("(tensor cores)"), &cpu, &gpu) {
            eprintln!("{}: relative L2 error {:.2e}", c.name, rel_err(b[0].as_f32().unwrap_or(&[]), a[0].as_f32().unwrap_or(&[])));
        }
        if let (true, Ok(a), Ok(b)) = (c.name.starts_with("gdn prefill"), &cpu, &gpu) {
            let errs: Vec<String> = a.iter().zip(b).map(|(x, y)| format!("{:.2e}", rel_err(y.as_f32().unwrap_or(&[]), x.as_f32().unwrap_or(&[])))).collect();
            eprintln!("{}: relative L2 error (o, state) {}", c.name, errs.join(", "));
        }
    }
    // Stack (Loop scan outputs).
    let mut g = Lcg::new(5);
    let xs: Vec<Tensor> = (0..3).map(|_| g.tensor(&[2, 3])).collect();
    let stacked = xs.iter().map(|x| cu.upload(x)).collect::<Result<Vec<_>, _>>().and_then(|b| cu.stack(&b)).and_then(|s| cu.download(&s));
    let want = crate::cpu::Cpu.stack(&xs.iter().cloned().map(std::rc::Rc::new).collect::<Vec<_>>()).map(|r| (*r).clone());
    if stacked.map_err(|e| e.0) != want.map_err(|e| e.0) {
        failures.push("stack differs".into());
    }
    eprintln!("{} op cases, {} failed", all.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
