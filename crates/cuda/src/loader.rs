//! Finding the CUDA libraries at run time. cudarc loads each library lazily on first use and
//! panics when it is missing; weft instead probes every library it needs up front, under the
//! same candidate names cudarc will ask the dynamic loader for, and turns an absence into one
//! `Error::Device` that names each missing library. The probe itself never panics, and the
//! cudarc entry points that follow it run under `guard`, which turns a panic into an error.
//!
//! Libraries installed outside the loader's search path (the PyPI wheels: `nvidia-cuda-nvrtc`
//! puts `libnvrtc.so.13` in `site-packages/nvidia/cu13/lib`) are named by environment variables
//! holding a file path (`WEFT_NVRTC_LIB`, `WEFT_CUBLAS_LIB`, `WEFT_NCCL_LIB`, `WEFT_CUDA_LIB`)
//! or a folder searched for all of them (`WEFT_CUDA_LIB_DIR`, `:`-separated). Such a library is
//! preloaded by its path with global symbol visibility; the later `dlopen` by cudarc, under the
//! bare soname, then finds the already-loaded object instead of searching `LD_LIBRARY_PATH`.

use libloading::Library;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use weft_core::{Error, Result};

/// One library weft uses through cudarc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// The driver API, `libcuda.so` (installed with the NVIDIA driver, not with the toolkit).
    Driver,
    /// The run-time compiler for the kernels, `libnvrtc.so`.
    Nvrtc,
    /// Matrix multiplication, `libcublas.so` (which itself needs `libcublasLt.so`).
    Cublas,
    /// Collectives across GPUs, `libnccl.so.2`.
    Nccl,
}

impl Lib {
    /// The libraries a CUDA backend needs, in the order they are reported.
    pub const BACKEND: [Lib; 3] = [Lib::Driver, Lib::Nvrtc, Lib::Cublas];

    /// cudarc's name stem: the file names tried are derived from it as cudarc does.
    fn stem(self) -> &'static str {
        match self {
            Lib::Driver => "cuda",
            Lib::Nvrtc => "nvrtc",
            Lib::Cublas => "cublas",
            Lib::Nccl => "nccl",
        }
    }

    /// The name a user looks for, in the error message.
    pub fn file_name(self) -> &'static str {
        match self {
            Lib::Driver => "libcuda.so (the NVIDIA driver)",
            Lib::Nvrtc => "libnvrtc.so (NVRTC)",
            Lib::Cublas => "libcublas.so (cuBLAS)",
            Lib::Nccl => "libnccl.so.2 (NCCL)",
        }
    }

    /// The environment variable naming this library's file.
    pub fn env_var(self) -> &'static str {
        match self {
            Lib::Driver => "WEFT_CUDA_LIB",
            Lib::Nvrtc => "WEFT_NVRTC_LIB",
            Lib::Cublas => "WEFT_CUBLAS_LIB",
            Lib::Nccl => "WEFT_NCCL_LIB",
        }
    }

    /// Companion libraries that must be loaded from the same folder first: NVRTC opens its
    /// builtins by bare name, and cuBLAS links against cuBLASLt.
    fn companions(self) -> &'static [&'static str] {
        match self {
            Lib::Nvrtc => &["libnvrtc-builtins.so"],
            Lib::Cublas => &["libcublasLt.so"],
            Lib::Driver | Lib::Nccl => &[],
        }
    }

    /// The file names the dynamic loader is asked for, as cudarc asks for them.
    fn candidates(self) -> Vec<String> {
        let mut names = cudarc::get_lib_name_candidates(self.stem());
        if self == Lib::Nccl && !names.iter().any(|n| n == "libnccl.so.2") {
            names.insert(0, "libnccl.so.2".into());
        }
        names
    }
}

/// Libraries kept loaded for the life of the process, so cudarc's `dlopen` finds them.
fn pinned() -> &'static Mutex<Vec<Library>> {
    static PINNED: OnceLock<Mutex<Vec<Library>>> = OnceLock::new();
    PINNED.get_or_init(|| Mutex::new(Vec::new()))
}

/// Loads `path` with global symbol visibility and keeps it loaded.
fn preload(path: &Path) -> std::result::Result<(), String> {
    // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's own libraries
    // named by the user, the same ones cudarc would load.
    let lib = unsafe {
        libloading::os::unix::Library::open(
            Some(path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
        )
    };
    let lib = lib.map_err(|e| format!("{}: {e}", path.display()))?;
    pinned()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(lib.into());
    Ok(())
}

/// The file in `dir` whose name starts with `prefix` (`libnvrtc.so` finds `libnvrtc.so.13`).
fn find_in(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut hits: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.contains(".alt."))
        })
        .collect();
    hits.sort();
    hits.into_iter().next()
}

/// The explicit path for `lib`: its own variable, else a match in `WEFT_CUDA_LIB_DIR`.
fn explicit_path(lib: Lib) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(lib.env_var()).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let dirs = std::env::var_os("WEFT_CUDA_LIB_DIR")?;
    let prefix = format!("lib{}.so", lib.stem());
    std::env::split_paths(&dirs).find_map(|d| find_in(&d, &prefix))
}

/// Makes `lib` loadable; `Err` says why not (what was tried).
pub fn ensure(lib: Lib) -> std::result::Result<(), String> {
    if let Some(path) = explicit_path(lib) {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for companion in lib.companions() {
            if let Some(c) = find_in(&dir, companion) {
                preload(&c)?;
            }
        }
        return preload(&path).map_err(|e| format!("{} = {e}", lib.env_var()));
    }
    let names = lib.candidates();
    for name in &names {
        // SAFETY: as in `preload`; a library found by name is what cudarc would load itself.
        if unsafe { Library::new(name) }.is_ok() {
            return Ok(());
        }
    }
    Err(format!(
        "not found by the dynamic loader under {:?} (set {} to its path, or \
         WEFT_CUDA_LIB_DIR / LD_LIBRARY_PATH to its folder)",
        names.first().map(String::as_str).unwrap_or_default(),
        lib.env_var()
    ))
}

/// Makes every library in `libs` loadable, or one `Error::Device` naming each missing one and
/// what the missing libraries were needed for.
pub fn require(libs: &[Lib], purpose: &str) -> Result<()> {
    let missing: Vec<String> = libs
        .iter()
        .filter_map(|&l| {
            ensure(l)
                .err()
                .map(|why| format!("{} {why}", l.file_name()))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Device {
        message: format!(
            "{purpose} needs CUDA libraries that could not be loaded: {}",
            missing.join("; ")
        ),
    })
}

/// Runs a cudarc call, turning a panic (a library or symbol missing after all) into
/// `Error::Device` naming `what`.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::Device {
            message: format!(
                "{what}: {}",
                weft_core::error::panic_message(payload.as_ref())
            ),
        })
    })
}
