//! Kernels compiled ahead of time and carried in model.bin. `lt2c MODEL.onnx` compiles every
//! file of `KernelFile::ALL` with NVRTC (`compile_all`) to a cubin for each of `CUBIN_ARCHS` and
//! to PTX for `PTX_ARCH`. When a model loads, the CUDA backend takes for each file the first image
//! the device can load (`candidates`): the cubin of its architecture, else the PTX (which the
//! driver JIT-compiles), else it compiles the file with NVRTC for the device (`kernels::cubins`),
//! which is then the only path that needs NVRTC on the GPU host.
//!
//! An image is used only when it was compiled from the kernel sources this runtime was built with
//! (`source_hash`): the launch wrappers in `cuda/` and the kernels' signatures must agree, and a
//! model.bin written by another lt2c version may carry other ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaModule};

use super::kernels::{self, KernelFile, COMMON, OPTIONS};
use super::nvrtc::{self, NvrtcError};
use crate::format::ModelFile;
use crate::plan::{ImageKind, KernelImage};

/// The real architectures every kernel file is compiled for, as cubins: sm_80 serves every
/// sm_8x device (A100, A10, L4, ...), sm_90a the sm_90 ones (H100, H200).
pub const CUBIN_ARCHS: [&str; 2] = ["sm_80", "sm_90a"];

/// The virtual architecture of the PTX every kernel file carries, for devices with no cubin.
pub const PTX_ARCH: &str = "compute_80";

/// xxh3-64 of what an image of `f` is compiled from: `common.cuh`, the file and the options.
pub fn source_hash(f: KernelFile) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [COMMON, f.source(), &OPTIONS.join(" ")] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// One compiled image: its manifest entry (offset and nbytes are filled in when the file is
/// written) and its bytes.
pub struct Prebuilt {
    /// The manifest entry.
    pub entry: KernelImage,
    /// The cubin, or the PTX text.
    pub bytes: Vec<u8>,
}

/// Every target an image is compiled for: `(arch, kind)`.
pub fn targets() -> Vec<(&'static str, ImageKind)> {
    let mut v: Vec<_> = CUBIN_ARCHS.iter().map(|&a| (a, ImageKind::Cubin)).collect();
    v.push((PTX_ARCH, ImageKind::Ptx));
    v
}

/// Compiles every kernel file for every target (`targets`) with NVRTC, on as many threads as
/// the machine has cores, through the disk cache of `kernels::compile_cached`. The images come
/// file by file, in `KernelFile::ALL` order. Fails with the first file that does not compile.
pub fn compile_all() -> Result<Vec<Prebuilt>, NvrtcError> {
    let compiler = match nvrtc::available() {
        Ok((_, v)) => format!("NVRTC {}.{}", v.0, v.1),
        Err(log) => return Err(NvrtcError { file: "every kernel file".into(), arch: "any".into(), log }),
    };
    // One build at a time across processes (parallel `lt2c` runs on a cold cache): the others
    // wait, then find every image in the disk cache. Released when the file closes.
    let _lock = kernels::cache_dir().and_then(|d| {
        std::fs::create_dir_all(&d).ok()?;
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(d.join("compile.lock")).ok()?;
        f.lock().ok().map(|_| f)
    });
    let jobs: Vec<(KernelFile, &str, ImageKind)> = KernelFile::ALL.iter().flat_map(|&f| targets().into_iter().map(move |(a, k)| (f, a, k))).collect();
    let next = AtomicUsize::new(0);
    // (job index, image) as each finishes.
    let done = Mutex::new(Vec::<(usize, Result<Vec<u8>, NvrtcError>)>::new());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4).min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(f, arch, _)) = jobs.get(i) else { break };
                let r = kernels::compile_cached(f, arch);
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    if done.len() != jobs.len() {
        return Err(NvrtcError { file: "?".into(), arch: "?".into(), log: "a compiler thread panicked".into() });
    }
    done.sort_by_key(|d| d.0);
    done.into_iter()
        .map(|(i, r)| {
            let (f, arch, kind) = jobs[i];
            let entry = KernelImage { file: f.file_name().into(), arch: arch.into(), kind: kind as i32, source_hash: source_hash(f), compiler: compiler.clone(), ..Default::default() };
            r.map(|bytes| Prebuilt { entry, bytes })
        })
        .collect()
}

/// An architecture name split up: `sm_90a` is (9, 0, "a"), `compute_80` (8, 0, ""), `sm_100`
/// (10, 0, "").
fn parse_arch(arch: &str) -> Option<(i32, i32, &str)> {
    let rest = arch.strip_prefix("sm_").or_else(|| arch.strip_prefix("compute_"))?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let n: i32 = rest[..digits].parse().ok()?;
    (n >= 10).then_some((n / 10, n % 10, &rest[digits..]))
}

/// Whether a device of compute capability `cc` can load `img`: a cubin of the same major version
/// and a minor at most the device's (exactly the device's for an arch-specific `sm_90a`), or PTX
/// for an architecture at most the device's.
fn loadable(img: &KernelImage, cc: (i32, i32)) -> bool {
    let Some((major, minor, suffix)) = parse_arch(&img.arch) else { return false };
    match ImageKind::try_from(img.kind) {
        Ok(ImageKind::Cubin) => img.arch.starts_with("sm_") && major == cc.0 && if suffix.is_empty() { minor <= cc.1 } else { minor == cc.1 },
        Ok(ImageKind::Ptx) => img.arch.starts_with("compute_") && suffix.is_empty() && (major, minor) <= cc,
        Err(_) => false,
    }
}

/// The indices of the images of `f` in `images` that a device of compute capability `cc` can
/// load and that were compiled from this runtime's sources, best first: cubins (the nearest
/// architecture first), then PTX (the newest first).
pub fn candidates(images: &[KernelImage], f: KernelFile, cc: (i32, i32)) -> Vec<usize> {
    let hash = source_hash(f);
    let mut v: Vec<usize> = (0..images.len()).filter(|&i| images[i].file == f.file_name() && images[i].source_hash == hash && loadable(&images[i], cc)).collect();
    // Cubins (kind 0) before PTX (kind 1); within a kind, the highest architecture first.
    v.sort_by_key(|&i| (images[i].kind, std::cmp::Reverse(parse_arch(&images[i].arch).map(|a| (a.0, a.1)))));
    v
}

/// Why no image of `f` in `images` suits a device of compute capability `cc`.
fn none_suits(images: &[KernelImage], f: KernelFile, cc: (i32, i32)) -> String {
    let of_f: Vec<&KernelImage> = images.iter().filter(|i| i.file == f.file_name()).collect();
    if images.is_empty() {
        "model.bin holds no kernels".into()
    } else if of_f.is_empty() {
        format!("model.bin holds no image of {}", f.file_name())
    } else if of_f.iter().all(|i| i.source_hash != source_hash(f)) {
        "model.bin's kernels were compiled from other sources (another lt2c)".into()
    } else {
        let archs: Vec<&str> = of_f.iter().map(|i| i.arch.as_str()).collect();
        format!("model.bin holds {} only, none for sm_{}{}", archs.join(", "), cc.0, cc.1)
    }
}

/// Where a kernel file's module came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An image from model.bin: its architecture and kind.
    Image(String, ImageKind),
    /// Compiled with NVRTC at load, and why no image served.
    Nvrtc(String),
}

/// One line saying where the kernels came from, e.g. `kernels: sm_90a cubins from model.bin`,
/// or with counts where files differ: `kernels: 11 sm_80 cubins from model.bin, 1 compiled with
/// NVRTC for sm_86 (model.bin holds no image of rope.cu)`.
pub fn describe(origins: &[Origin], device_arch: &str) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for o in origins {
        let label = match o {
            Origin::Image(arch, ImageKind::Cubin) => format!("{arch} cubins from model.bin"),
            Origin::Image(arch, ImageKind::Ptx) => format!("{arch} PTX from model.bin, JIT-compiled by the driver"),
            Origin::Nvrtc(why) => format!("compiled with NVRTC for {device_arch} ({why})"),
        };
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.1 += 1,
            None => groups.push((label, 1)),
        }
    }
    let parts: Vec<String> = if groups.len() == 1 { vec![groups.remove(0).0] } else { groups.iter().map(|(l, n)| format!("{n} {l}")).collect() };
    format!("kernels: {}", parts.join(", "))
}

/// Loads a module per kernel file for a device of compute capability `cc`: from the first image
/// of `file` that the device loads (`candidates`), else compiled with NVRTC for the device.
/// Returns the modules and `describe`'s line. Fails where a file needs NVRTC and NVRTC fails or
/// is missing, saying why no image served.
pub fn load_modules(ctx: &Arc<CudaContext>, cc: (i32, i32), file: Option<&ModelFile>) -> Result<(HashMap<KernelFile, Arc<CudaModule>>, String), String> {
    let arch = format!("sm_{}{}", cc.0, cc.1);
    let images: &[KernelImage] = file.map(|f| &f.manifest.kernels[..]).unwrap_or(&[]);
    let mut modules = HashMap::new();
    let mut origins = Vec::new();
    let mut missing = Vec::new();
    for f in KernelFile::ALL {
        let mut why = if file.is_none() { "no model given".to_string() } else { none_suits(images, f, cc) };
        for i in candidates(images, f, cc) {
            let (img, bytes) = (&images[i], file.map(|m| m.kernel_bytes(i)).unwrap_or(&[]));
            let kind = ImageKind::try_from(img.kind).unwrap_or(ImageKind::Cubin);
            let mut data = bytes.to_vec();
            if kind == ImageKind::Ptx {
                // The driver reads PTX up to its terminating NUL.
                data.push(0);
            }
            match ctx.load_module(cudarc::nvrtc::Ptx::from_binary(data)) {
                Ok(m) => {
                    modules.insert(f, m);
                    origins.push(Origin::Image(img.arch.clone(), kind));
                    break;
                }
                Err(e) => why = format!("its {} {kind:?} did not load: {e:?}", img.arch),
            }
        }
        if !modules.contains_key(&f) {
            missing.push((f, why));
        }
    }
    if let Some((_, first_why)) = missing.first() {
        let cubins = kernels::cubins(&arch).map_err(|e| format!("{first_why}, and NVRTC cannot compile them for {arch}: {e}"))?;
        for (f, why) in missing {
            let m = ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubins[&f].clone())).map_err(|e| format!("loading the {} cubin: {e:?}", f.file_name()))?;
            modules.insert(f, m);
            origins.push(Origin::Nvrtc(why));
        }
    }
    Ok((modules, describe(&origins, &arch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(f: KernelFile, arch: &str, kind: ImageKind) -> KernelImage {
        KernelImage { file: f.file_name().into(), arch: arch.into(), kind: kind as i32, source_hash: source_hash(f), ..Default::default() }
    }

    fn full_set() -> Vec<KernelImage> {
        KernelFile::ALL.iter().flat_map(|&f| targets().into_iter().map(move |(a, k)| image(f, a, k))).collect()
    }

    #[test]
    fn each_device_gets_the_image_it_can_load() {
        let imgs = full_set();
        let f = KernelFile::Gdn;
        let arch_of = |cc| candidates(&imgs, f, cc).iter().map(|&i| imgs[i].arch.clone()).collect::<Vec<_>>();
        assert_eq!(arch_of((9, 0)), ["sm_90a", "compute_80"]);
        assert_eq!(arch_of((8, 0)), ["sm_80", "compute_80"]);
        assert_eq!(arch_of((8, 6)), ["sm_80", "compute_80"]);
        assert_eq!(arch_of((8, 9)), ["sm_80", "compute_80"]);
        // No cubin for Blackwell: the PTX. Nothing for a device older than the PTX.
        assert_eq!(arch_of((10, 0)), ["compute_80"]);
        assert_eq!(arch_of((12, 0)), ["compute_80"]);
        assert!(arch_of((7, 5)).is_empty());
        // sm_90a is arch-specific: not for a later 9.x.
        assert_eq!(arch_of((9, 1)), ["compute_80"]);
        assert!(candidates(&imgs, f, (9, 0)).iter().all(|&i| imgs[i].file == "gdn.cu"));
    }

    #[test]
    fn images_from_other_sources_are_not_used() {
        let mut imgs = full_set();
        for i in &mut imgs {
            i.source_hash ^= 1;
        }
        assert!(candidates(&imgs, KernelFile::Gdn, (9, 0)).is_empty());
        assert!(none_suits(&imgs, KernelFile::Gdn, (9, 0)).contains("other sources"));
        assert_eq!(none_suits(&[], KernelFile::Gdn, (9, 0)), "model.bin holds no kernels");
        let only_80: Vec<KernelImage> = full_set().into_iter().filter(|i| i.arch == "sm_80").collect();
        assert_eq!(none_suits(&only_80, KernelFile::Gdn, (7, 5)), "model.bin holds sm_80 only, none for sm_75");
    }

    #[test]
    fn architectures_parse() {
        assert_eq!(parse_arch("sm_90a"), Some((9, 0, "a")));
        assert_eq!(parse_arch("compute_80"), Some((8, 0, "")));
        assert_eq!(parse_arch("sm_100f"), Some((10, 0, "f")));
        assert_eq!(parse_arch("sm_120"), Some((12, 0, "")));
        assert_eq!(parse_arch("gfx90a"), None);
    }

    #[test]
    fn the_origin_line_is_short() {
        let cubins = vec![Origin::Image("sm_90a".into(), ImageKind::Cubin); 3];
        assert_eq!(describe(&cubins, "sm_90"), "kernels: sm_90a cubins from model.bin");
        let mixed = vec![Origin::Image("sm_80".into(), ImageKind::Cubin), Origin::Image("sm_80".into(), ImageKind::Cubin), Origin::Nvrtc("model.bin holds no image of rope.cu".into())];
        assert_eq!(describe(&mixed, "sm_86"), "kernels: 2 sm_80 cubins from model.bin, 1 compiled with NVRTC for sm_86 (model.bin holds no image of rope.cu)");
    }

    #[test]
    fn every_target_is_a_known_architecture() {
        for (arch, kind) in targets() {
            assert!(parse_arch(arch).is_some(), "{arch}");
            assert_eq!(nvrtc::is_virtual(arch), kind == ImageKind::Ptx, "{arch}");
        }
    }
}
