package dsa

/*
#include "dsa_go.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Bfloat16 is a bfloat16 value as its bit pattern.
type Bfloat16 uint16

// Float16 is an IEEE half-precision value as its bit pattern.
type Float16 uint16

// Float8E4M3 is an FP8 e4m3 "fn" code (bias 7, max 448, 0x7F/0xFF are NaN).
type Float8E4M3 uint8

// Element is a Go type that is a libdsa element type.
type Element interface {
	float32 | Float16 | Bfloat16 | Float8E4M3 | uint8 | int32 | int64
}

func dtypeOf[T Element]() DType {
	var zero T
	switch any(zero).(type) {
	case float32:
		return F32
	case Float16:
		return F16
	case Bfloat16:
		return BF16
	case Float8E4M3:
		return FP8E4M3
	case uint8:
		return U8
	case int32:
		return I32
	default:
		return I64
	}
}

// DeviceType says where memory lives (DSA_DEVICE_*).
type DeviceType int32

// The device types of dsa.h.
const (
	DeviceCPU  DeviceType = C.DSA_DEVICE_CPU
	DeviceCUDA DeviceType = C.DSA_DEVICE_CUDA
)

// Device is a device type and, for CUDA, the device ordinal.
type Device struct {
	Type DeviceType
	ID   int
}

// CPU is host memory and the CPU backend.
var CPU = Device{Type: DeviceCPU}

// CUDA is the CUDA device with the given ordinal.
func CUDA(id int) Device { return Device{Type: DeviceCUDA, ID: id} }

// Tensor is a borrowed view of memory the caller owns: a Go slice (kept alive by the tensor) or
// CUDA memory. It is not copied: libdsa reads and writes the memory itself.
type Tensor struct {
	// The C view, with NULL data for a Go slice or the device address. It is an allocation of
	// its own: cgo checks all of the allocation a passed pointer points into, and the Tensor
	// itself holds a Go pointer.
	layout *C.dsa_tensor_t
	host   unsafe.Pointer // first element of the Go slice; nil for device memory
}

// NewTensor is a contiguous (row-major) view of data, whose length must equal the element count.
func NewTensor[T Element](data []T, shape ...int64) (*Tensor, error) {
	return overSlice(data, shape, nil)
}

// NewStridedTensor is a view of data with strides in elements (>= 0); data must hold every
// element the view addresses.
func NewStridedTensor[T Element](data []T, shape, strides []int64) (*Tensor, error) {
	if strides == nil {
		strides = []int64{}
	}
	return overSlice(data, shape, strides)
}

// NewDeviceTensor is a view of memory at address on device (e.g. a CUDA allocation); strides nil
// means contiguous. The caller keeps the memory valid until the work on the op's stream is done.
func NewDeviceTensor(address uintptr, dtype DType, device Device, shape, strides []int64) (*Tensor, error) {
	return describe(false, address, dtype, device, shape, strides)
}

func describe(goMemory bool, address uintptr, dtype DType, device Device, shape, strides []int64) (*Tensor, error) {
	tensor := &Tensor{layout: new(C.dsa_tensor_t)}
	var noDimensions int64 // dsa_tensor_init_contiguous wants a non-NULL shape even for rank 0
	shapePointer := &noDimensions
	if len(shape) > 0 {
		shapePointer = &shape[0]
	}
	ndim := len(shape)
	if ndim > 1<<30 {
		ndim = -1 // libdsa refuses it as an out-of-range rank
	}
	var message *C.char
	var goMemoryFlag C.int
	if goMemory {
		goMemoryFlag = 1
	}
	status := C.dsa_go_tensor_init(tensor.layout, goMemoryFlag, C.uintptr_t(address), C.int32_t(ndim),
		(*C.int64_t)(unsafe.Pointer(shapePointer)), C.dsa_dtype_t(dtype),
		C.dsa_device_type_t(device.Type), C.int32_t(device.ID), &message)
	if err := check(status, message); err != nil {
		return nil, err
	}
	if strides != nil {
		if len(strides) != len(shape) {
			return nil, &Error{StatusInvalidArgument,
				fmt.Sprintf("strides: expected %d entries (one per dimension), got %d", len(shape), len(strides))}
		}
		for i, stride := range strides {
			tensor.layout.strides[i] = C.int64_t(stride)
		}
	}
	return tensor, nil
}

func overSlice[T Element](data []T, shape, strides []int64) (*Tensor, error) {
	tensor, err := describe(true, 0, dtypeOf[T](), CPU, shape, strides)
	if err != nil {
		return nil, err
	}
	needed, err := tensor.span()
	if err != nil {
		return nil, err
	}
	if needed > int64(len(data)) || (strides == nil && needed != int64(len(data))) {
		return nil, &Error{StatusShapeMismatch,
			fmt.Sprintf("data: a slice of %d elements does not match shape %v (needs %d)", len(data), shape, needed)}
	}
	if len(data) > 0 {
		tensor.host = unsafe.Pointer(&data[0])
	}
	return tensor, nil
}

// span is the number of elements the view reaches: one past its largest offset.
func (t *Tensor) span() (int64, error) {
	shape, strides := t.Shape(), t.Strides()
	for _, extent := range shape {
		if extent == 0 {
			return 0, nil
		}
	}
	last := int64(0)
	for i, extent := range shape {
		if strides[i] < 0 {
			return 0, &Error{StatusLayoutUnsupported, fmt.Sprintf("strides: must be >= 0, got %v", strides)}
		}
		if strides[i] != 0 && extent-1 > (1<<62-last)/strides[i] {
			return 0, &Error{StatusShapeMismatch, fmt.Sprintf("shape: %v with strides %v overflows", shape, strides)}
		}
		last += (extent - 1) * strides[i]
	}
	return last + 1, nil
}

// Shape is the tensor's extents.
func (t *Tensor) Shape() []int64 {
	shape := make([]int64, t.layout.ndim)
	for i := range shape {
		shape[i] = int64(t.layout.shape[i])
	}
	return shape
}

// Strides is the tensor's strides in elements.
func (t *Tensor) Strides() []int64 {
	strides := make([]int64, t.layout.ndim)
	for i := range strides {
		strides[i] = int64(t.layout.strides[i])
	}
	return strides
}

// DType is the tensor's element type.
func (t *Tensor) DType() DType { return DType(t.layout.dtype) }

// parts is how a tensor is passed to a dsa_go_* wrapper (see dsa_go.h); nil becomes NULL.
func (t *Tensor) parts() (*C.dsa_tensor_t, unsafe.Pointer) {
	if t == nil {
		return nil, nil
	}
	return t.layout, t.host
}
