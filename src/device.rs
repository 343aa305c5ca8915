//! Device selection (`--device`), CPU thread count (`--threads`), device
//! errors in one line, and ([`search`]) decoding reductions on the device.

use anyhow::{bail, Result};
use candle_core::Device;
use std::str::FromStr;

pub mod search;

/// Where the math runs, as asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA if this build has it and a GPU answers, else Metal likewise, else CPU.
    Auto,
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            other => bail!("unknown device '{other}': expected auto, cpu, cuda or metal"),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        })
    }
}

/// Opens the device, with an error that says how to get it when this build lacks it.
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            if candle_core::utils::metal_is_available() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device cuda: this build of tolk has no CUDA support; rebuild with `cargo install --path . --features cuda`");
            }
            Device::new_cuda(0).map_err(|e| {
                anyhow::anyhow!(
                    "--device cuda: no usable NVIDIA GPU (is the driver installed and a GPU visible?): {}",
                    first_line(&e.to_string())
                )
            })
        }
        DeviceChoice::Metal => {
            if !candle_core::utils::metal_is_available() {
                bail!("--device metal: this build of tolk has no Metal support; rebuild with `cargo install --path . --features metal`");
            }
            Device::new_metal(0).map_err(|e| {
                anyhow::anyhow!(
                    "--device metal: no usable GPU: {}",
                    first_line(&e.to_string())
                )
            })
        }
    }
}

/// The first line of an error text: candle appends a backtrace to device
/// errors when `RUST_BACKTRACE` is set, and driver errors can span lines.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// A short name for where tensors live, for messages ("CUDA GPU", "CPU").
pub fn describe(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "CPU",
        Device::Cuda(_) => "CUDA GPU",
        Device::Metal(_) => "Metal GPU",
    }
}

/// Whether `err` (or one of its causes) is an allocation failure on a
/// device: the CUDA driver's, cuBLAS's or Metal's out-of-memory errors.
pub fn is_out_of_memory(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let text = cause.to_string();
        text.contains("OUT_OF_MEMORY")
            || text.contains("ALLOC_FAILED")
            || text.to_ascii_lowercase().contains("out of memory")
    })
}

/// Rewrites an out-of-memory error from loading `model` onto `device` as one
/// line that names the model and what its weights need (`weight_bytes`, the
/// size of its weight files); any other error is returned as it is.
pub fn explain_load_error(
    err: anyhow::Error,
    model: &str,
    weight_bytes: u64,
    device: &Device,
) -> anyhow::Error {
    if device.is_cpu() || !is_out_of_memory(&err) {
        return err;
    }
    anyhow::anyhow!(
        "out of {} memory loading {model}: its weights alone take {:.1} GB, plus the caches that decoding needs; free GPU memory, use a smaller model, or run with --device cpu",
        describe(device),
        weight_bytes as f64 / 1e9,
    )
}

/// The total size of the weight files (safetensors, torch, GGUF) among
/// `paths`: what a model needs in memory before any cache.
pub fn weights_size<'a>(paths: impl IntoIterator<Item = &'a std::path::Path>) -> u64 {
    paths
        .into_iter()
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("safetensors" | "bin" | "pth" | "gguf")
            )
        })
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// [`weights_size`] of the files in the folder `dir`.
pub fn weights_size_in(dir: &std::path::Path) -> u64 {
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    weights_size(files.iter().map(|p| p.as_path()))
}

/// Sizes the thread pools that candle's CPU kernels use.
///
/// `None` keeps the default (all cores). Must run before any tensor work and
/// before other threads start; a second call is a no-op. `RAYON_NUM_THREADS`,
/// when set, wins, as rayon documents.
pub fn set_threads(threads: Option<usize>) {
    // Only the first call may touch the environment: later ones could race
    // with kernel threads reading it.
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| configure_threads(threads));
}

fn configure_threads(threads: Option<usize>) {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    if let Some(n) = threads.filter(|n| *n > 0) {
        // candle sizes two pools of its own from the environment, not from
        // rayon's global pool: the gemm parallelism (`RAYON_NUM_THREADS`) and
        // the barrier pool of the quantized matmul (`CANDLE_NUM_THREADS`).
        // Without these, `--threads 1` would still multiply on every core.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        // An error only means the pool already exists; keeping it is right.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}

/// Gives the heap's free pages back to the system (glibc's `malloc_trim`;
/// nothing elsewhere): after a build that freed many small allocations
/// (a large tokenizer's), they would otherwise stay resident and count in
/// the peak memory of everything loaded after.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `f` on a thread of tolk's compute pool and returns its result.
///
/// candle's CPU ops (softmax, norms, gemm) split their work with rayon; called
/// from a thread outside a pool, every such op hands its work to a sleeping
/// pool thread and waits, two context switches per op, hundreds per decoded
/// token. Inside the pool the caller itself takes part. Model calls go
/// through here, one hand-off per call. The pool has `--threads` threads
/// (see [`set_threads`]), or one per core.
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        // 0 = rayon's default: RAYON_NUM_THREADS (set by set_threads) or all cores.
        rayon::ThreadPoolBuilder::new()
            .num_threads(0)
            .thread_name(|i| format!("tolk-compute-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(f),
        // No threads could be started: run here, slower but correct.
        None => f(),
    }
}
