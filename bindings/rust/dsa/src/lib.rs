//! Safe Rust API of libdsa, DeepSeek Sparse Attention kernels behind a C ABI.
//!
//! A [`Context`] runs ops; tensors are borrowed views ([`TensorView`] for inputs,
//! [`TensorViewMut`] for outputs) over slices, or over CUDA memory through the `unsafe`
//! `from_raw` constructors. Every op is one method of [`Context`] returning
//! `Result<(), Error>`; the error carries libdsa's status code and message.
//!
//! ```no_run
//! let context = dsa::Context::new()?;
//! let x: Vec<f32> = (0..256).map(|i| i as f32 / 7.0).collect();
//! let (mut codes, mut scales) = (vec![dsa::Fp8E4M3::default(); 256], vec![0f32; 2]);
//! context.quantize_fp8(
//!     None,
//!     &dsa::TensorView::new(&x, &[2, 128])?,
//!     &mut dsa::TensorViewMut::new(&mut codes, &[2, 128])?,
//!     &mut dsa::TensorViewMut::new(&mut scales, &[2, 1])?,
//!     dsa::Stream::DEFAULT,
//! )?;
//! # Ok::<(), dsa::Error>(())
//! ```
#![warn(missing_docs)]

mod context;
mod error;
mod ops;
mod tensor;

use std::ffi::CStr;
use std::os::raw::c_char;

pub use context::{Context, ContextOptions, Device, Stream};
pub use dsa_sys as sys;
pub use error::{Error, Result, Status};
pub use ops::{HadamardParams, QuantizeFp8Params, ScaleFormat};
pub use tensor::{Bf16, DType, Element, Fp8E4M3, TensorView, TensorViewMut, F16};

/// The version of the header these bindings were generated from, as major * 10000 +
/// minor * 100 + patch.
pub const HEADER_VERSION: u32 = sys::DSA_VERSION_NUMBER as u32;

/// The version of the loaded library, as major * 10000 + minor * 100 + patch.
pub fn version() -> u32 {
    unsafe { sys::dsa_version() }
}

/// The version of the loaded library as "MAJOR.MINOR.PATCH".
pub fn version_string() -> &'static str {
    unsafe { static_str(sys::dsa_version_string()) }
}

/// How the library was built and which CPU and CUDA paths it uses.
pub fn build_info() -> &'static str {
    unsafe { static_str(sys::dsa_build_info()) }
}

/// # Safety
/// `text` must be a NUL-terminated string in static storage (libdsa's version, build and status
/// strings are).
unsafe fn static_str(text: *const c_char) -> &'static str {
    CStr::from_ptr(text).to_str().unwrap_or("")
}
