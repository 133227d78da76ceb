//! CUDA kernels compiled ahead of time into model.bin (no GPU needed): `lt2c MODEL.onnx` embeds
//! a cubin for sm_80 and sm_90a and PTX for compute_80 of every kernel file, each defining every
//! kernel the backend launches from that file; `lt2c inspect` lists them; a file without kernels
//! (`--no-kernels`, or no NVRTC when it was compiled) says so, and still loads and runs on the CPU.
//! On a GPU host, the embedded cubins, or the PTX alone, run the model with NVRTC turned off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lt2_runtime::cuda::kernels::{Kernel, KernelFile};
use lt2_runtime::cuda::{nvrtc, prebuilt};
use lt2_runtime::exec::CpuModel;
use lt2_runtime::format::{self, ModelFile, WeightBytes};
use lt2_runtime::npz::read_npz;
use lt2_runtime::plan::ImageKind;
use lt2_runtime::tensor::Tensor;

fn ouro(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zoo/ouro").join(name)
}

/// Compiles the Ouro tiny model to `tag`.bin with extra arguments and environment.
fn compile(tag: &str, args: &[&str], env: &[(&str, &str)]) -> (PathBuf, Output) {
    let dir = std::env::temp_dir().join(format!("lt2c-kernels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{tag}.bin"));
    let o = Command::new(env!("CARGO_BIN_EXE_lt2c")).arg(ouro("standard_loop.onnx")).arg("-o").arg(&out).args(args).envs(env.iter().copied()).output().unwrap();
    assert!(o.status.success(), "{tag}: {}", String::from_utf8_lossy(&o.stderr));
    (out, o)
}

/// Relative L2 error of `got` against `want`.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

fn inspect(bin: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_lt2c")).arg("inspect").arg(bin).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn compiled_model_carries_cubins_and_ptx_of_every_kernel_file() {
    match nvrtc::available() {
        Ok((path, v)) => eprintln!("NVRTC {}.{} from {}", v.0, v.1, path.display()),
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    }
    let (bin, o) = compile("with-kernels", &[], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("kernels: ") && !stderr.contains("warning"), "{stderr}");
    let file = ModelFile::open(&bin).unwrap();
    let images = &file.manifest.kernels;
    let targets = prebuilt::targets();
    assert_eq!(images.len(), KernelFile::ALL.len() * targets.len());
    let mut failures = Vec::new();
    for f in KernelFile::ALL {
        let symbols: Vec<String> = Kernel::all().into_iter().filter(|k| k.file() == f).map(|k| k.symbol()).collect();
        for &(arch, kind) in &targets {
            let Some(i) = images.iter().position(|k| k.file == f.file_name() && k.arch == arch && k.kind == kind as i32) else {
                failures.push(format!("{} has no {arch} {kind:?}", f.file_name()));
                continue;
            };
            assert_eq!(images[i].source_hash, prebuilt::source_hash(f), "{} {arch}", f.file_name());
            assert!(images[i].compiler.starts_with("NVRTC "), "{}", images[i].compiler);
            let bytes = file.kernel_bytes(i);
            let defines = |s: &str| match kind {
                ImageKind::Cubin => bytes.windows(s.len() + 2).any(|w| w[0] == 0 && &w[1..=s.len()] == s.as_bytes() && w[s.len() + 1] == 0),
                ImageKind::Ptx => String::from_utf8_lossy(bytes).contains(&format!(".entry {s}(")),
            };
            match kind {
                ImageKind::Cubin if !bytes.starts_with(b"\x7fELF") => failures.push(format!("{} {arch}: not an ELF cubin", f.file_name())),
                ImageKind::Ptx if !String::from_utf8_lossy(bytes).contains(".target sm_80") || bytes.contains(&0) => {
                    failures.push(format!("{} {arch}: not sm_80 PTX text", f.file_name()))
                }
                _ => {}
            }
            failures.extend(symbols.iter().filter(|s| !defines(s)).map(|s| format!("{} {arch} {kind:?} does not define {s}", f.file_name())));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every device of sm_80 or later finds an image of every file.
    for cc in [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)] {
        assert!(KernelFile::ALL.iter().all(|&f| !prebuilt::candidates(images, f, cc).is_empty()), "sm_{}{}", cc.0, cc.1);
    }
    let text = inspect(&bin);
    let line = text.lines().find(|l| l.starts_with("kernels:")).unwrap_or_default();
    assert!(line.contains(&format!("{} images", images.len())) && line.contains("sm_80 cubin, sm_90a cubin, compute_80 ptx"), "{line}");
    assert!(line.contains(&format!("{} files", KernelFile::ALL.len())), "{line}");
}

#[test]
fn model_without_kernels_loads_and_runs_on_the_cpu() {
    let golden = read_npz(&ouro("io_short.npz")).unwrap();
    for (tag, args, env) in [("no-kernels-flag", &["--no-kernels"][..], &[][..]), ("no-nvrtc", &[][..], &[("LT2C_NVRTC", "none")][..])] {
        let (bin, o) = compile(tag, args, env);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning:")).collect();
        if env.is_empty() {
            assert!(warnings.is_empty(), "{tag}: {stderr}");
        } else {
            assert_eq!(warnings.len(), 1, "{tag}: one warning: {stderr}");
            assert!(warnings[0].contains("JIT") && warnings[0].contains("LT2C_NVRTC=none"), "{tag}: {}", warnings[0]);
        }
        assert!(inspect(&bin).contains("kernels:        none"), "{tag}");
        let model = CpuModel::new(ModelFile::open(&bin).unwrap()).unwrap();
        assert!(model.file().manifest.kernels.is_empty());
        let inputs: HashMap<String, Tensor> = model.file().manifest.inputs.iter().map(|s| (s.name.clone(), golden[&s.name].clone())).collect();
        let outs = model.run(&inputs).unwrap();
        let err = rel_err(outs[0].1.as_f32().unwrap(), golden[&outs[0].0].as_f32().unwrap());
        assert!(err < 1e-4, "{tag}: relative error {err:e} vs the golden {}", outs[0].0);
    }
}

/// Runs `bin` on the GPU with NVRTC turned off; returns the stderr, after checking the logits.
fn run_on_gpu_without_nvrtc(bin: &Path) -> String {
    let out = bin.with_extension("out.npz");
    let o = Command::new(env!("CARGO_BIN_EXE_lt2c"))
        .arg("run")
        .arg(bin)
        .arg("--inputs")
        .arg(ouro("io_short.npz"))
        .arg("--outputs")
        .arg(&out)
        .args(["--device", "cuda"])
        .env("LT2C_NVRTC", "none")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}: {stderr}", bin.display());
    let (got, golden) = (read_npz(&out).unwrap(), read_npz(&ouro("io_short.npz")).unwrap());
    let err = rel_err(got["logits"].as_f32().unwrap(), golden["logits"].as_f32().unwrap());
    assert!(err < 1e-4, "{}: relative error {err:e} vs the golden logits", bin.display());
    stderr
}

#[test]
fn gpu_runs_the_embedded_kernels_without_nvrtc() {
    if let Err(why) = lt2_runtime::cuda::Cuda::probe() {
        eprintln!("skipped: no usable GPU: {why}");
        return;
    }
    if let Err(why) = nvrtc::available() {
        eprintln!("skipped: no NVRTC to embed kernels with: {why}");
        return;
    }
    let (bin, _) = compile("gpu", &[], &[]);
    let stderr = run_on_gpu_without_nvrtc(&bin);
    eprintln!("{stderr}");
    assert!(stderr.contains("from model.bin") && !stderr.contains("compiled with NVRTC"), "{stderr}");
    // The same model with the PTX only: the driver JIT-compiles it.
    let file = ModelFile::open(&bin).unwrap();
    let mut manifest = file.manifest.clone();
    let ptx: Vec<usize> = (0..manifest.kernels.len()).filter(|&i| manifest.kernels[i].kind == ImageKind::Ptx as i32).collect();
    manifest.kernels = ptx.iter().map(|&i| manifest.kernels[i].clone()).collect();
    let weights: Vec<WeightBytes> = (0..manifest.weights.len()).map(|i| WeightBytes { bytes: file.weight_bytes(i) }).collect();
    let kernels: Vec<&[u8]> = ptx.iter().map(|&i| file.kernel_bytes(i)).collect();
    let ptx_bin = bin.with_file_name("gpu-ptx-only.bin");
    format::write_model_file(&ptx_bin, manifest, &weights, &kernels).unwrap();
    let stderr = run_on_gpu_without_nvrtc(&ptx_bin);
    eprintln!("{stderr}");
    assert!(stderr.contains("kernels: compute_80 PTX from model.bin"), "{stderr}");
}
