//! The lt2 dialect loads, builders produce IR that parses and verifies, and bad IR is refused
//! with a diagnostic.

use lt2_ir::builder::{Arg, BinaryOp, FuncBuilder};
use lt2_ir::{new_context, parse_module, Elem, TensorType};

fn t(dims: &[Option<i64>]) -> TensorType {
    TensorType::new(dims.to_vec(), Elem::F32)
}

fn sample() -> String {
    let x_ty = t(&[None, None, Some(4)]);
    let mut b = FuncBuilder::new("main", vec![Arg { ty: x_ty.clone(), dims: vec!["batch".into(), "seq".into(), "4".into()], onnx_name: "x".into() }]);
    let x = b.args().remove(0);
    let w = b.weight("w", t(&[Some(4)]), "w");
    let (_iter, carried) = b.begin_loop(&[x.clone()], 3, "loop").unwrap();
    let y = b.rms_norm(&carried[0], &w, 1e-6, 2, x_ty.clone(), "norm");
    let z = b.binary(BinaryOp::Add, &y, &carried[0], x_ty.clone(), "res");
    let outs = b.end_loop(&[z], &[]).unwrap();
    b.finish(&[(outs[0].clone(), "y".into(), vec!["batch".into(), "seq".into(), "4".into()])]).unwrap()
}

#[test]
fn built_ir_parses_verifies_and_round_trips() {
    let cx = new_context().unwrap();
    let text = sample();
    let m = parse_module(&cx, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    lt2_ir::verify::verify_module(&m, None).unwrap();
    let printed = m.as_operation().to_string();
    let m2 = parse_module(&cx, &printed).unwrap();
    assert_eq!(m2.as_operation().to_string(), printed);
    assert!(printed.contains("\"lt2.loop\""));
}

#[test]
fn wrong_arity_is_rejected_on_parse() {
    let cx = new_context().unwrap();
    let bad = r#"func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
      %0 = "lt2.add"(%a) : (tensor<4xf32>) -> tensor<4xf32>
      return %0 : tensor<4xf32>
    }"#;
    let e = parse_module(&cx, bad).unwrap_err().to_string();
    assert!(e.contains("operand"), "{e}");
}

#[test]
fn wrong_attribute_kind_is_rejected_on_parse() {
    let cx = new_context().unwrap();
    let bad = r#"func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
      %0 = "lt2.transpose"(%a) {perm = "0"} : (tensor<4xf32>) -> tensor<4xf32>
      return %0 : tensor<4xf32>
    }"#;
    assert!(parse_module(&cx, bad).is_err());
}

#[test]
fn loop_verifier_collects_errors() {
    let cx = new_context().unwrap();
    let text = sample().replace("trip_count = 3", "trip_count = 0");
    let m = parse_module(&cx, &text).unwrap();
    let e = lt2_ir::verify::verify_module(&m, Some("test-pass")).unwrap_err().to_string();
    assert!(e.contains("trip_count is 0") && e.contains("after pass `test-pass`"), "{e}");
}
