//! The importer reports every unsupported op of a model at once, naming op, domain and opset,
//! and rejects non-constant loop trip counts with the node's name.

use lt2_frontend::{import_model, FrontendError};
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

fn model(nodes: Vec<NodeProto>) -> ModelProto {
    ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 27 }],
        graph: Some(GraphProto { node: nodes, ..Default::default() }),
        ..Default::default()
    }
}

fn node(name: &str, op: &str, domain: &str) -> NodeProto {
    NodeProto { name: name.into(), op_type: op.into(), domain: domain.into(), input: vec![], output: vec![format!("{name}_out")], ..Default::default() }
}

#[test]
fn lists_all_unsupported_ops_together() {
    let m = model(vec![node("a", "Einsumm", ""), node("b", "FancyOp", "com.example"), node("c", "Einsumm", "")]);
    let err = import_model(&m, None).err().expect("must fail");
    match &err {
        FrontendError::Unsupported { list } => {
            assert_eq!(list.len(), 2, "{list:?}");
            assert!(list.iter().any(|s| s.contains("Einsumm (domain ai.onnx, opset 27)")));
            assert!(list.iter().any(|s| s.contains("FancyOp (domain com.example")));
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn loop_without_constant_trip_count_names_the_node() {
    let mut l = node("my_loop", "Loop", "");
    l.input = vec!["".into(), "".into()];
    l.attribute = vec![tract_onnx::pb::AttributeProto { name: "body".into(), g: Some(GraphProto::default()), ..Default::default() }];
    let err = import_model(&model(vec![l]), None).err().expect("must fail").to_string();
    assert!(err.contains("my_loop") && err.contains("trip count"), "{err}");
}
