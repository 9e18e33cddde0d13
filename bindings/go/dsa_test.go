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

func TestHadamardQuantizeFP8EqualsHadamardThenQuantizeFP8(t *testing.T) {
	context := newContext(t, nil)
	x := randomFloats(4*128, 6, 3)
	params := dsa.DefaultQuantizeFP8Params()
	params.GroupSize = 32
	params.ScaleFormat = dsa.ScaleFormatUE8M0
	rotated := make([]float32, len(x))
	if err := context.Hadamard(nil, view(t, x, 4, 128), view(t, rotated, 4, 128), 0); err != nil {
		t.Fatal(err)
	}
	wantCodes, wantScales := make([]uint8, len(x)), make([]float32, 16)
	if err := context.QuantizeFP8(&params, view(t, rotated, 4, 128), view(t, wantCodes, 4, 128),
		view(t, wantScales, 4, 4), 0); err != nil {
		t.Fatal(err)
	}
	codes, scales := make([]uint8, len(x)), make([]float32, 16)
	if err := context.HadamardQuantizeFP8(nil, &params, view(t, x, 4, 128), view(t, codes, 4, 128),
		view(t, scales, 4, 4), 0); err != nil {
		t.Fatal(err)
	}
	for i := range codes {
		if codes[i] != wantCodes[i] {
			t.Fatalf("code %d: %#x, want %#x", i, codes[i], wantCodes[i])
		}
	}
	for i := range scales {
		if math.Float32bits(scales[i]) != math.Float32bits(wantScales[i]) {
			t.Fatalf("scale %d: %g, want %g", i, scales[i], wantScales[i])
		}
	}
	params.GroupSize = 0
	err := context.HadamardQuantizeFP8(nil, &params, view(t, x, 4, 128), view(t, codes, 4, 128),
		view(t, scales, 4, 4), 0)
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument ||
		!strings.HasPrefix(message, "quantize_params.group_size") {
		t.Fatalf("got %v", err)
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

func topkRows(t *testing.T, context *dsa.Context, params *dsa.TopkParams, scores []float32, starts, ends []int32) []int32 {
	t.Helper()
	rowCount := int64(len(scores) / 8)
	indices := make([]int32, rowCount*int64(params.K))
	for i := range indices {
		indices[i] = math.MinInt32
	}
	var startsView, endsView *dsa.Tensor // nil: the whole row
	if starts != nil {
		startsView, endsView = view(t, starts, rowCount), view(t, ends, rowCount)
	}
	err := context.Topk(params, view(t, scores, rowCount, 8), startsView, endsView, nil,
		view(t, indices, rowCount, int64(params.K)), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return indices
}

func equalInts(t *testing.T, what string, got, want []int32) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func TestTopkPrefersLargerScoresThenSmallerIndices(t *testing.T) {
	context := newContext(t, nil)
	nan, negInf := float32(math.NaN()), float32(math.Inf(-1))
	scores := []float32{
		0.5, 2.0, -1.0, 2.0, nan, 3.0, negInf, 0.5,
		9.0, 8.0, 1.0, nan, 1.0, 7.0, 7.0, 7.0,
	}
	params := dsa.DefaultTopkParams()
	params.K, params.Order = 4, dsa.TopkOrderScore
	// Row 0: 3.0 at 5, the tied 2.0s at 1 then 3, and of the tied 0.5s the one at 0; NaN never.
	// Row 1, window [2, 6): 7.0 at 5, the tied 1.0s at 2 then 4 (NaN at 3 skipped), -1 padding.
	equalInts(t, "windows, score order", topkRows(t, context, &params, scores, []int32{0, 2}, []int32{8, 6}),
		[]int32{5, 1, 3, 0, 5, 2, 4, -1})
	byIndex := params
	byIndex.Order = dsa.TopkOrderIndex
	equalInts(t, "whole rows, index order", topkRows(t, context, &byIndex, scores, nil, nil),
		[]int32{0, 1, 3, 5, 0, 1, 5, 6})
	// Pages of 2 tokens: tokens 5, 1, 3, 0 sit in pages 5, 3, 0, 3 at offsets 1, 1, 1, 0.
	paged := params
	paged.PageSize = 2
	slots := make([]int32, 4)
	err := context.Topk(&paged, view(t, scores[:8], 1, 8), nil, nil, view(t, []int32{3, 0, 5, 1}, 1, 4),
		view(t, slots, 1, 4), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	equalInts(t, "block table", slots, []int32{11, 7, 1, 6})
}

// randomCodes gives deterministic e4m3 codes of moderate magnitude (never NaN).
func randomCodes(count int, seed uint64) []dsa.Float8E4M3 {
	codes := make([]dsa.Float8E4M3, count)
	for i, v := range randomFloats(count, seed, 1) {
		codes[i] = dsa.Float8E4M3(uint8(math.Abs(float64(v)) * 80))
		if v < 0 {
			codes[i] |= 0x80
		}
	}
	return codes
}

// referenceLogits is DSA_SPEC section 4 in float64:
// kScale[s] * sum_h w[t, h] * ReLU(q[t, h] . k[s]).
func referenceLogits(q []dsa.Float8E4M3, weights []float32, k []dsa.Float8E4M3, kScale []float32, heads, dim, t, s int) float64 {
	sum := 0.0
	for h := 0; h < heads; h++ {
		dot := 0.0
		for d := 0; d < dim; d++ {
			dot += float64(decodeE4M3(q[(t*heads+h)*dim+d])) * float64(decodeE4M3(k[s*dim+d]))
		}
		sum += float64(weights[t*heads+h]) * math.Max(dot, 0)
	}
	return float64(kScale[s]) * sum
}

func checkClose(t *testing.T, what string, got float32, want, tolerance float64) {
	t.Helper()
	if math.Abs(float64(got)-want) > tolerance*math.Max(math.Abs(want), 1) {
		t.Fatalf("%s: %g, want %g", what, got, want)
	}
}

func TestIndexerLogitsMatchTheDefinitionInsideEachWindow(t *testing.T) {
	context := newContext(t, nil)
	const queries, heads, dim, keys = 3, 2, 8, 5
	q, k := randomCodes(queries*heads*dim, 10), randomCodes(keys*dim, 11)
	weights, kScale := randomFloats(queries*heads, 12, 1), randomFloats(keys, 13, 1)
	for i := range kScale {
		kScale[i] = float32(math.Abs(float64(kScale[i]))) + 0.1
	}
	ks, ke := []int32{0, 1, 4}, []int32{1, 4, 2} // the last window is empty
	logits := make([]float32, queries*keys)
	params := dsa.DefaultIndexerParams()
	err := context.IndexerLogits(&params, view(t, q, queries, heads, dim), view(t, weights, queries, heads),
		view(t, k, keys, dim), view(t, kScale, keys), view(t, ks, queries), view(t, ke, queries),
		view(t, logits, queries, keys), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for row := 0; row < queries; row++ {
		for s := 0; s < keys; s++ {
			what := fmt.Sprintf("logits[%d, %d]", row, s)
			if int32(s) >= ks[row] && int32(s) < ke[row] {
				checkClose(t, what, logits[row*keys+s], referenceLogits(q, weights, k, kScale, heads, dim, row, s), 1e-5)
			} else if !math.IsInf(float64(logits[row*keys+s]), -1) {
				t.Fatalf("%s: %g outside the window", what, logits[row*keys+s])
			}
		}
	}
}

func TestIndexerCacheWriteThenPagedLogits(t *testing.T) {
	context := newContext(t, nil)
	const dim, heads, tokens, pages = 16, 2, 3, 2
	const pageBytes = 64 * (dim + 4)
	keys := randomFloats(4*dim, 20, 3) // the 4th token is padding: slot -1 is skipped
	cache := make([]uint8, pages*pageBytes)
	for i := range cache {
		cache[i] = 0xEE
	}
	err := context.IndexerCacheWrite(view(t, keys, 4, dim), view(t, []int64{64, 65, 66, -1}, 4),
		view(t, cache, pages, pageBytes), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// The cache holds what QuantizeFP8 gives with one ue8m0 group per token, in page 1.
	codes, scales := make([]dsa.Float8E4M3, tokens*dim), make([]float32, tokens)
	params := dsa.DefaultQuantizeFP8Params()
	params.GroupSize, params.ScaleFormat = dim, dsa.ScaleFormatUE8M0
	err = context.QuantizeFP8(&params, view(t, keys[:tokens*dim], tokens, dim), view(t, codes, tokens, dim),
		view(t, scales, tokens, 1), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	page := cache[pageBytes:]
	for i := 0; i < tokens*dim; i++ {
		if page[i] != uint8(codes[i]) {
			t.Fatalf("code %d: %#x, want %#x", i, page[i], codes[i])
		}
	}
	for i := 0; i < tokens; i++ {
		bits := uint32(page[64*dim+4*i]) | uint32(page[64*dim+4*i+1])<<8 | uint32(page[64*dim+4*i+2])<<16 |
			uint32(page[64*dim+4*i+3])<<24 // little-endian hosts only, as the tests run on
		if math.Float32frombits(bits) != scales[i] {
			t.Fatalf("scale %d: %g, want %g", i, math.Float32frombits(bits), scales[i])
		}
	}
	for i, b := range cache {
		if (i < pageBytes || (i >= pageBytes+tokens*dim && i < pageBytes+64*dim)) && b != 0xEE {
			t.Fatalf("byte %d written", i)
		}
	}

	// One sequence of 3 tokens in page 1, two next-token queries: query j sees [0, 2 + j).
	q, weights := randomCodes(2*heads*dim, 22), randomFloats(2*heads, 23, 1)
	logits := make([]float32, 2*128)
	err = context.IndexerLogitsPaged(nil, view(t, q, 1, 2, heads, dim), view(t, weights, 2, heads),
		view(t, cache, pages, pageBytes), view(t, []int32{1, 0}, 1, 2), view(t, []int32{3}, 1),
		view(t, logits, 2, 128), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 2; j++ {
		for s := 0; s < 128; s++ {
			what := fmt.Sprintf("logits[%d, %d]", j, s)
			if s < 2+j {
				checkClose(t, what, logits[j*128+s], referenceLogits(q, weights, codes, scales, heads, dim, j, s), 1e-5)
			} else if !math.IsInf(float64(logits[j*128+s]), -1) {
				t.Fatalf("%s: %g beyond the context", what, logits[j*128+s])
			}
		}
	}
}

func toBF16(value float32) dsa.Bfloat16 {
	bits := math.Float32bits(value)
	return dsa.Bfloat16((bits + 0x7FFF + (bits>>16)&1) >> 16)
}

func fromBF16(value dsa.Bfloat16) float64 { return float64(math.Float32frombits(uint32(value) << 16)) }

func randomBF16(count int, seed uint64) []dsa.Bfloat16 {
	values := make([]dsa.Bfloat16, count)
	for i, v := range randomFloats(count, seed, 1) {
		values[i] = toBF16(v)
	}
	return values
}

// referenceAttention is one query row of sparse attention in float64 (DSA_SPEC section 6):
// out [H, dV], lse [H] and max_logits [H] over the valid selected rows of kv.
func referenceAttention(q, kv []dsa.Bfloat16, selected []int32, sink []float32, scale float64, dQK, dV int) (out, lse, maxLogits []float64) {
	heads := len(q) / dQK
	out, lse, maxLogits = make([]float64, heads*dV), make([]float64, heads), make([]float64, heads)
	for h := 0; h < heads; h++ {
		var z []float64
		var rows []int
		for _, s := range selected {
			if s < 0 || int(s) >= len(kv)/dQK {
				continue
			}
			dot := 0.0
			for d := 0; d < dQK; d++ {
				dot += fromBF16(q[h*dQK+d]) * fromBF16(kv[int(s)*dQK+d])
			}
			z, rows = append(z, scale*dot), append(rows, int(s))
		}
		denominator, maximum := 0.0, math.Inf(-1)
		for _, value := range z {
			denominator += math.Exp(value)
			maximum = math.Max(maximum, value)
		}
		lse[h], maxLogits[h] = math.Log(denominator), maximum
		total := denominator
		if sink != nil {
			total += math.Exp(float64(sink[h]))
		}
		for j, s := range rows {
			for d := 0; d < dV; d++ {
				out[h*dV+d] += math.Exp(z[j]) * fromBF16(kv[s*dQK+d]) / total
			}
		}
	}
	return out, lse, maxLogits
}

func TestSparseAttentionMatchesAFloat64Reference(t *testing.T) {
	context := newContext(t, nil)
	const rowCount, heads, dQK, dV, keys, k = 2, 3, 16, 8, 6, 4
	q, kv := randomBF16(rowCount*heads*dQK, 30), randomBF16(keys*dQK, 31)
	// Row 0 repeats 5 (it counts twice) and pads with -1; row 1 has an out-of-range 9.
	indices := []int32{4, 5, 5, -1, 2, 0, 9, 3}
	sink := []float32{0.5, -0.25, 1}
	params := dsa.SparseAttentionParams{Scale: 0.3, DV: dV}
	out := make([]dsa.Bfloat16, rowCount*heads*dV)
	lse, maxLogits := make([]float32, rowCount*heads), make([]float32, rowCount*heads)
	err := context.SparseAttention(&params, view(t, q, rowCount, heads, dQK), view(t, kv, keys, dQK),
		view(t, indices, rowCount, k), view(t, sink, heads), nil, view(t, out, rowCount, heads, dV),
		view(t, lse, rowCount, heads), view(t, maxLogits, rowCount, heads), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// The paged form over the same entries as 2 pages of 3 tokens, topk_length 2 for row 1, no sink.
	lengths := []int32{4, 2}
	pagedOut, pagedLSE := make([]dsa.Bfloat16, rowCount*heads*dV), make([]float32, rowCount*heads)
	err = context.SparseAttentionPaged(&params, view(t, q, 1, rowCount, heads, dQK), view(t, kv, 2, 3, dQK),
		view(t, indices, 1, rowCount, k), nil, view(t, lengths, 1, rowCount),
		view(t, pagedOut, 1, rowCount, heads, dV), view(t, pagedLSE, 1, rowCount, heads), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for row := 0; row < rowCount; row++ {
		rowQ := q[row*heads*dQK : (row+1)*heads*dQK]
		wantOut, wantLSE, wantMax := referenceAttention(rowQ, kv, indices[row*k:(row+1)*k], sink, 0.3, dQK, dV)
		pagedWantOut, pagedWantLSE, _ := referenceAttention(rowQ, kv, indices[row*k:row*k+int(lengths[row])], nil,
			0.3, dQK, dV)
		for h := 0; h < heads; h++ {
			i := row*heads + h
			checkClose(t, fmt.Sprintf("lse[%d, %d]", row, h), lse[i], wantLSE[h], 1e-5)
			checkClose(t, fmt.Sprintf("max_logits[%d, %d]", row, h), maxLogits[i], wantMax[h], 1e-5)
			checkClose(t, fmt.Sprintf("paged lse[%d, %d]", row, h), pagedLSE[i], pagedWantLSE[h], 1e-5)
			for d := 0; d < dV; d++ {
				what := fmt.Sprintf("out[%d, %d, %d]", row, h, d)
				checkClose(t, what, float32(fromBF16(out[i*dV+d])), wantOut[h*dV+d], 1.0/128)
				checkClose(t, "paged "+what, float32(fromBF16(pagedOut[i*dV+d])), pagedWantOut[h*dV+d], 1.0/128)
			}
		}
	}
}

func TestMLACacheWriteStoresCodesScalesAndRopeKeys(t *testing.T) {
	context := newContext(t, nil)
	const tokens, pages, pageSize = 2, 2, 4
	cKV, kPE := randomFloats(tokens*512, 40, 4), randomFloats(tokens*64, 41, 2)
	slots := []int64{6, 1}
	cache := make([]uint8, pages*pageSize*656)
	for i := range cache {
		cache[i] = 0xEE
	}
	err := context.MLACacheWrite(view(t, cKV, tokens, 512), view(t, kPE, tokens, 64), view(t, slots, tokens),
		view(t, cache, pages, pageSize, 656), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	codes, scales := make([]dsa.Float8E4M3, tokens*512), make([]float32, tokens*4)
	params := dsa.DefaultQuantizeFP8Params()
	params.ScaleFormat = dsa.ScaleFormatUE8M0
	err = context.QuantizeFP8(&params, view(t, cKV, tokens, 512), view(t, codes, tokens, 512),
		view(t, scales, tokens, 4), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for token, slot := range slots {
		entry := cache[slot*656 : (slot+1)*656]
		for i := 0; i < 512; i++ {
			if entry[i] != uint8(codes[token*512+i]) {
				t.Fatalf("token %d code %d: %#x, want %#x", token, i, entry[i], codes[token*512+i])
			}
		}
		for g := 0; g < 4; g++ { // little-endian hosts, as the tests run on
			bits := uint32(entry[512+4*g]) | uint32(entry[513+4*g])<<8 | uint32(entry[514+4*g])<<16 | uint32(entry[515+4*g])<<24
			if math.Float32frombits(bits) != scales[token*4+g] {
				t.Fatalf("token %d scale %d", token, g)
			}
		}
		for d := 0; d < 64; d++ {
			if bits := dsa.Bfloat16(uint16(entry[528+2*d]) | uint16(entry[529+2*d])<<8); bits != toBF16(kPE[token*64+d]) {
				t.Fatalf("token %d k_pe %d: %#x", token, d, bits)
			}
		}
	}
	for i, b := range cache {
		if slot := int64(i / 656); slot != slots[0] && slot != slots[1] && b != 0xEE {
			t.Fatalf("byte %d of an unaddressed entry written", i)
		}
	}
}

func TestNewOpsReportBadParamsByName(t *testing.T) {
	context := newContext(t, nil)
	out, lse := make([]dsa.Bfloat16, 2*8), []float32{7, 7}
	for i := range out {
		out[i] = 0x1234
	}
	params := dsa.DefaultSparseAttentionParams()
	params.DV = 8
	if params.Scale != 0 {
		t.Fatalf("default scale %g", params.Scale)
	}
	err := context.SparseAttention(&params, view(t, randomBF16(2*16, 50), 2, 1, 16), view(t, randomBF16(3*16, 51), 3, 16),
		view(t, []int32{0, 1, 2, 0}, 2, 2), nil, nil, view(t, out, 2, 1, 8), view(t, lse, 2, 1), nil,
		dsa.DefaultStream)
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument || !strings.HasPrefix(message, "params.scale") {
		t.Fatalf("scale 0: %v", err)
	}
	for _, value := range out {
		if value != 0x1234 || lse[0] != 7 || lse[1] != 7 {
			t.Fatal("outputs were written")
		}
	}
	topk := dsa.DefaultTopkParams()
	topk.K, topk.NSink, topk.NLocal = 2, 2, 1
	err = context.Topk(&topk, view(t, randomFloats(8, 52, 1), 1, 8), nil, nil, nil, view(t, make([]int32, 2), 1, 2),
		dsa.DefaultStream)
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument ||
		!strings.HasPrefix(message, "params.n_sink + params.n_local") {
		t.Fatalf("n_sink + n_local > k: %v", err)
	}
}

func TestFusedPrefillEqualsItsParts(t *testing.T) {
	context := newContext(t, nil)
	const queries, heads, dim, keys, k, qHeads, dQK, dV = 4, 2, 16, 10, 3, 2, 16, 8
	indexQ, indexK := view(t, randomCodes(queries*heads*dim, 60), queries, heads, dim), view(t, randomCodes(keys*dim, 61), keys, dim)
	weights := view(t, randomFloats(queries*heads, 62, 1), queries, heads)
	kScale := view(t, []float32{0.5, 1, 0.25, 2, 1, 0.75, 1.5, 0.5, 1, 2}, keys)
	ks, ke := view(t, []int32{0, 0, 2, 5}, queries), view(t, []int32{1, 6, 10, 9}, queries)
	q, kv := view(t, randomBF16(queries*qHeads*dQK, 64), queries, qHeads, dQK), view(t, randomBF16(keys*dQK, 65), keys, dQK)
	topk := dsa.DefaultTopkParams()
	topk.K, topk.Order = k, dsa.TopkOrderScore
	attention := dsa.SparseAttentionParams{Scale: 0.25, DV: dV}

	// The parts: logits, top-k over the windows, sparse attention.
	logits := make([]float32, queries*keys)
	if err := context.IndexerLogits(nil, indexQ, weights, indexK, kScale, ks, ke, view(t, logits, queries, keys), 0); err != nil {
		t.Fatal(err)
	}
	expected := make([]int32, queries*k)
	if err := context.Topk(&topk, view(t, logits, queries, keys), ks, ke, nil, view(t, expected, queries, k), 0); err != nil {
		t.Fatal(err)
	}
	expectedOut, expectedLSE := make([]dsa.Bfloat16, queries*qHeads*dV), make([]float32, queries*qHeads)
	err := context.SparseAttention(&attention, q, kv, view(t, expected, queries, k), nil, nil,
		view(t, expectedOut, queries, qHeads, dV), view(t, expectedLSE, queries, qHeads), nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	bytes, err := context.IndexerTopkWorkspaceSize(queries, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, workspace := range []*dsa.Workspace{nil, dsa.NewWorkspace(make([]byte, bytes))} {
		indices := make([]int32, queries*k)
		if err := context.IndexerTopk(nil, &topk, indexQ, weights, indexK, kScale, ks, ke, view(t, indices, queries, k),
			workspace, 0); err != nil {
			t.Fatal(err)
		}
		equalInts(t, "fused indices", indices, expected)
	}
	if bytes > 0 {
		err := context.IndexerTopk(nil, &topk, indexQ, weights, indexK, kScale, ks, ke,
			view(t, make([]int32, queries*k), queries, k), dsa.NewWorkspace(make([]byte, bytes-1)), 0)
		if status, message := statusOf(t, err); status != dsa.StatusWorkspaceTooSmall || !strings.HasPrefix(message, "workspace") {
			t.Fatalf("small workspace: %v", err)
		}
	}

	bytes, err = context.AttentionWorkspaceSize(&topk, queries, keys)
	if err != nil {
		t.Fatal(err)
	}
	out, lse, selected := make([]dsa.Bfloat16, len(expectedOut)), make([]float32, len(expectedLSE)), make([]int32, len(expected))
	err = context.Attention(nil, &topk, &attention, indexQ, weights, indexK, kScale, ks, ke, q, kv, nil,
		view(t, out, queries, qHeads, dV), view(t, lse, queries, qHeads), view(t, selected, queries, k),
		dsa.NewWorkspace(make([]byte, bytes)), 0)
	if err != nil {
		t.Fatal(err)
	}
	equalInts(t, "selected", selected, expected)
	if fmt.Sprint(out) != fmt.Sprint(expectedOut) || fmt.Sprint(lse) != fmt.Sprint(expectedLSE) {
		t.Fatalf("attention differs from its parts:\n%v %v\n%v %v", out, lse, expectedOut, expectedLSE)
	}
}

func TestFusedDecodeEqualsItsParts(t *testing.T) {
	context := newContext(t, nil)
	const next, heads, dim, k, pages, qHeads, dQK, dV = 2, 2, 16, 4, 2, 2, 16, 8
	const pageBytes = 64 * (dim + 4)
	// One sequence of 7 tokens in page 1 (block table [1, 0]).
	cache := make([]uint8, pages*pageBytes)
	err := context.IndexerCacheWrite(view(t, randomFloats(7*dim, 70, 2), 7, dim),
		view(t, []int64{64, 65, 66, 67, 68, 69, 70}, 7), view(t, cache, pages, pageBytes), 0)
	if err != nil {
		t.Fatal(err)
	}
	cacheView, table, lens := view(t, cache, pages, pageBytes), view(t, []int32{1, 0}, 1, 2), view(t, []int32{7}, 1)
	indexQ, weights := view(t, randomCodes(next*heads*dim, 71), 1, next, heads, dim), view(t, randomFloats(next*heads, 72, 1), next, heads)
	q, kvCache := view(t, randomBF16(next*qHeads*dQK, 73), 1, next, qHeads, dQK), view(t, randomBF16(pages*64*dQK, 74), pages, 64, dQK)
	topk := dsa.DefaultTopkParams()
	topk.K, topk.Order = k, dsa.TopkOrderIndex
	attention := dsa.SparseAttentionParams{Scale: 0.25, DV: dV}

	logits := make([]float32, next*128)
	if err := context.IndexerLogitsPaged(nil, indexQ, weights, cacheView, table, lens, view(t, logits, next, 128), 0); err != nil {
		t.Fatal(err)
	}
	expectedIndices, expectedSlots := make([]int32, next*k), make([]int32, next*k)
	if err := context.Topk(&topk, view(t, logits, next, 128), nil, nil, nil, view(t, expectedIndices, next, k), 0); err != nil {
		t.Fatal(err)
	}
	byPage := topk
	byPage.PageSize = 64
	if err := context.Topk(&byPage, view(t, logits, next, 128), nil, nil, table, view(t, expectedSlots, next, k), 0); err != nil {
		t.Fatal(err)
	}
	indices, slots := make([]int32, next*k), make([]int32, next*k)
	err = context.IndexerTopkPaged(nil, &topk, indexQ, weights, cacheView, table, lens, view(t, indices, next, k),
		view(t, slots, next, k), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalInts(t, "fused indices", indices, expectedIndices)
	equalInts(t, "fused slots", slots, expectedSlots)

	expectedOut, expectedLSE := make([]dsa.Bfloat16, next*qHeads*dV), make([]float32, next*qHeads)
	err = context.SparseAttentionPaged(&attention, q, kvCache, view(t, expectedSlots, 1, next, k), nil, nil,
		view(t, expectedOut, 1, next, qHeads, dV), view(t, expectedLSE, 1, next, qHeads), 0)
	if err != nil {
		t.Fatal(err)
	}
	out, lse := make([]dsa.Bfloat16, len(expectedOut)), make([]float32, len(expectedLSE))
	err = context.AttentionPaged(nil, &topk, &attention, indexQ, weights, cacheView, table, lens, q, kvCache, nil,
		view(t, out, 1, next, qHeads, dV), view(t, lse, 1, next, qHeads), nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != fmt.Sprint(expectedOut) || fmt.Sprint(lse) != fmt.Sprint(expectedLSE) {
		t.Fatalf("paged attention differs from its parts")
	}
}

func TestAWorkspaceMustBeOnTheContextDevice(t *testing.T) {
	context := newContext(t, nil)
	topk := dsa.DefaultTopkParams()
	topk.K = 1
	err := context.IndexerTopk(nil, &topk, view(t, randomCodes(16, 80), 1, 1, 16), view(t, []float32{1}, 1, 1),
		view(t, randomCodes(32, 81), 2, 16), view(t, []float32{1, 1}, 2), view(t, []int32{0}, 1),
		view(t, []int32{2}, 1), view(t, make([]int32, 1), 1, 1),
		dsa.NewDeviceWorkspace(0x7f0000000000, 1<<20, dsa.CUDA(0)), 0)
	if status, message := statusOf(t, err); status != dsa.StatusDeviceMismatch || !strings.HasPrefix(message, "workspace:") {
		t.Fatalf("device workspace: %v", err)
	}
}

// referenceIndexerLoss is the indexer distillation loss in f64 (DSA_SPEC section 8.1) over each
// row's entries, the teacher distribution of a row given by teacher(t, entries).
func referenceIndexerLoss(q, k, w []float32, entries [][]int, teacher func(int, []int) []float64, heads, dim int,
	coeff float64) (loss float64, rowLoss, dQ, dK, dW []float64) {
	u := func(t, h, s int) float64 {
		sum := 0.0
		for d := 0; d < dim; d++ {
			sum += float64(q[(t*heads+h)*dim+d]) * float64(k[s*dim+d])
		}
		return sum
	}
	rowLoss, dQ, dK, dW = make([]float64, len(entries)), make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(w))
	for t, row := range entries {
		p := teacher(t, row)
		logits, total := make([]float64, len(row)), 0.0
		for j, s := range row {
			for h := 0; h < heads; h++ {
				logits[j] += float64(w[t*heads+h]) * math.Max(u(t, h, s), 0)
			}
			total += math.Exp(logits[j])
		}
		for j, s := range row {
			pi := math.Exp(logits[j]) / total
			if p[j] > 0 {
				rowLoss[t] += p[j] * math.Log(p[j]/pi)
			}
			g := coeff / float64(len(entries)) * (pi - p[j])
			for h := 0; h < heads; h++ {
				value := u(t, h, s)
				dW[t*heads+h] += g * math.Max(value, 0)
				if value <= 0 {
					continue
				}
				for d := 0; d < dim; d++ {
					dQ[(t*heads+h)*dim+d] += g * float64(w[t*heads+h]) * float64(k[s*dim+d])
					dK[s*dim+d] += g * float64(w[t*heads+h]) * float64(q[(t*heads+h)*dim+d])
				}
			}
		}
		loss += coeff * rowLoss[t] / float64(len(entries))
	}
	return loss, rowLoss, dQ, dK, dW
}

func TestIndexerLossMatchesAFloat64ReferenceInBothModes(t *testing.T) {
	context := newContext(t, nil)
	const rows, tokens, heads, dim, teacherHeads, teacherDim, topk = 4, 10, 3, 8, 2, 4, 5
	q, k, w := randomFloats(rows*heads*dim, 70, 1), randomFloats(tokens*dim, 71, 1), randomFloats(rows*heads, 72, 1)
	teacherQ, teacherK := randomFloats(rows*teacherHeads*teacherDim, 73, 2), randomFloats(tokens*teacherDim, 74, 2)
	probs := randomFloats(rows*tokens, 75, 1)
	for i := range probs {
		probs[i] = float32(math.Abs(float64(probs[i]))) + 0.01
	}
	ks, ke, indices := make([]int32, rows), make([]int32, rows), make([]int32, rows*topk)
	for row := 0; row < rows; row++ {
		ks[row], ke[row] = int32(row), int32(6+row)
		for j, token := range []int32{1, -1, 3, 9, 3} {
			indices[row*topk+j] = token + int32(row)
		}
	}
	const scale = 0.7
	rebuilt := func(row int, entries []int) []float64 {
		p := make([]float64, len(entries))
		for h := 0; h < teacherHeads; h++ {
			z, total := make([]float64, len(entries)), 0.0
			for j, s := range entries {
				for d := 0; d < teacherDim; d++ {
					z[j] += scale * float64(teacherQ[(row*teacherHeads+h)*teacherDim+d]) * float64(teacherK[s*teacherDim+d])
				}
				total += math.Exp(z[j])
			}
			for j := range entries {
				p[j] += math.Exp(z[j]) / total / teacherHeads
			}
		}
		return p
	}
	given := func(row int, entries []int) []float64 {
		p, mass := make([]float64, len(entries)), 0.0
		for _, s := range entries {
			mass += float64(probs[row*tokens+s])
		}
		for j, s := range entries {
			p[j] = float64(probs[row*tokens+s]) / mass
		}
		return p
	}
	for _, mode := range []dsa.IndexerLossMode{dsa.IndexerLossDense, dsa.IndexerLossSparse} {
		entries := make([][]int, rows)
		for row := range entries {
			for s := int(ks[row]); s < int(ke[row]); s++ {
				if mode == dsa.IndexerLossDense {
					entries[row] = append(entries[row], s)
				}
			}
			for _, s := range indices[row*topk : (row+1)*topk] {
				if mode == dsa.IndexerLossSparse && s >= ks[row] && s < ke[row] {
					entries[row] = append(entries[row], int(s))
				}
			}
		}
		params := dsa.DefaultIndexerLossParams()
		params.Mode, params.Coeff, params.TeacherScale = mode, 0.5, scale
		teacher := rebuilt
		var selection, teacherQView, teacherKView, probsView *dsa.Tensor
		if mode == dsa.IndexerLossSparse {
			teacher, selection, probsView = given, view(t, indices, rows, topk), view(t, probs, rows, tokens)
		} else {
			teacherQView, teacherKView = view(t, teacherQ, rows, teacherHeads, teacherDim), view(t, teacherK, tokens, teacherDim)
		}
		loss, rowLoss, dQ, dK, dW := referenceIndexerLoss(q, k, w, entries, teacher, heads, dim, 0.5)
		gotLoss, gotRows := []float32{float32(math.NaN())}, make([]float32, rows)
		gotQ, gotK, gotW := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(w))
		err := context.IndexerLoss(&params, view(t, q, rows, heads, dim), view(t, k, tokens, dim), view(t, w, rows, heads),
			view(t, ks, rows), view(t, ke, rows), selection, teacherQView, teacherKView, probsView, view(t, gotLoss),
			view(t, gotRows, rows), view(t, gotQ, rows, heads, dim), view(t, gotK, tokens, dim), view(t, gotW, rows, heads),
			dsa.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		checkClose(t, "loss", gotLoss[0], loss, 1e-5)
		for _, output := range []struct {
			name string
			got  []float32
			want []float64
		}{{"row_loss", gotRows, rowLoss}, {"d_index_q", gotQ, dQ}, {"d_index_k", gotK, dK}, {"d_weights", gotW, dW}} {
			for i := range output.got {
				checkClose(t, fmt.Sprintf("%s[%d] (mode %d)", output.name, i, mode), output.got[i], output.want[i], 1e-4)
			}
		}
	}
	// The teacher given as q and k needs its scale: nil params leave it 0.
	untouched := []float32{5}
	err := context.IndexerLoss(nil, view(t, q, rows, heads, dim), view(t, k, tokens, dim), view(t, w, rows, heads),
		view(t, ks, rows), view(t, ke, rows), nil, view(t, teacherQ, rows, teacherHeads, teacherDim),
		view(t, teacherK, tokens, teacherDim), nil, view(t, untouched), nil, nil, nil, nil, dsa.DefaultStream)
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument ||
		!strings.HasPrefix(message, "params.teacher_scale") {
		t.Fatalf("teacher_scale 0: %v", err)
	}
	if untouched[0] != 5 {
		t.Fatal("loss was written")
	}
}

// forwardF64 is sparse attention of f64 inputs with a sink (DSA_SPEC section 6): out
// [S_q, H, dV] and lse [S_q, H] (+Inf for a row without a valid index) for rows of topk indices
// (negative ones skipped).
func forwardF64(q, kv []float64, indices []int32, sink []float64, heads, dQK, dV, topk int, scale float64) (out, lse []float64) {
	rows := len(indices) / topk
	out, lse = make([]float64, rows*heads*dV), make([]float64, rows*heads)
	for row := 0; row < rows; row++ {
		var valid []int
		for _, s := range indices[row*topk : (row+1)*topk] {
			if s >= 0 {
				valid = append(valid, int(s))
			}
		}
		for h := 0; h < heads; h++ {
			lse[row*heads+h] = math.Inf(1)
			if len(valid) == 0 {
				continue
			}
			z, sum := make([]float64, len(valid)), 0.0
			for j, s := range valid {
				for d := 0; d < dQK; d++ {
					z[j] += scale * q[(row*heads+h)*dQK+d] * kv[s*dQK+d]
				}
				sum += math.Exp(z[j])
			}
			lse[row*heads+h] = math.Log(sum)
			for j, s := range valid {
				for c := 0; c < dV; c++ {
					out[(row*heads+h)*dV+c] += math.Exp(z[j]) / (sum + math.Exp(sink[h])) * kv[s*dQK+c]
				}
			}
		}
	}
	return out, lse
}

func TestSparseAttentionBackwardMatchesFiniteDifferences(t *testing.T) {
	context := newContext(t, nil)
	const rows, heads, dQK, dV, tokens, topk, scale = 3, 2, 8, 4, 6, 4, 0.4
	toF64 := func(values []float32) []float64 {
		result := make([]float64, len(values))
		for i, v := range values {
			result[i] = float64(v)
		}
		return result
	}
	q, kv, dout, sink := randomFloats(rows*heads*dQK, 90, 1), randomFloats(tokens*dQK, 91, 1),
		randomFloats(rows*heads*dV, 92, 1), randomFloats(heads, 93, 1)
	indices := []int32{0, 3, 3, -1, 5, 1, 2, 4, -1, -1, -1, -1} // a repeat; the last row has nothing
	outF64, lseF64 := forwardF64(toF64(q), toF64(kv), indices, toF64(sink), heads, dQK, dV, topk, scale)
	out, lse := make([]float32, len(outF64)), make([]float32, len(lseF64))
	for i := range out {
		out[i] = float32(outF64[i])
	}
	for i := range lse {
		lse[i] = float32(lseF64[i])
	}
	params := dsa.DefaultSparseAttentionBackwardParams()
	params.Scale, params.DV, params.Mode = scale, dV, dsa.SparseAttentionBackwardFast
	bytes, err := context.SparseAttentionBackwardWorkspaceSize(&params, rows, topk, tokens, dQK)
	if err != nil {
		t.Fatal(err)
	}
	dq, dkv, dSink := make([]float32, len(q)), make([]float32, len(kv)), make([]float32, heads)
	err = context.SparseAttentionBackward(&params, view(t, q, rows, heads, dQK), view(t, kv, tokens, dQK),
		view(t, indices, rows, topk), view(t, sink, heads), nil, view(t, out, rows, heads, dV), view(t, lse, rows, heads),
		view(t, dout, rows, heads, dV), view(t, dq, rows, heads, dQK), view(t, dkv, tokens, dQK), view(t, dSink, heads),
		dsa.NewWorkspace(make([]byte, bytes)), dsa.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// d/dx of sum(dout * out) by central differences of the f64 forward, for q, kv and the sink.
	for which, output := range []struct {
		name string
		got  []float32
	}{{"dq", dq}, {"dkv", dkv}, {"d_attn_sink", dSink}} {
		for i := range output.got {
			inputs := [][]float64{toF64(q), toF64(kv), toF64(sink)}
			loss := func() float64 {
				out, _ := forwardF64(inputs[0], inputs[1], indices, inputs[2], heads, dQK, dV, topk, scale)
				total := 0.0
				for j, value := range out {
					total += value * float64(dout[j])
				}
				return total
			}
			inputs[which][i] += 1e-6
			up := loss()
			inputs[which][i] -= 2e-6
			down := loss()
			checkClose(t, fmt.Sprintf("%s[%d]", output.name, i), output.got[i], (up-down)/2e-6, 1e-4)
		}
	}
	for _, value := range dq[2*heads*dQK:] {
		if value != 0 {
			t.Fatalf("dq of the row without a valid index: %g", value)
		}
	}
	params.Scale = 0
	err = context.SparseAttentionBackward(&params, view(t, q, rows, heads, dQK), view(t, kv, tokens, dQK),
		view(t, indices, rows, topk), nil, nil, view(t, out, rows, heads, dV), view(t, lse, rows, heads),
		view(t, dout, rows, heads, dV), view(t, dq, rows, heads, dQK), view(t, dkv, tokens, dQK), nil, nil,
		dsa.DefaultStream)
	if status, message := statusOf(t, err); status != dsa.StatusInvalidArgument || !strings.HasPrefix(message, "params.scale") {
		t.Fatalf("scale 0: %v", err)
	}
}
