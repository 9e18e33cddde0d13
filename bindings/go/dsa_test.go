package dsa_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"libdsa/dsa"
)

// randomFloats gives deterministic values in (-scale, scale), different for every seed.
func randomFloats(count int, seed uint64, scale float32) []float32 {
	state := seed*0x9E3779B97F4A7C15 | 1
	values := make([]float32, count)
	for i := range values {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		values[i] = (float32(state>>40)/float32(1<<24)*2 - 1) * scale
	}
	return values
}

// decodeE4M3 is the value of an e4m3 "fn" code (DSA_SPEC section 2).
func decodeE4M3(code dsa.Float8E4M3) float32 {
	exponent, mantissa := int(code>>3)&0xF, float64(code&7)
	if exponent == 0xF && mantissa == 7 {
		return float32(math.NaN())
	}
	magnitude := mantissa * math.Ldexp(1, -9)
	if exponent != 0 {
		magnitude = (1 + mantissa/8) * math.Ldexp(1, exponent-7)
	}
	if code&0x80 != 0 {
		magnitude = -magnitude
	}
	return float32(magnitude)
}

func view[T dsa.Element](t *testing.T, data []T, shape ...int64) *dsa.Tensor {
	t.Helper()
	tensor, err := dsa.NewTensor(data, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return tensor
}

func stridedView[T dsa.Element](t *testing.T, data []T, shape, strides []int64) *dsa.Tensor {
	t.Helper()
	tensor, err := dsa.NewStridedTensor(data, shape, strides)
	if err != nil {
		t.Fatal(err)
	}
	return tensor
}

func newContext(t *testing.T, options *dsa.ContextOptions) *dsa.Context {
	t.Helper()
	context, err := dsa.NewContext(options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(context.Close)
	return context
}

// statusOf is the status of a *dsa.Error, failing the test for anything else.
func statusOf(t *testing.T, err error) (dsa.Status, string) {
	t.Helper()
	var failure *dsa.Error
	if !errors.As(err, &failure) {
		t.Fatalf("expected a *dsa.Error, got %v", err)
	}
	return failure.Status, failure.Message
}

const rows, n, group = 3, 256, 128

func quantize(t *testing.T, context *dsa.Context, x []float32) ([]dsa.Float8E4M3, []float32) {
	codes, scales := make([]dsa.Float8E4M3, rows*n), make([]float32, rows*n/group)
	for i := range codes {
		codes[i] = 0xAA
	}
	err := context.QuantizeFP8(nil, view(t, x, rows, n), view(t, codes, rows, n),
		view(t, scales, rows, n/group), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return codes, scales
}

func TestVersionsAndStrings(t *testing.T) {
	version := dsa.Version()
	if version/10000 != dsa.HeaderVersion/10000 {
		t.Fatalf("library %d, header %d: major versions differ", version, dsa.HeaderVersion)
	}
	if want := fmt.Sprintf("%d.%d.%d", version/10000, version/100%100, version%100); dsa.VersionString() != want {
		t.Fatalf("version string %q, want %q", dsa.VersionString(), want)
	}
	if !strings.Contains(dsa.BuildInfo(), "cpu") {
		t.Fatalf("build info %q", dsa.BuildInfo())
	}
	if dsa.StatusShapeMismatch.String() != "shape mismatch" || dsa.BF16.Size() != 2 || dsa.I64.Size() != 8 {
		t.Fatal("status strings or dtype sizes")
	}
}

func TestContextReportsItsDeviceAndThreads(t *testing.T) {
	context := newContext(t, &dsa.ContextOptions{Device: dsa.CPU, NumThreads: 3})
	if device, err := context.Device(); err != nil || device != dsa.CPU {
		t.Fatalf("device %v, %v", device, err)
	}
	if threads, err := context.NumThreads(); err != nil || threads != 3 {
		t.Fatalf("threads %d, %v", threads, err)
	}
	context.Close()
	context.Close() // a no-op
	_, err := context.NumThreads()
	if status, _ := statusOf(t, err); status != dsa.StatusInvalidArgument {
		t.Fatalf("closed context: %v", err)
	}
	_, err = dsa.NewContext(&dsa.ContextOptions{NumThreads: -1})
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument || !strings.Contains(message, "num_threads") {
		t.Fatalf("negative threads: %v", err)
	}
}

func TestQuantizeThenDequantizeRoundTrips(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(rows*n, 1, 5)
	codes, scales := quantize(t, context, x)
	for g, scale := range scales {
		amax := float32(0)
		for _, v := range x[g*group : (g+1)*group] {
			amax = float32(math.Max(float64(amax), math.Abs(float64(v))))
		}
		if scale != amax/448 {
			t.Fatalf("group %d: scale %g, amax %g", g, scale, amax)
		}
	}
	y := make([]float32, rows*n)
	err := context.DequantizeFP8(nil, view(t, codes, rows, n),
		view(t, scales, rows, n/group), view(t, y, rows, n), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for i := range y {
		scale := scales[i/group]
		if y[i] != decodeE4M3(codes[i])*scale {
			t.Fatalf("element %d: %g, code %#x, scale %g", i, y[i], codes[i], scale)
		}
		if math.Abs(float64(y[i]-x[i])) > math.Abs(float64(x[i]))/16+float64(scale)/1024 {
			t.Fatalf("element %d: %g vs %g", i, y[i], x[i])
		}
	}
}

func TestStridedInputsAndBF16Outputs(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(rows*n, 2, 1)
	codes, scales := quantize(t, context, x)
	// The same codes and scales through padded rows and a scale column of stride 3.
	padded, spread := make([]uint8, rows*(n+32)), make([]float32, rows*6)
	for row := 0; row < rows; row++ {
		for i := 0; i < n; i++ {
			padded[row*(n+32)+i] = uint8(codes[row*n+i])
		}
		spread[row*6], spread[row*6+3] = scales[row*2], scales[row*2+1]
	}
	y := make([]dsa.Bfloat16, rows*n)
	params := dsa.DefaultQuantizeFP8Params()
	err := context.DequantizeFP8(&params,
		stridedView(t, padded, []int64{rows, n}, []int64{n + 32, 1}),
		stridedView(t, spread, []int64{rows, 2}, []int64{6, 3}),
		view(t, y, rows, n), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for i := range y {
		// The exact product rounded to bf16 (to nearest even) by truncating its f32 bits.
		value := math.Float32bits(decodeE4M3(codes[i]) * scales[i/group])
		want := dsa.Bfloat16((value + 0x7FFF + (value>>16)&1) >> 16)
		if y[i] != want {
			t.Fatalf("element %d: %#x, want %#x", i, y[i], want)
		}
	}
}

func TestUE8M0ScalesArePowersOfTwo(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(128, 3, 100)
	codes, scales := make([]uint8, 128), make([]float32, 2)
	params := dsa.DefaultQuantizeFP8Params()
	params.GroupSize, params.ScaleFormat = 64, dsa.ScaleFormatUE8M0
	err := context.QuantizeFP8(&params, view(t, x, 2, 64), view(t, codes, 2, 64),
		view(t, scales, 2, 1), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, scale := range scales {
		if math.Float32bits(scale)&0x7FFFFF != 0 {
			t.Fatalf("scale %g is not a power of two", scale)
		}
	}
}

func TestHadamardInPlaceAndInverse(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(4*128, 4, 2)
	rotated, inPlace := make([]float32, len(x)), append([]float32(nil), x...)
	if err := context.Hadamard(nil, view(t, x, 4, 128), view(t, rotated, 4, 128), 0); err != nil {
		t.Fatal(err)
	}
	sum := float32(0)
	for _, v := range x[:128] {
		sum += v
	}
	if math.Abs(float64(rotated[0]-sum/float32(math.Sqrt(128)))) > 1e-4 {
		t.Fatalf("(x . H)_0 = %g, want %g", rotated[0], sum/float32(math.Sqrt(128)))
	}
	inPlaceView := view(t, inPlace, 4, 128)
	if err := context.Hadamard(nil, inPlaceView, inPlaceView, 0); err != nil {
		t.Fatal(err)
	}
	for i := range inPlace {
		if inPlace[i] != rotated[i] {
			t.Fatalf("in place differs at %d", i)
		}
	}
	half := dsa.HadamardParams{Scale: 0.5}
	if err := context.Hadamard(&half, inPlaceView, inPlaceView, 0); err != nil {
		t.Fatal(err)
	}
	for i := range inPlace { // H.H = n I: x H / sqrt(n) H * 0.5 = x * sqrt(n) * 0.5
		if want := x[i] * 0.5 * float32(math.Sqrt(128)); math.Abs(float64(inPlace[i]-want)) > 1e-5*(1+math.Abs(float64(want))) {
			t.Fatalf("element %d: %g, want %g", i, inPlace[i], want)
		}
	}
}

func TestLibraryErrorsCarryStatusAndMessage(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(256, 5, 1)
	codes, scales := make([]uint8, 256), []float32{7, 7}
	for i := range codes {
		codes[i] = 0x5A
	}
	params := dsa.DefaultQuantizeFP8Params()
	params.GroupSize = 100
	err := context.QuantizeFP8(&params, view(t, x, 2, 128), view(t, codes, 2, 128),
		view(t, scales, 2, 1), dsa.DefaultStream)
	status, message := statusOf(t, err)
	if status != dsa.StatusInvalidArgument || !strings.HasPrefix(message, "params.group_size") ||
		!strings.HasPrefix(err.Error(), "invalid argument: params.group_size") {
		t.Fatalf("got %v", err)
	}
	for _, code := range codes {
		if code != 0x5A || scales[0] != 7 || scales[1] != 7 {
			t.Fatal("outputs were written")
		}
	}
	err = context.Hadamard(nil, view(t, x, 2, 128), view(t, make([]int32, 256), 2, 128), 0)
	if status, message := statusOf(t, err); status != dsa.StatusDtypeMismatch || !strings.HasPrefix(message, "y:") {
		t.Fatalf("got %v", err)
	}
	err = context.Hadamard(nil, nil, view(t, x, 2, 128), 0)
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument || !strings.HasPrefix(message, "x") {
		t.Fatalf("nil tensor: %v", err)
	}
}

func TestViewsAreCheckedBeforeAnyCall(t *testing.T) {
	data := make([]float32, 10)
	cases := []struct {
		shape, strides []int64
		status         dsa.Status
	}{
		{[]int64{3, 4}, nil, dsa.StatusShapeMismatch},
		{[]int64{3, 4}, []int64{4, 1}, dsa.StatusShapeMismatch},
		{[]int64{2, 2}, []int64{-1, 1}, dsa.StatusLayoutUnsupported},
		{[]int64{2, 2}, []int64{1}, dsa.StatusInvalidArgument},
		{[]int64{1, 1, 1, 1, 1, 1, 1, 1, 1}, nil, dsa.StatusInvalidArgument}, // rank above DSA_MAX_DIMS
		{[]int64{-1}, nil, dsa.StatusShapeMismatch},
	}
	for _, c := range cases {
		var err error
		if c.strides == nil {
			_, err = dsa.NewTensor(data, c.shape...)
		} else {
			_, err = dsa.NewStridedTensor(data, c.shape, c.strides)
		}
		if status, _ := statusOf(t, err); status != c.status {
			t.Fatalf("shape %v strides %v: %v", c.shape, c.strides, err)
		}
	}
	if _, err := dsa.NewStridedTensor(data, []int64{2, 3}, []int64{5, 1}); err != nil {
		t.Fatal(err)
	}
	if tensor := view(t, data[:0], 0, 5); tensor.Shape()[1] != 5 || tensor.DType() != dsa.F32 {
		t.Fatal("empty tensor")
	}
}

func TestDeviceTensorsAreRefusedByACPUContext(t *testing.T) {
	context := newContext(t, nil)
	// A made-up device address: libdsa compares devices before touching memory, and a CPU-only
	// build refuses CUDA tensors outright.
	device, err := dsa.NewDeviceTensor(0x7f0000000000, dsa.F32, dsa.CUDA(0), []int64{4, 128}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = context.Hadamard(nil, device, device, 0)
	if status, message := statusOf(t, err); (status != dsa.StatusDeviceMismatch && status != dsa.StatusUnsupported) ||
		!strings.HasPrefix(message, "x:") {
		t.Fatalf("got %v", err)
	}
	cuda, err := dsa.NewContext(&dsa.ContextOptions{Device: dsa.CUDA(0)})
	if err == nil {
		cuda.Close()
	} else if status, _ := statusOf(t, err); status != dsa.StatusUnsupported && status != dsa.StatusCUDAError {
		t.Fatalf("CUDA context: %v", err)
	}
}

// Goroutines move between OS threads; each failed call must still report its own message.
func TestOneContextServesManyGoroutinesWithTheirOwnErrors(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(rows*n, 6, 3)
	wantCodes, wantScales := quantize(t, context, x)
	var wait sync.WaitGroup
	failures := make(chan string, 64)
	for goroutine := 0; goroutine < 8; goroutine++ {
		wait.Add(1)
		go func(goroutine int) {
			defer wait.Done()
			for round := 0; round < 20; round++ {
				codes, scales := make([]uint8, 128), make([]float32, 1)
				params := dsa.DefaultQuantizeFP8Params()
				params.GroupSize = int32(-1 - goroutine)
				x1, _ := dsa.NewTensor(x[:128], 1, 128)
				q1, _ := dsa.NewTensor(codes, 1, 128)
				s1, _ := dsa.NewTensor(scales, 1, 1)
				err := context.QuantizeFP8(&params, x1, q1, s1, dsa.DefaultStream)
				want := fmt.Sprintf("params.group_size: must be > 0, got %d", -1-goroutine)
				if failure, ok := err.(*dsa.Error); !ok || failure.Message != want {
					failures <- fmt.Sprintf("goroutine %d: %v", goroutine, err)
					return
				}
				codesAll, scalesAll := make([]dsa.Float8E4M3, rows*n), make([]float32, rows*2)
				xa, _ := dsa.NewTensor(x, rows, n)
				qa, _ := dsa.NewTensor(codesAll, rows, n)
				sa, _ := dsa.NewTensor(scalesAll, rows, 2)
				if err := context.QuantizeFP8(nil, xa, qa, sa, dsa.DefaultStream); err != nil {
					failures <- err.Error()
					return
				}
				for i := range codesAll {
					if codesAll[i] != wantCodes[i] || scalesAll[i/group] != wantScales[i/group] {
						failures <- fmt.Sprintf("goroutine %d: results differ at %d", goroutine, i)
						return
					}
				}
			}
		}(goroutine)
	}
	wait.Wait()
	close(failures)
	for failure := range failures {
		t.Error(failure)
	}
}
