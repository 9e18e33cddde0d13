package dsa

// One method of Context per libdsa op, and the ops' parameter structs.
//
// Adding an op: a wrapper in dsa_go.h; a params struct with its Default* function and toC method
// (fields as in dsa.h, without struct_size, starting from the C init function so that fields
// the struct does not mirror keep the library's defaults); and one method that passes each tensor
// as t.parts(), calls the wrapper, and ends with runtime.KeepAlive(c).

/*
#include "dsa_go.h"
*/
import "C"

import "runtime"

// ScaleFormat is how FP8 block quantisation chooses a group's scale (DSA_SCALE_FORMAT_*).
type ScaleFormat int32

const (
	// ScaleFormatF32 is s = amax / 448, any f32 value.
	ScaleFormatF32 ScaleFormat = C.DSA_SCALE_FORMAT_F32
	// ScaleFormatUE8M0 is s = 2^ceil(log2(amax / 448)), an exact power of two (DeepSeek-V3.2).
	ScaleFormatUE8M0 ScaleFormat = C.DSA_SCALE_FORMAT_UE8M0
)

// QuantizeFP8Params are the parameters of QuantizeFP8 and DequantizeFP8
// (dsa_quantize_fp8_params_t); nil means the defaults.
type QuantizeFP8Params struct {
	GroupSize   int32       // B: consecutive elements sharing a scale (default 128)
	ScaleFormat ScaleFormat // default ScaleFormatF32
	AmaxFloor   float32     // lower bound on a group's amax (default 1e-4; > 0)
}

// DefaultQuantizeFP8Params are the library's defaults.
func DefaultQuantizeFP8Params() QuantizeFP8Params {
	var raw C.dsa_quantize_fp8_params_t
	C.dsa_quantize_fp8_params_init(&raw)
	return QuantizeFP8Params{GroupSize: int32(raw.group_size), ScaleFormat: ScaleFormat(raw.scale_format),
		AmaxFloor: float32(raw.amax_floor)}
}

func (p *QuantizeFP8Params) toC() *C.dsa_quantize_fp8_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_quantize_fp8_params_t
	C.dsa_quantize_fp8_params_init(&raw)
	raw.group_size = C.int32_t(p.GroupSize)
	raw.scale_format = C.dsa_scale_format_t(p.ScaleFormat)
	raw.amax_floor = C.float(p.AmaxFloor)
	return &raw
}

// HadamardParams are the parameters of Hadamard (dsa_hadamard_params_t); nil means the defaults.
type HadamardParams struct {
	Scale float32 // multiplier of the result; 0 (default) means n^-0.5 (orthonormal)
}

// DefaultHadamardParams are the library's defaults.
func DefaultHadamardParams() HadamardParams {
	var raw C.dsa_hadamard_params_t
	C.dsa_hadamard_params_init(&raw)
	return HadamardParams{Scale: float32(raw.scale)}
}

func (p *HadamardParams) toC() *C.dsa_hadamard_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_hadamard_params_t
	C.dsa_hadamard_params_init(&raw)
	raw.scale = C.float(p.Scale)
	return &raw
}

// QuantizeFP8 quantises x [..., N] (f32, bf16 or f16) to e4m3 codes q [..., N] (FP8E4M3 or U8)
// and f32 scales [..., N/GroupSize] (dsa_quantize_fp8; dsa.h has the layouts and statuses).
func (c *Context) QuantizeFP8(params *QuantizeFP8Params, x, q, scales *Tensor, stream Stream) error {
	xLayout, xData := x.parts()
	qLayout, qData := q.parts()
	scalesLayout, scalesData := scales.parts()
	var message *C.char
	status := C.dsa_go_quantize_fp8(c.raw, params.toC(), xLayout, xData, qLayout, qData, scalesLayout, scalesData,
		C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// DequantizeFP8 is the inverse of QuantizeFP8: y = f32(q) * s into y [..., N] (f32 or bf16).
// Only GroupSize of the params is read (dsa_dequantize_fp8).
func (c *Context) DequantizeFP8(params *QuantizeFP8Params, q, scales, y *Tensor, stream Stream) error {
	qLayout, qData := q.parts()
	scalesLayout, scalesData := scales.parts()
	yLayout, yData := y.parts()
	var message *C.char
	status := C.dsa_go_dequantize_fp8(c.raw, params.toC(), qLayout, qData, scalesLayout, scalesData, yLayout, yData,
		C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// Hadamard computes y = (x . H_n) * scale along the last dimension (n a power of two up to 1024;
// x and y both f32 or both bf16, same shape). y may be x itself (dsa_hadamard).
func (c *Context) Hadamard(params *HadamardParams, x, y *Tensor, stream Stream) error {
	xLayout, xData := x.parts()
	yLayout, yData := y.parts()
	var message *C.char
	status := C.dsa_go_hadamard(c.raw, params.toC(), xLayout, xData, yLayout, yData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}
