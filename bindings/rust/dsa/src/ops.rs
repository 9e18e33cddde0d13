//! One method of [`Context`] per libdsa op, and the ops' parameter structs.
//!
//! Adding an op: declare its params struct with `params!` (fields as in dsa.h, without
//! struct_size) and add one method that converts the params with `raw_params`, passes tensors with
//! `as_raw()` and returns `Error::check` of the call.
use std::ptr;

use crate::context::{Context, Stream};
use crate::error::{Error, Result};
use crate::sys;
use crate::tensor::{TensorView, TensorViewMut};

/// A params struct: Rust fields mirroring the C fields after struct_size, defaults from the C
/// `*_params_init` function (so they always match the library).
macro_rules! params {
    ($(#[$doc:meta])* $name:ident = $raw:ident, $init:ident { $($(#[$field_doc:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $type,)*
        }

        impl Default for $name {
            fn default() -> Self {
                let raw = initialised(sys::$init);
                $name { $($field: raw.$field.into(),)* }
            }
        }

        impl RawParams for $name {
            type Raw = sys::$raw;
            fn to_raw(self) -> sys::$raw {
                let mut raw = initialised(sys::$init);
                $(raw.$field = self.$field.into();)*
                raw
            }
        }
    };
}

/// A C params struct filled by its init function (which only fails for a NULL pointer).
fn initialised<T>(init: unsafe extern "C" fn(*mut T) -> sys::dsa_status_t) -> T {
    let mut raw = std::mem::MaybeUninit::<T>::zeroed();
    let status = unsafe { init(raw.as_mut_ptr()) };
    debug_assert_eq!(status, sys::DSA_STATUS_SUCCESS);
    unsafe { raw.assume_init() }
}

trait RawParams: Copy {
    type Raw;
    fn to_raw(self) -> Self::Raw;
}

/// Holds the C struct of optional params for the duration of a call; `None` passes NULL
/// (the library's defaults).
struct RawParamsOf<P: RawParams>(Option<P::Raw>);

impl<P: RawParams> RawParamsOf<P> {
    fn as_ptr(&self) -> *const P::Raw {
        self.0.as_ref().map_or(ptr::null(), |raw| raw as *const P::Raw)
    }
}

fn raw_params<P: RawParams>(params: Option<&P>) -> RawParamsOf<P> {
    RawParamsOf(params.map(|params| params.to_raw()))
}

/// How FP8 block quantisation chooses a group's scale (`DSA_SCALE_FORMAT_*`).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScaleFormat(pub i32);

impl ScaleFormat {
    /// s = amax / 448, any f32 value.
    pub const F32: ScaleFormat = ScaleFormat(sys::DSA_SCALE_FORMAT_F32);
    /// s = 2^ceil(log2(amax / 448)), an exact power of two (DeepSeek-V3.2).
    pub const UE8M0: ScaleFormat = ScaleFormat(sys::DSA_SCALE_FORMAT_UE8M0);
}

impl From<i32> for ScaleFormat {
    fn from(code: i32) -> ScaleFormat {
        ScaleFormat(code)
    }
}

impl From<ScaleFormat> for i32 {
    fn from(format: ScaleFormat) -> i32 {
        format.0
    }
}

params! {
    /// Parameters of [`Context::quantize_fp8`] and [`Context::dequantize_fp8`]
    /// (`dsa_quantize_fp8_params_t`).
    QuantizeFp8Params = dsa_quantize_fp8_params_t, dsa_quantize_fp8_params_init {
        /// B: consecutive elements sharing a scale (default 128).
        group_size: i32,
        /// How scales are chosen (default [`ScaleFormat::F32`]).
        scale_format: ScaleFormat,
        /// Lower bound on a group's amax (default 1e-4; > 0).
        amax_floor: f32,
    }
}

params! {
    /// Parameters of [`Context::hadamard`] (`dsa_hadamard_params_t`).
    HadamardParams = dsa_hadamard_params_t, dsa_hadamard_params_init {
        /// Multiplier of the result; 0 (default) means n^-0.5 (orthonormal).
        scale: f32,
    }
}

impl Context {
    /// FP8 block quantisation (`dsa_quantize_fp8`): x [..., N] (f32, bf16 or f16) to e4m3 codes
    /// q [..., N] (Fp8E4M3 or u8) and f32 scales [..., N / group_size]. `None` params are the
    /// defaults. See dsa.h for layouts and statuses.
    pub fn quantize_fp8(
        &self,
        params: Option<&QuantizeFp8Params>,
        x: &TensorView,
        q: &mut TensorViewMut,
        scales: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_quantize_fp8(self.as_raw(), params.as_ptr(), x.as_raw(), q.as_raw(), scales.as_raw(), stream.as_raw())
        })
    }

    /// The inverse of [`Context::quantize_fp8`] (`dsa_dequantize_fp8`): y = f32(q) * s into
    /// y [..., N] (f32 or bf16). Only `group_size` of the params is read.
    pub fn dequantize_fp8(
        &self,
        params: Option<&QuantizeFp8Params>,
        q: &TensorView,
        scales: &TensorView,
        y: &mut TensorViewMut,
        stream: Stream,
    ) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe {
            sys::dsa_dequantize_fp8(self.as_raw(), params.as_ptr(), q.as_raw(), scales.as_raw(), y.as_raw(), stream.as_raw())
        })
    }

    /// Hadamard rotation (`dsa_hadamard`): y = (x . H_n) * scale along the last dimension
    /// (n a power of two up to 1024; x and y both f32 or both bf16, same shape).
    pub fn hadamard(&self, params: Option<&HadamardParams>, x: &TensorView, y: &mut TensorViewMut, stream: Stream) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe { sys::dsa_hadamard(self.as_raw(), params.as_ptr(), x.as_raw(), y.as_raw(), stream.as_raw()) })
    }

    /// [`Context::hadamard`] in place (`dsa_hadamard` with y = x).
    pub fn hadamard_in_place(&self, params: Option<&HadamardParams>, x: &mut TensorViewMut, stream: Stream) -> Result<()> {
        let params = raw_params(params);
        Error::check(unsafe { sys::dsa_hadamard(self.as_raw(), params.as_ptr(), x.as_raw(), x.as_raw(), stream.as_raw()) })
    }
}
