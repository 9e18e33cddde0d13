use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::raw::c_void;

use crate::context::Device;
use crate::error::{Error, Result, Status};
use crate::sys;

/// Element types of libdsa tensors (`DSA_DTYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    Bf16,
    /// OCP FP8 e4m3 "fn", one byte.
    Fp8E4M3,
    /// Unsigned byte (accepted wherever FP8 codes are).
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
}

impl DType {
    /// The C dtype code.
    pub fn code(self) -> sys::dsa_dtype_t {
        match self {
            DType::F32 => sys::DSA_DTYPE_F32,
            DType::F16 => sys::DSA_DTYPE_F16,
            DType::Bf16 => sys::DSA_DTYPE_BF16,
            DType::Fp8E4M3 => sys::DSA_DTYPE_FP8_E4M3,
            DType::U8 => sys::DSA_DTYPE_U8,
            DType::I32 => sys::DSA_DTYPE_I32,
            DType::I64 => sys::DSA_DTYPE_I64,
        }
    }

    /// Bytes per element, as libdsa counts them.
    pub fn size(self) -> usize {
        unsafe { sys::dsa_dtype_size(self.code()) }
    }
}

/// bfloat16 as its bit pattern.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// Rounds to nearest even, as libdsa does (NaN stays NaN).
    pub fn from_f32(value: f32) -> Bf16 {
        let bits = value.to_bits();
        if value.is_nan() {
            return Bf16((bits >> 16) as u16 | 0x40);
        }
        Bf16(((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16)
    }

    /// The exact f32 value.
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// IEEE half precision as its bit pattern.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct F16(pub u16);

/// An FP8 e4m3 "fn" code (bias 7, max 448, 0x7F/0xFF are NaN).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fp8E4M3(pub u8);

/// Rust types that are libdsa elements.
///
/// # Safety
/// `Self` must have exactly the size and bit layout of `DTYPE` and every bit pattern must be a
/// valid `Self`, because libdsa writes raw bytes into output slices.
pub unsafe trait Element: Copy + 'static {
    /// The matching libdsa dtype.
    const DTYPE: DType;
}

unsafe impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
unsafe impl Element for F16 {
    const DTYPE: DType = DType::F16;
}
unsafe impl Element for Bf16 {
    const DTYPE: DType = DType::Bf16;
}
unsafe impl Element for Fp8E4M3 {
    const DTYPE: DType = DType::Fp8E4M3;
}
unsafe impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
unsafe impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
unsafe impl Element for i64 {
    const DTYPE: DType = DType::I64;
}

/// Builds a `dsa_tensor_t`: shape and dtype checked by `dsa_tensor_init_contiguous`, then the
/// strides replaced if given.
fn describe(
    data: *mut c_void,
    dtype: DType,
    shape: &[i64],
    strides: Option<&[i64]>,
    device: Device,
) -> Result<sys::dsa_tensor_t> {
    let (device_type, device_id) = device.to_raw();
    let mut raw = MaybeUninit::<sys::dsa_tensor_t>::zeroed();
    // An impossible rank (more than i32::MAX dimensions) becomes -1, which libdsa rejects.
    let ndim = i32::try_from(shape.len()).unwrap_or(-1);
    Error::check(unsafe {
        sys::dsa_tensor_init_contiguous(raw.as_mut_ptr(), data, ndim, shape.as_ptr(), dtype.code(), device_type, device_id)
    })?;
    let mut raw = unsafe { raw.assume_init() };
    if let Some(strides) = strides {
        if strides.len() != shape.len() {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("strides: expected {} entries (one per dimension), got {}", shape.len(), strides.len()),
            ));
        }
        raw.strides[..strides.len()].copy_from_slice(strides);
    }
    Ok(raw)
}

/// The number of elements a slice needs to hold every element of `raw`: one past the largest
/// offset. Errors for negative strides (which libdsa refuses anyway) and for overflow.
fn span(raw: &sys::dsa_tensor_t) -> Result<usize> {
    let rank = raw.ndim as usize;
    let (shape, strides) = (&raw.shape[..rank], &raw.strides[..rank]);
    if shape.contains(&0) {
        return Ok(0);
    }
    let overflow = || Error::new(Status::ShapeMismatch, format!("shape: {shape:?} with strides {strides:?} overflows"));
    let mut last = 0i64;
    for (&extent, &stride) in shape.iter().zip(strides) {
        if stride < 0 {
            return Err(Error::new(Status::LayoutUnsupported, format!("strides: must be >= 0, got {strides:?}")));
        }
        last = (extent - 1).checked_mul(stride).and_then(|step| last.checked_add(step)).ok_or_else(overflow)?;
    }
    usize::try_from(last).ok().and_then(|last| last.checked_add(1)).ok_or_else(overflow)
}

/// Describes a slice, checking that it holds every element the view can address (exactly the
/// element count for a contiguous view, so that a wrong shape is caught).
fn over_slice<T: Element>(data: *mut T, len: usize, shape: &[i64], strides: Option<&[i64]>) -> Result<sys::dsa_tensor_t> {
    let raw = describe(data.cast(), T::DTYPE, shape, strides, Device::Cpu)?;
    let needed = span(&raw)?;
    let fits = if strides.is_some() { needed <= len } else { needed == len };
    if !fits {
        return Err(Error::new(
            Status::ShapeMismatch,
            format!("data: a slice of {len} elements does not match shape {shape:?} (needs {needed})"),
        ));
    }
    Ok(raw)
}

macro_rules! accessors {
    () => {
        /// The extents.
        pub fn shape(&self) -> &[i64] {
            &self.raw.shape[..self.raw.ndim as usize]
        }

        /// The strides, in elements.
        pub fn strides(&self) -> &[i64] {
            &self.raw.strides[..self.raw.ndim as usize]
        }

        /// The C view passed to libdsa.
        pub fn as_raw(&self) -> &sys::dsa_tensor_t {
            &self.raw
        }
    };
}

/// A read-only view of caller-owned memory: an op input.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    raw: sys::dsa_tensor_t,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> TensorView<'a> {
    /// A contiguous (row-major) view of a host slice; `data.len()` must equal the element count.
    pub fn new<T: Element>(data: &'a [T], shape: &[i64]) -> Result<Self> {
        Ok(TensorView { raw: over_slice(data.as_ptr() as *mut T, data.len(), shape, None)?, _borrow: PhantomData })
    }

    /// A strided view of a host slice (strides in elements, >= 0); the slice must hold every
    /// element the view addresses.
    pub fn strided<T: Element>(data: &'a [T], shape: &[i64], strides: &[i64]) -> Result<Self> {
        Ok(TensorView { raw: over_slice(data.as_ptr() as *mut T, data.len(), shape, Some(strides))?, _borrow: PhantomData })
    }

    /// A view of memory the caller describes, e.g. CUDA device memory; `strides` `None` means
    /// contiguous.
    ///
    /// # Safety
    /// `data` must address every element of the view on `device`, readable for `'a`; for CUDA,
    /// until the work enqueued on the op's stream has completed.
    pub unsafe fn from_raw(
        data: *const c_void,
        dtype: DType,
        shape: &[i64],
        strides: Option<&[i64]>,
        device: Device,
    ) -> Result<Self> {
        Ok(TensorView { raw: describe(data as *mut c_void, dtype, shape, strides, device)?, _borrow: PhantomData })
    }

    accessors!();
}

/// A writable view of caller-owned memory: an op output. It borrows its memory exclusively, so
/// outputs never alias inputs.
#[derive(Debug)]
pub struct TensorViewMut<'a> {
    raw: sys::dsa_tensor_t,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> TensorViewMut<'a> {
    /// A contiguous (row-major) view of a host slice; `data.len()` must equal the element count.
    pub fn new<T: Element>(data: &'a mut [T], shape: &[i64]) -> Result<Self> {
        Ok(TensorViewMut { raw: over_slice(data.as_mut_ptr(), data.len(), shape, None)?, _borrow: PhantomData })
    }

    /// A strided view of a host slice (strides in elements, >= 0); the slice must hold every
    /// element the view addresses. libdsa refuses outputs whose elements overlap each other.
    pub fn strided<T: Element>(data: &'a mut [T], shape: &[i64], strides: &[i64]) -> Result<Self> {
        Ok(TensorViewMut { raw: over_slice(data.as_mut_ptr(), data.len(), shape, Some(strides))?, _borrow: PhantomData })
    }

    /// A view of memory the caller describes, e.g. CUDA device memory; `strides` `None` means
    /// contiguous.
    ///
    /// # Safety
    /// `data` must address every element of the view on `device`, writable and not otherwise
    /// accessed for `'a`; for CUDA, until the work enqueued on the op's stream has completed.
    pub unsafe fn from_raw(
        data: *mut c_void,
        dtype: DType,
        shape: &[i64],
        strides: Option<&[i64]>,
        device: Device,
    ) -> Result<Self> {
        Ok(TensorViewMut { raw: describe(data, dtype, shape, strides, device)?, _borrow: PhantomData })
    }

    accessors!();
}

// Views are shared and exclusive borrows of plain numbers, so they move between threads like
// `&[T]` and `&mut [T]` do.
unsafe impl Send for TensorView<'_> {}
unsafe impl Sync for TensorView<'_> {}
unsafe impl Send for TensorViewMut<'_> {}
unsafe impl Sync for TensorViewMut<'_> {}
