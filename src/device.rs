//! Device selection (`--device`) and CPU thread count (`--threads`).

use anyhow::{bail, Result};
use candle_core::Device;
use std::str::FromStr;

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
            Device::new_cuda(0).map_err(|e| anyhow::anyhow!("--device cuda: no usable GPU: {e}"))
        }
        DeviceChoice::Metal => {
            if !candle_core::utils::metal_is_available() {
                bail!("--device metal: this build of tolk has no Metal support; rebuild with `cargo install --path . --features metal`");
            }
            Device::new_metal(0).map_err(|e| anyhow::anyhow!("--device metal: no usable GPU: {e}"))
        }
    }
}

/// Sizes the global rayon pool that candle's CPU kernels use.
///
/// `None` keeps the default (all cores). Must run before any tensor work; a
/// second call is a no-op. `RAYON_NUM_THREADS`, when set, wins, as rayon documents.
pub fn set_threads(threads: Option<usize>) {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    if let Some(n) = threads.filter(|n| *n > 0) {
        // An error only means the pool already exists; keeping it is right.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}
