//! Lowering: a loop region becomes its own plan graph whose inputs are (iteration, carried...,
//! captured...); the encoded model.bin runs on the CPU backend with the right numbers.

use std::collections::HashMap;

use lt2_ir::builder::{Arg, BinaryOp, FuncBuilder};
use lt2_ir::{Elem, TensorType, WeightData, WeightStore};
use lt2_runtime::exec::CpuModel;
use lt2_runtime::format::ModelFile;
use lt2_runtime::plan::Op;
use lt2_runtime::tensor::Tensor;

fn f32t(dims: &[Option<i64>]) -> TensorType {
    TensorType::new(dims.to_vec(), Elem::F32)
}

/// y = loop 3 times { h = h * w + x } starting from h = x, with x captured by the region.
fn module_text() -> String {
    let ty = f32t(&[None, Some(2)]);
    let mut b = FuncBuilder::new("main", vec![Arg { ty: ty.clone(), dims: vec!["n".into(), "2".into()], onnx_name: "x".into() }]);
    let x = b.args().remove(0);
    let w = b.weight("w", f32t(&[Some(2)]), "w");
    let (_i, c) = b.begin_loop(&[x.clone()], 3, "loop").unwrap();
    let m = b.binary(BinaryOp::Mul, &c[0], &w, ty.clone(), "mul");
    let a = b.binary(BinaryOp::Add, &m, &x, ty.clone(), "add");
    let r = b.end_loop(&[a], &[]).unwrap();
    b.finish(&[(r[0].clone(), "y".into(), vec!["n".into(), "2".into()])]).unwrap()
}

fn weights() -> WeightStore {
    let mut ws = WeightStore::default();
    ws.insert(WeightData { name: "w".into(), elem: Elem::F32, shape: vec![2], data: lt2_ir::WeightBytes::Raw([0.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect()) });
    ws
}

#[test]
fn loop_becomes_a_graph_with_captures() {
    let cx = lt2_ir::new_context().unwrap();
    let m = lt2_ir::parse_module(&cx, &module_text()).unwrap();
    let man = lt2_codegen::lower::lower(&m, &weights()).unwrap();
    assert_eq!(man.graphs.len(), 2);
    assert_eq!(man.inputs[0].name, "x");
    assert_eq!(man.inputs[0].dims, vec!["n", "2"]);
    let loop_step = man.graphs[0].steps.iter().find(|s| matches!(s.op, Some(Op::Loop(_)))).unwrap();
    let Some(Op::Loop(l)) = &loop_step.op else { unreachable!() };
    assert_eq!((l.trip_count, l.num_carried), (3, 1));
    // carried x, then captured x and w
    assert_eq!(loop_step.inputs.len(), 3);
    assert_eq!(man.graphs[1].inputs.len(), 4, "iteration, carried, 2 captures");
}

#[test]
fn encoded_model_runs_on_cpu() {
    let cx = lt2_ir::new_context().unwrap();
    let m = lt2_ir::parse_module(&cx, &module_text()).unwrap();
    let bytes = lt2_codegen::encode_model(&m, &weights()).unwrap();
    let path = std::env::temp_dir().join(format!("lt2c-lower-{}.bin", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let model = CpuModel::new(ModelFile::open(&path).unwrap()).unwrap();
    let x = [1.5f32, 3.0, -1.0, 0.25];
    let inputs = HashMap::from([("x".to_string(), Tensor::f32(vec![2, 2], x.to_vec()))]);
    let out = model.run(&inputs).unwrap();
    let w = [0.5f32, -2.0];
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            let mut h = xi;
            for _ in 0..3 {
                h = h * w[i % 2] + xi;
            }
            h
        })
        .collect();
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.as_f32().unwrap(), want.as_slice());
}

#[test]
fn scan_outputs_stack_per_iteration_values() {
    // loop 3 times { h = h * w; scan h }: results (h3, [h1, h2, h3])
    let ty = f32t(&[Some(2)]);
    let mut b = FuncBuilder::new("main", vec![Arg { ty: ty.clone(), dims: vec!["2".into()], onnx_name: "x".into() }]);
    let x = b.args().remove(0);
    let w = b.weight("w", f32t(&[Some(2)]), "w");
    let (_i, c) = b.begin_loop(&[x.clone()], 3, "loop").unwrap();
    let m = b.binary(BinaryOp::Mul, &c[0], &w, ty.clone(), "mul");
    let r = b.end_loop(&[m.clone()], &[m]).unwrap();
    assert_eq!(r[1].ty.to_string(), "tensor<3x2xf32>");
    let text = b.finish(&[(r[0].clone(), "h".into(), vec!["2".into()]), (r[1].clone(), "hs".into(), vec!["3".into(), "2".into()])]).unwrap();
    let cx = lt2_ir::new_context().unwrap();
    let m = lt2_ir::parse_module(&cx, &text).unwrap();
    lt2_ir::verify::verify_module(&m, None).unwrap();
    let bytes = lt2_codegen::encode_model(&m, &weights()).unwrap();
    let path = std::env::temp_dir().join(format!("lt2c-scan-{}.bin", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let model = CpuModel::new(ModelFile::open(&path).unwrap()).unwrap();
    let out = model.run(&HashMap::from([("x".to_string(), Tensor::f32(vec![2], vec![1.0, 1.0]))])).unwrap();
    assert_eq!(out[0].1.as_f32().unwrap(), &[0.125, -8.0]);
    assert_eq!(out[1].1.shape, vec![3, 2]);
    assert_eq!(out[1].1.as_f32().unwrap(), &[0.5, -2.0, 0.25, 4.0, 0.125, -8.0]);
}
