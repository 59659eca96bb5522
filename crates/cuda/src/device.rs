//! One GPU: its context, one stream per role, the cuBLAS handle and the kernels, compiled by
//! NVRTC for this GPU's architecture on first use and kept.

use crate::kernels::{self, MODULES};
use crate::loader::{self, Lib};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weft_core::{Error, Result};

/// A driver error as `Error::Device`, naming what was being done.
pub(crate) fn driver(what: &str, e: DriverError) -> Error {
    Error::Device {
        message: format!("CUDA {what}: {e:?}"),
    }
}

/// Checks that `count` GPUs can be used: the libraries load and the driver sees enough devices.
/// On a machine without CUDA it names what is missing. More than one GPU also needs NCCL.
pub fn probe(count: usize) -> Result<usize> {
    let mut libs = Lib::BACKEND.to_vec();
    if count > 1 {
        libs.push(Lib::Nccl);
    }
    probe_for(&format!("devices cuda:{count}"), &libs, count)
}

/// The GPUs the driver sees, after checking `libs` load and that there are at least `gpus`;
/// errors begin with `what`.
pub(crate) fn probe_for(what: &str, libs: &[Lib], gpus: usize) -> Result<usize> {
    loader::require(libs, what)?;
    let visible = loader::guard(what, || {
        CudaContext::device_count().map_err(|e| driver("device count", e))
    })?;
    let visible = usize::try_from(visible).unwrap_or(0);
    if visible < gpus {
        return Err(Error::Device {
            message: format!("{what}: the CUDA driver sees {visible} GPU(s)"),
        });
    }
    Ok(visible)
}

/// The streams of one GPU, one per role, so copies and collectives overlap compute.
pub struct Streams {
    pub compute: Arc<CudaStream>,
    pub comm: Arc<CudaStream>,
    pub copy: Arc<CudaStream>,
}

pub struct Device {
    pub ctx: Arc<CudaContext>,
    pub streams: Streams,
    pub blas: CudaBlas,
    /// `sm_XY` of this GPU, what the kernels are compiled for.
    pub arch: String,
    pub name: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

impl Device {
    /// Opens GPU `ordinal` (after `probe`).
    pub fn open(ordinal: usize) -> Result<Device> {
        probe(ordinal + 1)?;
        loader::guard("opening the CUDA device", || {
            let ctx = CudaContext::new(ordinal).map_err(|e| driver("context", e))?;
            let stream = |role: &str| ctx.new_stream().map_err(|e| driver(role, e));
            let streams = Streams {
                compute: stream("compute stream")?,
                comm: stream("communication stream")?,
                copy: stream("copy stream")?,
            };
            let blas = CudaBlas::new(streams.compute.clone()).map_err(|e| Error::Device {
                message: format!("cuBLAS handle: {e:?}"),
            })?;
            let (major, minor) = ctx
                .compute_capability()
                .map_err(|e| driver("compute capability", e))?;
            let name = ctx.name().map_err(|e| driver("device name", e))?;
            Ok(Device {
                ctx,
                streams,
                blas,
                arch: format!("sm_{major}{minor}"),
                name,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The kernel `entry` (`layer_norm_forward_f32`), compiling its module on first use.
    pub fn function(&self, entry: &str) -> Result<CudaFunction> {
        if let Some(f) = lock(&self.functions).get(entry) {
            return Ok(f.clone());
        }
        let module = MODULES
            .iter()
            .find(|m| m.entry_points().iter().any(|e| e == entry))
            .ok_or_else(|| Error::internal(format!("no CUDA kernel named {entry}")))?;
        let loaded = self.module(module)?;
        let f = loader::guard(entry, || {
            loaded
                .load_function(entry)
                .map_err(|e| driver(&format!("kernel {entry}"), e))
        })?;
        lock(&self.functions).insert(entry.to_string(), f.clone());
        Ok(f)
    }

    fn module(&self, module: &kernels::Module) -> Result<Arc<CudaModule>> {
        if let Some(m) = lock(&self.modules).get(module.name) {
            return Ok(m.clone());
        }
        let ptx = kernels::compile(module, &self.arch)?;
        let loaded = loader::guard(module.name, || {
            self.ctx
                .load_module(ptx)
                .map_err(|e| driver(&format!("loading module {}", module.name), e))
        })?;
        lock(&self.modules).insert(module.name, loaded.clone());
        Ok(loaded)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
