//! Safe Rust API of libdsa, DeepSeek Sparse Attention kernels behind a C ABI.
//!
//! A [`Context`] runs ops; tensors are borrowed views ([`TensorView`] for inputs,
//! [`TensorViewMut`] for outputs) over slices, or over CUDA memory through the `unsafe`
//! `from_raw` constructors. Every op is one method of [`Context`] returning
//! `Result<(), Error>`; the error carries libdsa's status code and message.
//!
//! ```
//! use dsa::{Context, Fp8E4M3, QuantizeFp8Params, ScaleFormat, Stream, TensorView, TensorViewMut};
//!
//! let context = Context::new()?; // CPU, all cores; Drop destroys it
//! let x: Vec<f32> = (0..4 * 128).map(|i| (i as f32).sin()).collect();
//! let (mut q, mut scales) = (vec![Fp8E4M3::default(); 4 * 128], vec![0f32; 4]);
//! let xv = TensorView::new(&x, &[4, 128])?;
//! let (mut qv, mut sv) = (TensorViewMut::new(&mut q, &[4, 128])?, TensorViewMut::new(&mut scales, &[4, 1])?);
//! let params = QuantizeFp8Params { scale_format: ScaleFormat::UE8M0, ..Default::default() };
//! context.quantize_fp8(Some(&params), &xv, &mut qv, &mut sv, Stream::DEFAULT)?;
//! let bad = QuantizeFp8Params { group_size: 100, ..params }; // does not divide 128
//! let error = context.quantize_fp8(Some(&bad), &xv, &mut qv, &mut sv, Stream::DEFAULT).unwrap_err();
//! assert!(error.to_string().starts_with("invalid argument: params.group_size: 100"));
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
pub use ops::{HadamardParams, IndexerLossMode, IndexerLossParams, IndexerParams, QuantizeFp8Params, ScaleFormat, SparseAttentionBackwardMode, SparseAttentionBackwardParams, SparseAttentionParams, TopkOrder, TopkParams, Workspace};
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
