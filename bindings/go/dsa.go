// Package dsa binds libdsa, DeepSeek Sparse Attention kernels behind a C ABI, through cgo.
//
// A Context runs ops; tensors are views of Go slices (NewTensor, NewStridedTensor) or of CUDA
// memory (NewDeviceTensor). Each op is one method of Context returning an error, which is an
// *Error carrying libdsa's status and message.
//
// Building: dsa.h and libdsa must be found by the C toolchain; for a build tree use
//
//	CGO_CFLAGS=-I<repo>/capi/include CGO_LDFLAGS=-L<build dir> go build
//
// (and LD_LIBRARY_PATH=<build dir> to run), or build with -tags dsa_pkgconfig to take the flags
// from pkg-config's dsa.pc of an installed libdsa.
package dsa

/*
#include "dsa_go.h"
*/
import "C"

import "unsafe"

// HeaderVersion is the version of dsa.h these bindings were compiled against, as
// major*10000 + minor*100 + patch.
const HeaderVersion = C.DSA_VERSION_NUMBER

// Version is the version of the loaded library, as major*10000 + minor*100 + patch.
func Version() int { return int(C.dsa_version()) }

// VersionString is the version of the loaded library as "MAJOR.MINOR.PATCH".
func VersionString() string { return C.GoString(C.dsa_version_string()) }

// BuildInfo says how the library was built and which CPU and CUDA paths it uses.
func BuildInfo() string { return C.GoString(C.dsa_build_info()) }

// Status is a libdsa status code (DSA_STATUS_*).
type Status int32

// The status codes of dsa.h.
const (
	StatusSuccess           Status = C.DSA_STATUS_SUCCESS
	StatusInvalidArgument   Status = C.DSA_STATUS_INVALID_ARGUMENT
	StatusShapeMismatch     Status = C.DSA_STATUS_SHAPE_MISMATCH
	StatusDtypeMismatch     Status = C.DSA_STATUS_DTYPE_MISMATCH
	StatusDeviceMismatch    Status = C.DSA_STATUS_DEVICE_MISMATCH
	StatusLayoutUnsupported Status = C.DSA_STATUS_LAYOUT_UNSUPPORTED
	StatusUnsupported       Status = C.DSA_STATUS_UNSUPPORTED
	StatusOutOfMemory       Status = C.DSA_STATUS_OUT_OF_MEMORY
	StatusCUDAError         Status = C.DSA_STATUS_CUDA_ERROR
	StatusWorkspaceTooSmall Status = C.DSA_STATUS_WORKSPACE_TOO_SMALL
	StatusInternal          Status = C.DSA_STATUS_INTERNAL
)

// String is libdsa's short description of the status ("invalid argument", ...).
func (s Status) String() string { return C.GoString(C.dsa_status_string(C.dsa_status_t(s))) }

// Error is a failed libdsa call: its status and the message naming the offending argument.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// check turns the status and message of a dsa_go_* wrapper into an error, freeing the message.
func check(status C.dsa_status_t, message *C.char) error {
	if status == C.DSA_STATUS_SUCCESS {
		return nil
	}
	defer C.free(unsafe.Pointer(message))
	return &Error{Status: Status(status), Message: C.GoString(message)} // GoString(nil) is ""
}

// DType is an element type (DSA_DTYPE_*).
type DType int32

// The element types of dsa.h.
const (
	F32     DType = C.DSA_DTYPE_F32
	F16     DType = C.DSA_DTYPE_F16
	BF16    DType = C.DSA_DTYPE_BF16
	FP8E4M3 DType = C.DSA_DTYPE_FP8_E4M3
	U8      DType = C.DSA_DTYPE_U8
	I32     DType = C.DSA_DTYPE_I32
	I64     DType = C.DSA_DTYPE_I64
)

// Size is the number of bytes of one element, 0 for an unknown dtype.
func (d DType) Size() int { return int(C.dsa_dtype_size(C.dsa_dtype_t(d))) }
