use std::ffi::CStr;
use std::fmt;

use crate::sys;

/// `Result` with libdsa's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $code:ident,)*) => {
        /// The failure statuses of libdsa (`DSA_STATUS_*` other than success).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Status {
            $($(#[$doc])* $name,)*
        }

        impl Status {
            /// The C status code.
            pub fn code(self) -> i32 {
                match self {
                    $(Status::$name => sys::$code,)*
                }
            }

            /// The status of a C code, or `None` for success and codes this version does not know.
            pub fn from_code(code: i32) -> Option<Status> {
                match code {
                    $(sys::$code => Some(Status::$name),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    /// A NULL pointer, a bad parameter value, or a params struct with a bad struct_size.
    InvalidArgument = DSA_STATUS_INVALID_ARGUMENT,
    /// A tensor has the wrong rank, a wrong or inconsistent extent, or a size that overflows.
    ShapeMismatch = DSA_STATUS_SHAPE_MISMATCH,
    /// A tensor has a dtype the op does not accept.
    DtypeMismatch = DSA_STATUS_DTYPE_MISMATCH,
    /// Tensors (or the context) are on different devices.
    DeviceMismatch = DSA_STATUS_DEVICE_MISMATCH,
    /// Strides, overlap or alignment that the op cannot honour.
    LayoutUnsupported = DSA_STATUS_LAYOUT_UNSUPPORTED,
    /// The feature exists but not in this build or this version.
    Unsupported = DSA_STATUS_UNSUPPORTED,
    /// Host or device memory could not be allocated.
    OutOfMemory = DSA_STATUS_OUT_OF_MEMORY,
    /// The CUDA runtime reported an error.
    CudaError = DSA_STATUS_CUDA_ERROR,
    /// The workspace is smaller than the op asked for.
    WorkspaceTooSmall = DSA_STATUS_WORKSPACE_TOO_SMALL,
    /// A bug in libdsa.
    Internal = DSA_STATUS_INTERNAL,
}

impl Status {
    /// libdsa's short description of the status ("invalid argument", ...).
    pub fn description(self) -> &'static str {
        describe(self.code())
    }
}

fn describe(code: i32) -> &'static str {
    unsafe { crate::static_str(sys::dsa_status_string(code)) }
}

/// A failed call: libdsa's status code and its message, which names the offending argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
}

impl Error {
    /// The C status code (`DSA_STATUS_*`).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The status as an enum, `None` for a code this version does not know.
    pub fn status(&self) -> Option<Status> {
        Status::from_code(self.code)
    }

    /// What was wrong, starting with the argument's name (e.g. "x: dtype must be ...").
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An error found by these bindings before calling libdsa, worded like libdsa's own.
    pub(crate) fn new(status: Status, message: String) -> Error {
        Error { code: status.code(), message }
    }

    /// Turns the status of the libdsa call that just returned on this thread into a `Result`,
    /// reading the thread's last-error message before anything else can call libdsa.
    pub(crate) fn check(code: sys::dsa_status_t) -> Result<()> {
        if code == sys::DSA_STATUS_SUCCESS {
            return Ok(());
        }
        let message = unsafe { CStr::from_ptr(sys::dsa_last_error_message()) };
        Err(Error { code, message: message.to_string_lossy().into_owned() })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", describe(self.code), self.message)
    }
}

impl std::error::Error for Error {}
