//! Incremental decoding equals the full-sequence forward: prefill a prefix, decode the rest one
//! token at a time, and every position's logits match the stateless run of the whole sequence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lt2_runtime::exec::CpuModel;
use lt2_runtime::format::ModelFile;
use lt2_runtime::session::{Session, SessionOptions};
use lt2_runtime::tensor::Tensor;

fn compile(fixture: &str, form: &str, tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture).join(form);
    let dir = std::env::temp_dir().join(format!("lt2c-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{tag}-{fixture}-{form}.bin"));
    let o = Command::new(env!("CARGO_BIN_EXE_lt2c")).arg(&src).arg("-o").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Full forward logits [L, V] of one sequence.
fn full(model: &CpuModel, ids: &[i64]) -> Vec<Vec<f32>> {
    let info = model.file().manifest.decode.clone().unwrap();
    let out = model.run(&HashMap::from([(info.ids_input, Tensor::i64(vec![1, ids.len()], ids.to_vec()))])).unwrap();
    let l = &out.iter().find(|(n, _)| *n == info.logits_output).unwrap().1;
    let v = *l.shape.last().unwrap();
    l.as_f32().unwrap().chunks(v).map(|c| c.to_vec()).collect()
}

/// Prefill `p` tokens, decode the rest; compare each position with the full forward.
pub fn check_decode_matches_full(bin: &Path, ids: &[i64], prefixes: &[usize]) {
    let model = CpuModel::new(ModelFile::open(bin).unwrap()).unwrap();
    let want = full(&model, ids);
    for &p in prefixes {
        let mut s = Session::new(&model, SessionOptions { max_context: ids.len(), ..Default::default() }).unwrap();
        let pre = s.prefill(&[ids[..p].to_vec()]).unwrap().remove(0);
        let v = want[0].len();
        for (i, row) in pre.as_f32().unwrap().chunks(v).enumerate() {
            let e = rel_err(row, &want[i]);
            assert!(e < 1e-5, "prefix {p}, prefill position {i}: relative error {e:e}");
        }
        for (i, &tok) in ids.iter().enumerate().skip(p) {
            let got = s.decode(&[tok]).unwrap().remove(0);
            let e = rel_err(&got, &want[i]);
            assert!(e < 1e-5, "prefix {p}, decode position {i}: relative error {e:e}");
        }
        assert_eq!(s.lengths(), vec![ids.len()]);
        // The context is full now: one more token is a clear error.
        let err = s.decode(&[1]).unwrap_err().to_string();
        assert!(err.contains("context capacity"), "{err}");
    }
}

#[test]
fn tiny_example_decodes_exactly_loop_and_unrolled() {
    let ids: Vec<i64> = vec![5, 17, 200, 3, 99, 42, 7, 128, 255, 0, 64, 31, 8, 150];
    for form in ["model.onnx", "model_unrolled.onnx"] {
        let bin = compile("lt2_tiny", form, "exact");
        check_decode_matches_full(&bin, &ids, &[1, 4, 13]);
    }
}

#[test]
fn sequences_of_different_lengths_keep_their_own_caches() {
    let bin = compile("lt2_tiny", "model.onnx", "lengths");
    let model = CpuModel::new(ModelFile::open(&bin).unwrap()).unwrap();
    let a: Vec<i64> = vec![1, 2, 3, 4, 5, 6];
    let b: Vec<i64> = vec![9, 8];
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    assert!(s.cache_report().fixed_per_seq > 0 && s.cache_report().per_token_per_seq > 0);
    s.prefill(&[a.clone(), b.clone()]).unwrap();
    let step = s.decode(&[10, 11]).unwrap();
    let wa = full(&model, &[a, vec![10]].concat());
    let wb = full(&model, &[b, vec![11]].concat());
    assert!(rel_err(&step[0], wa.last().unwrap()) < 1e-5);
    assert!(rel_err(&step[1], wb.last().unwrap()) < 1e-5);
    assert!(s.decode(&[1]).is_err(), "one token per sequence");
}

/// Prompts of equal length run as one batch (one [n, len] run per step) and of other lengths
/// as their own group; every sequence still gets its own logits, equal to its full forward.
#[test]
fn equal_length_sequences_decode_as_one_batch() {
    let bin = compile("lt2_tiny", "model.onnx", "batched");
    let model = CpuModel::new(ModelFile::open(&bin).unwrap()).unwrap();
    let prompts: Vec<Vec<i64>> = vec![vec![1, 2, 3, 4], vec![7, 7, 9, 200], vec![5, 6], vec![250, 3, 3, 1]];
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let pre = s.prefill(&prompts).unwrap();
    for (p, t) in prompts.iter().zip(&pre) {
        let want = full(&model, p);
        for (row, w) in t.as_f32().unwrap().chunks(w_len(&want)).zip(&want) {
            assert!(rel_err(row, w) < 1e-5);
        }
    }
    let mut seqs = prompts.clone();
    for step in 0..3 {
        let next: Vec<i64> = (0..prompts.len()).map(|i| (17 * i + 31 * step + 2) as i64 % 256).collect();
        let got = s.decode(&next).unwrap();
        for (i, sq) in seqs.iter_mut().enumerate() {
            sq.push(next[i]);
            let e = rel_err(&got[i], full(&model, sq).last().unwrap());
            assert!(e < 1e-5, "sequence {i} step {step}: {e:e}");
        }
    }
    assert_eq!(s.lengths(), vec![7, 7, 5, 7]);
}

fn w_len(rows: &[Vec<f32>]) -> usize {
    rows[0].len()
}

/// `prefill_last` (the LM head runs on the last position only) gives the last row of `prefill`.
#[test]
fn prefill_last_is_the_last_row_of_prefill() {
    let bin = compile("lt2_tiny", "model.onnx", "last");
    let model = CpuModel::new(ModelFile::open(&bin).unwrap()).unwrap();
    let prompts: Vec<Vec<i64>> = vec![vec![4, 8, 15, 16, 23, 42], vec![1, 2, 3, 4, 5, 6], vec![9]];
    let mut a = Session::new(&model, SessionOptions::default()).unwrap();
    let mut b = Session::new(&model, SessionOptions::default()).unwrap();
    let full = a.prefill(&prompts).unwrap();
    let last = b.prefill_last(&prompts).unwrap();
    for (f, l) in full.iter().zip(&last) {
        let v = l.len();
        let fl = f.as_f32().unwrap();
        assert_eq!(fl.len() % v, 0);
        assert!(rel_err(l, &fl[fl.len() - v..]) < 1e-6);
    }
    // The sessions continue identically.
    assert!(rel_err(&a.decode(&[7, 7, 7]).unwrap()[1], &b.decode(&[7, 7, 7]).unwrap()[1]) < 1e-6);
}
