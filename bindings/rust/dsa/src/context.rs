use std::os::raw::c_void;
use std::ptr::{self, NonNull};

use crate::error::{Error, Result, Status};
use crate::sys;

/// Where a context runs and where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory, the CPU backend.
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(i32),
}

impl Device {
    pub(crate) fn to_raw(self) -> (sys::dsa_device_type_t, i32) {
        match self {
            Device::Cpu => (sys::DSA_DEVICE_CPU, 0),
            Device::Cuda(id) => (sys::DSA_DEVICE_CUDA, id),
        }
    }
}

/// A CUDA stream (`cudaStream_t`) that ops enqueue their work on; ignored for CPU tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream(sys::dsa_stream_t);

impl Stream {
    /// The legacy default stream (NULL); what CPU work passes.
    pub const DEFAULT: Stream = Stream(ptr::null_mut());

    /// Wraps a `cudaStream_t`.
    ///
    /// # Safety
    /// `stream` must be NULL or a stream of the device of the tensors it is used with, alive
    /// whenever an op is called with it.
    pub unsafe fn from_raw(stream: *mut c_void) -> Stream {
        Stream(stream.cast())
    }

    /// The `dsa_stream_t` passed to libdsa.
    pub fn as_raw(self) -> sys::dsa_stream_t {
        self.0
    }
}

impl Default for Stream {
    fn default() -> Stream {
        Stream::DEFAULT
    }
}

// A stream is a handle that CUDA lets any host thread use.
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

/// Options of [`Context::with_options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextOptions {
    /// Where ops run (default CPU).
    pub device: Device,
    /// CPU worker threads; 0 (default) = the machine's cores. Results never depend on it.
    pub num_threads: i32,
}

impl Default for ContextOptions {
    fn default() -> ContextOptions {
        ContextOptions { device: Device::Cpu, num_threads: 0 }
    }
}

/// A libdsa context: the device, the CPU thread pool and cached device properties.
/// Ops are its methods (see the `ops` section of the docs); dropping it destroys it.
#[derive(Debug)]
pub struct Context {
    raw: NonNull<sys::dsa_context_t>,
}

// dsa.h: "a context may be shared by any number of threads calling ops at once". Destruction
// needs exclusive access, which Drop has.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    /// A CPU context using all cores.
    pub fn new() -> Result<Context> {
        Context::create(ptr::null())
    }

    /// A context as `options` say.
    pub fn with_options(options: &ContextOptions) -> Result<Context> {
        let mut raw = sys::dsa_context_options_t { struct_size: 0, device_type: 0, device_id: 0, num_threads: 0 };
        Error::check(unsafe { sys::dsa_context_options_init(&mut raw) })?;
        (raw.device_type, raw.device_id) = options.device.to_raw();
        raw.num_threads = options.num_threads;
        Context::create(&raw)
    }

    fn create(options: *const sys::dsa_context_options_t) -> Result<Context> {
        let mut raw = ptr::null_mut();
        Error::check(unsafe { sys::dsa_context_create(&mut raw, options) })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            Error::new(Status::Internal, "dsa_context_create succeeded without a context".to_owned())
        })?;
        Ok(Context { raw })
    }

    /// The device the context runs on.
    pub fn device(&self) -> Result<Device> {
        let (mut device_type, mut device_id) = (0, 0);
        Error::check(unsafe { sys::dsa_context_device(self.raw.as_ptr(), &mut device_type, &mut device_id) })?;
        match device_type {
            sys::DSA_DEVICE_CPU => Ok(Device::Cpu),
            sys::DSA_DEVICE_CUDA => Ok(Device::Cuda(device_id)),
            other => Err(Error::new(Status::Internal, format!("context: unknown device type {other}"))),
        }
    }

    /// The number of CPU threads the context uses (>= 1).
    pub fn num_threads(&self) -> Result<i32> {
        let mut threads = 0;
        Error::check(unsafe { sys::dsa_context_num_threads(self.raw.as_ptr(), &mut threads) })?;
        Ok(threads)
    }

    /// The `dsa_context_t*` for calls through [`crate::sys`]; it stays owned by `self`.
    pub fn as_raw(&self) -> *mut sys::dsa_context_t {
        self.raw.as_ptr()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { sys::dsa_context_destroy(self.raw.as_ptr()) }
    }
}
