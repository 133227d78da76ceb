//! IR tests in the style of Cranelift filetests: each `tests/ir/<pass>/<case>.mlir` names on
//! its first line (`// passes: a, b`) the passes to run; the result is verified and snapshotted.

use lt2_passes::pipeline::pass_by_name;

#[test]
fn ir_cases() {
    insta::glob!("ir/**/*.mlir", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let names: Vec<&str> = first.trim_start_matches("// passes:").split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        assert!(!names.is_empty(), "{}: first line must be `// passes: ...`", path.display());
        let cx = lt2_ir::new_context().unwrap();
        let mut m = lt2_ir::parse_module(&cx, &text).unwrap();
        for n in &names {
            let p = pass_by_name(n).unwrap_or_else(|| panic!("unknown pass {n}"));
            p.run(&mut m).unwrap();
            lt2_ir::verify::verify_module(&m, Some(n)).unwrap();
        }
        insta::assert_snapshot!(m.as_operation().to_string());
    });
}

#[test]
fn canonicalize_is_idempotent() {
    let cx = lt2_ir::new_context().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ir/canonicalize/cancel_transposes.mlir")).unwrap();
    let mut m = lt2_ir::parse_module(&cx, &text).unwrap();
    let p = pass_by_name("canonicalize").unwrap();
    assert!(p.run(&mut m).unwrap() > 0);
    assert_eq!(p.run(&mut m).unwrap(), 0);
}
