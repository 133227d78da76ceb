//! End to end through the CLI: compile the bundled LT2 example (Loop and unrolled forms),
//! run it on the CPU backend, compare with the golden logits of the ONNX reference evaluator
//! (cross-checked with onnxruntime when the fixture was made); and bad input gives errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use lt2_runtime::npz::{read_npz, write_npz};
use lt2_runtime::tensor::Tensor;

fn lt2c() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lt2c"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lt2_tiny").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lt2c-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn compile(model: &str, out: &Path) {
    let o = lt2c().arg(fixture(model)).arg("-o").arg(out).output().unwrap();
    assert!(o.status.success(), "compile failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn run_and_check(bin: &Path, io: &str) {
    let golden = read_npz(&fixture(io)).unwrap();
    // Poison: the outputs file exists with garbage before the run; it must be overwritten.
    let out = tmp(&format!("{}-{io}", bin.file_name().unwrap().to_string_lossy()));
    write_npz(&out, &[("logits".into(), Tensor::f32(vec![1], vec![f32::NAN]))]).unwrap();
    let o = lt2c().arg("run").arg(bin).arg("--inputs").arg(fixture(io)).arg("--outputs").arg(&out).args(["--device", "cpu"]).output().unwrap();
    assert!(o.status.success(), "run failed: {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ran on cpu"));
    let got = read_npz(&out).unwrap();
    let (g, r) = (&got["logits"], &golden["logits"]);
    assert_eq!(g.shape, r.shape);
    let err = rel_err(g.as_f32().unwrap(), r.as_f32().unwrap());
    assert!(err < 1e-5, "{io}: relative error {err:e} vs the reference evaluator");
}

#[test]
fn loop_form_matches_golden_logits_for_two_shapes() {
    let bin = tmp("loop.bin");
    compile("model.onnx", &bin);
    run_and_check(&bin, "io.npz");
    run_and_check(&bin, "io_b1_l7.npz");
}

#[test]
fn unrolled_form_matches_golden_logits() {
    let bin = tmp("unrolled.bin");
    compile("model_unrolled.onnx", &bin);
    run_and_check(&bin, "io.npz");
}

#[test]
fn imported_and_optimised_ir_snapshots() {
    for (emit, name) in [("mlir-imported", "lt2_tiny_imported"), ("mlir", "lt2_tiny_optimised")] {
        let o = lt2c().arg(fixture("model.onnx")).args(["--emit", emit]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8(o.stdout).unwrap();
        // The printed module must parse and verify again.
        let cx = lt2_ir::new_context().unwrap();
        let m = lt2_ir::parse_module(&cx, &text).unwrap();
        lt2_ir::verify::verify_module(&m, None).unwrap();
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn optimised_ir_cancels_transposes_and_hoists_weights() {
    let o = lt2c().arg(fixture("model.onnx")).args(["--emit", "mlir"]).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let i = lt2c().arg(fixture("model.onnx")).args(["--emit", "mlir-imported"]).output().unwrap();
    let imported = String::from_utf8(i.stdout).unwrap();
    assert!(imported.matches("lt2.transpose").count() >= 12, "importer brackets 3 convs with transposes");
    assert_eq!(text.matches("lt2.transpose").count(), 0, "canonicalize cancels every transpose pair");
    let loop_at = text.find("\"lt2.loop\"").unwrap();
    let loop_end = loop_at + text[loop_at..].find("gpu.yield").unwrap();
    assert!(text[loop_at..loop_end].contains("lt2.gdn"));
    assert!(!text[loop_at..loop_end].contains("lt2.weight"), "weights are hoisted out of the loop");
}

#[test]
fn inspect_describes_the_model() {
    let bin = tmp("inspect.bin");
    compile("model.onnx", &bin);
    let o = lt2c().arg("inspect").arg(&bin).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(s.contains("format version: 1"), "{s}");
    assert!(s.contains("input:          input_ids I64 [batch, seq]"), "{s}");
    assert!(s.contains("output:         logits F32 [batch, seq, 256]"), "{s}");
    assert!(s.contains("Gdn x1") && s.contains("Loop x1"), "{s}");
}

#[test]
fn bad_inputs_give_errors_not_panics() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["/nonexistent/model.onnx".into()], "No such file"),
        (vec![fixture("io.npz").display().to_string(), "-o".into(), tmp("x.bin").display().to_string()], "not a valid ONNX protobuf"),
        (vec!["run".into(), fixture("model.onnx").display().to_string(), "--inputs".into(), fixture("io.npz").display().to_string(), "--outputs".into(), tmp("y.npz").display().to_string()], "not an lt2c model file"),
    ];
    for (args, want) in cases {
        let o = lt2c().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Wrong input dtype / missing input.
    let bin = tmp("bad-inputs.bin");
    compile("model.onnx", &bin);
    let wrong = tmp("wrong.npz");
    write_npz(&wrong, &[("input_ids".into(), Tensor::f32(vec![1, 3], vec![1.0, 2.0, 3.0]))]).unwrap();
    let o = lt2c().arg("run").arg(&bin).arg("--inputs").arg(&wrong).arg("--outputs").arg(tmp("z.npz")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("input `input_ids`") && err.contains("dtype"), "{err}");
    let missing = tmp("missing.npz");
    write_npz(&missing, &[("ids".into(), Tensor::i64(vec![1, 3], vec![1, 2, 3]))]).unwrap();
    let o = lt2c().arg("run").arg(&bin).arg("--inputs").arg(&missing).arg("--outputs").arg(tmp("z.npz")).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing from the inputs"));
    // Token ids past the vocabulary.
    let oob = tmp("oob.npz");
    write_npz(&oob, &[("input_ids".into(), Tensor::i64(vec![1, 2], vec![1, 9999]))]).unwrap();
    let o = lt2c().arg("run").arg(&bin).arg("--inputs").arg(&oob).arg("--outputs").arg(tmp("z.npz")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
}

#[test]
fn cuda_request_without_gpu_says_why() {
    if lt2_runtime::device::cuda_driver_present().is_ok() {
        return; // a GPU host: the message differs
    }
    let bin = tmp("cuda.bin");
    compile("model.onnx", &bin);
    let o = lt2c().arg("run").arg(&bin).arg("--inputs").arg(fixture("io.npz")).arg("--outputs").arg(tmp("c.npz")).args(["--device", "cuda"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("libcuda.so.1"), "{err}");
}
