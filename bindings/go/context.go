package dsa

/*
#include "dsa_go.h"
*/
import "C"

import "runtime"

// ContextOptions configures NewContext.
type ContextOptions struct {
	Device     Device // where ops run (default CPU)
	NumThreads int    // CPU worker threads; 0 = the machine's cores. Results never depend on it.
}

// Context holds the device, the CPU thread pool and cached device properties. Any number of
// goroutines may call ops on one context at once (as dsa.h promises); Close must not race with
// them. A finalizer closes a context that was not closed, but call Close.
type Context struct {
	raw *C.dsa_context_t
}

// NewContext creates a context; nil options mean a CPU context using all cores.
func NewContext(options *ContextOptions) (*Context, error) {
	var raw C.dsa_context_options_t
	var rawPointer *C.dsa_context_options_t
	if options != nil {
		C.dsa_context_options_init(&raw)
		raw.device_type = C.dsa_device_type_t(options.Device.Type)
		raw.device_id = C.int32_t(options.Device.ID)
		raw.num_threads = C.int32_t(options.NumThreads)
		rawPointer = &raw
	}
	context := &Context{}
	var message *C.char
	status := C.dsa_go_context_create(&context.raw, rawPointer, &message)
	if err := check(status, message); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(context, (*Context).Close)
	return context, nil
}

// Close destroys the context; later calls are no-ops, and ops on a closed context fail with
// StatusInvalidArgument.
func (c *Context) Close() {
	if c.raw != nil {
		C.dsa_context_destroy(c.raw)
		c.raw = nil
	}
	runtime.SetFinalizer(c, nil)
}

// Device is the device the context runs on.
func (c *Context) Device() (Device, error) {
	var deviceType C.dsa_device_type_t
	var deviceID C.int32_t
	var message *C.char
	status := C.dsa_go_context_device(c.raw, &deviceType, &deviceID, &message)
	runtime.KeepAlive(c)
	return Device{Type: DeviceType(deviceType), ID: int(deviceID)}, check(status, message)
}

// NumThreads is the number of CPU threads the context uses (>= 1).
func (c *Context) NumThreads() (int, error) {
	var threads C.int32_t
	var message *C.char
	status := C.dsa_go_context_num_threads(c.raw, &threads, &message)
	runtime.KeepAlive(c)
	return int(threads), check(status, message)
}

// Stream is a cudaStream_t as an integer; 0 is the legacy default stream. Ignored for CPU tensors.
type Stream uintptr

// DefaultStream is the legacy default CUDA stream, and what CPU work passes.
const DefaultStream Stream = 0
