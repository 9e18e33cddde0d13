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

import (
	"fmt"
	"runtime"
	"unsafe"
)

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

// TopkOrder is the output order of Topk (DSA_TOPK_ORDER_*); the selected set never depends on it.
type TopkOrder uint32

const (
	// TopkOrderUnspecified is a deterministic order that is otherwise unspecified (the fastest).
	TopkOrderUnspecified TopkOrder = C.DSA_TOPK_ORDER_UNSPECIFIED
	// TopkOrderScore is score descending, ties by ascending index; NaN-scored (forced) tokens
	// last, by index.
	TopkOrderScore TopkOrder = C.DSA_TOPK_ORDER_SCORE
	// TopkOrderIndex is ascending token index.
	TopkOrderIndex TopkOrder = C.DSA_TOPK_ORDER_INDEX
)

// TopkParams are the parameters of Topk (dsa_topk_params_t); nil means the defaults.
type TopkParams struct {
	K        int32     // tokens selected per row (default 2048; >= 1, may exceed N)
	Order    TopkOrder // default TopkOrderUnspecified
	NSink    int32     // the first NSink tokens of each row's window are always selected (default 0)
	NLocal   int32     // the last NLocal tokens of each row's window are always selected (default 0)
	PageSize int32     // tokens per page of the block table (default 64; >= 1)
}

// DefaultTopkParams are the library's defaults.
func DefaultTopkParams() TopkParams {
	var raw C.dsa_topk_params_t
	C.dsa_topk_params_init(&raw)
	return TopkParams{K: int32(raw.k), Order: TopkOrder(raw.order), NSink: int32(raw.n_sink),
		NLocal: int32(raw.n_local), PageSize: int32(raw.page_size)}
}

func (p *TopkParams) toC() *C.dsa_topk_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_topk_params_t
	C.dsa_topk_params_init(&raw)
	raw.k = C.int32_t(p.K)
	raw.order = C.dsa_topk_order_t(p.Order)
	raw.n_sink = C.int32_t(p.NSink)
	raw.n_local = C.int32_t(p.NLocal)
	raw.page_size = C.int32_t(p.PageSize)
	return &raw
}

// IndexerParams are the parameters of IndexerLogits and IndexerLogitsPaged
// (dsa_indexer_params_t); there are no options yet, and nil means the defaults.
type IndexerParams struct{}

// DefaultIndexerParams are the library's defaults.
func DefaultIndexerParams() IndexerParams { return IndexerParams{} }

func (p *IndexerParams) toC() *C.dsa_indexer_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_indexer_params_t
	C.dsa_indexer_params_init(&raw)
	return &raw
}

// SparseAttentionParams are the parameters of SparseAttention and SparseAttentionPaged
// (dsa_sparse_attention_params_t). They are required: Scale has no default.
type SparseAttentionParams struct {
	// Scale is the softmax scale applied to q.k: finite and non-zero, the default 0 is rejected
	// (DeepSeek-V3.2 uses 0.13523378, not d_qk^-0.5).
	Scale float32
	DV    int32 // value width: the first DV dims of each KV entry (default 512; 1 <= DV <= d_qk)
}

// DefaultSparseAttentionParams are the library's defaults (Scale 0 must be replaced).
func DefaultSparseAttentionParams() SparseAttentionParams {
	var raw C.dsa_sparse_attention_params_t
	C.dsa_sparse_attention_params_init(&raw)
	return SparseAttentionParams{Scale: float32(raw.scale), DV: int32(raw.d_v)}
}

func (p *SparseAttentionParams) toC() *C.dsa_sparse_attention_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_sparse_attention_params_t
	C.dsa_sparse_attention_params_init(&raw)
	raw.scale = C.float(p.Scale)
	raw.d_v = C.int32_t(p.DV)
	return &raw
}

// IndexerLossMode is which token set the distributions of IndexerLoss live on
// (DSA_INDEXER_LOSS_*).
type IndexerLossMode uint32

const (
	// IndexerLossDense is the dense warm-up: every token of the row's window.
	IndexerLossDense IndexerLossMode = C.DSA_INDEXER_LOSS_DENSE
	// IndexerLossSparse is the sparse stage: the row's selected tokens inside the window,
	// renormalised.
	IndexerLossSparse IndexerLossMode = C.DSA_INDEXER_LOSS_SPARSE
)

// IndexerLossParams are the parameters of IndexerLoss (dsa_indexer_loss_params_t); nil means
// the defaults, which only serve a teacher given as probabilities (TeacherScale has no default).
type IndexerLossParams struct {
	Mode  IndexerLossMode // default IndexerLossDense
	Coeff float32         // loss weight (default 1; finite)
	// TeacherScale is the softmax scale of the teacher's q.k, required with teacherQ (the default
	// 0 is rejected); ignored with teacherProbs.
	TeacherScale float32
}

// DefaultIndexerLossParams are the library's defaults (TeacherScale 0 must be replaced when the
// teacher is given as q and k).
func DefaultIndexerLossParams() IndexerLossParams {
	var raw C.dsa_indexer_loss_params_t
	C.dsa_indexer_loss_params_init(&raw)
	return IndexerLossParams{Mode: IndexerLossMode(raw.mode), Coeff: float32(raw.coeff),
		TeacherScale: float32(raw.teacher_scale)}
}

func (p *IndexerLossParams) toC() *C.dsa_indexer_loss_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_indexer_loss_params_t
	C.dsa_indexer_loss_params_init(&raw)
	raw.mode = C.dsa_indexer_loss_mode_t(p.Mode)
	raw.coeff = C.float(p.Coeff)
	raw.teacher_scale = C.float(p.TeacherScale)
	return &raw
}

// SparseAttentionBackwardMode is how SparseAttentionBackward reduces dkv
// (DSA_SPARSE_ATTENTION_BACKWARD_*).
type SparseAttentionBackwardMode uint32

const (
	// SparseAttentionBackwardDeterministic is bitwise reproducible run to run (and, on the CPU,
	// for any thread count); the default.
	SparseAttentionBackwardDeterministic SparseAttentionBackwardMode = C.DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC
	// SparseAttentionBackwardFast is the fastest reduction (f32 atomics on CUDA); on the CPU the
	// same as SparseAttentionBackwardDeterministic.
	SparseAttentionBackwardFast SparseAttentionBackwardMode = C.DSA_SPARSE_ATTENTION_BACKWARD_FAST
)

// SparseAttentionBackwardParams are the parameters of SparseAttentionBackward
// (dsa_sparse_attention_backward_params_t). They are required: Scale has no default.
type SparseAttentionBackwardParams struct {
	Scale float32                     // the forward's softmax scale: finite and non-zero (the default 0 is rejected)
	DV    int32                       // the forward's value width (default 512; 1 <= DV <= d_qk)
	Mode  SparseAttentionBackwardMode // default SparseAttentionBackwardDeterministic
}

// DefaultSparseAttentionBackwardParams are the library's defaults (Scale 0 must be replaced).
func DefaultSparseAttentionBackwardParams() SparseAttentionBackwardParams {
	var raw C.dsa_sparse_attention_backward_params_t
	C.dsa_sparse_attention_backward_params_init(&raw)
	return SparseAttentionBackwardParams{Scale: float32(raw.scale), DV: int32(raw.d_v),
		Mode: SparseAttentionBackwardMode(raw.mode)}
}

func (p *SparseAttentionBackwardParams) toC() *C.dsa_sparse_attention_backward_params_t {
	if p == nil {
		return nil
	}
	var raw C.dsa_sparse_attention_backward_params_t
	C.dsa_sparse_attention_backward_params_init(&raw)
	raw.scale = C.float(p.Scale)
	raw.d_v = C.int32_t(p.DV)
	raw.mode = C.dsa_sparse_attention_backward_mode_t(p.Mode)
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

// HadamardQuantizeFP8 is Hadamard and QuantizeFP8 in one pass: every row of x [..., N] (f32,
// bf16 or f16; N a power of two up to 1024) rotated in f32 and quantised to codes q [..., N] and
// f32 scales [..., N/GroupSize], bitwise the two ops with an f32 temporary in between
// (dsa_hadamard_quantize_fp8; dsa.h has the layouts and statuses). nil params are the defaults.
func (c *Context) HadamardQuantizeFP8(hadamardParams *HadamardParams, quantizeParams *QuantizeFP8Params,
	x, q, scales *Tensor, stream Stream) error {
	xLayout, xData := x.parts()
	qLayout, qData := q.parts()
	scalesLayout, scalesData := scales.parts()
	var message *C.char
	status := C.dsa_go_hadamard_quantize_fp8(c.raw, hadamardParams.toC(), quantizeParams.toC(), xLayout, xData,
		qLayout, qData, scalesLayout, scalesData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// Topk selects, for every row of scores f32 [R, N], the indices i32 [R, k] of the k best tokens
// of the window [rowStarts, rowEnds) (nil: 0 and N), larger score first and equal scores by
// smaller index, -1 padding at the end; with a blockTable i32 [B, max_pages] (or nil), physical
// slots instead (dsa_topk; dsa.h has sinks, locals and statuses).
func (c *Context) Topk(params *TopkParams, scores, rowStarts, rowEnds, blockTable, indices *Tensor,
	stream Stream) error {
	scoresLayout, scoresData := scores.parts()
	rowStartsLayout, rowStartsData := rowStarts.parts()
	rowEndsLayout, rowEndsData := rowEnds.parts()
	blockTableLayout, blockTableData := blockTable.parts()
	indicesLayout, indicesData := indices.parts()
	var message *C.char
	status := C.dsa_go_topk(c.raw, params.toC(), scoresLayout, scoresData, rowStartsLayout, rowStartsData,
		rowEndsLayout, rowEndsData, blockTableLayout, blockTableData, indicesLayout, indicesData,
		C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// IndexerLogits computes lightning-indexer logits of a ragged prefill: q e4m3 [S_q, H_I, D_I],
// weights f32 [S_q, H_I], k e4m3 [S_kv, D_I], kScale f32 [S_kv] and windows ks, ke i32 [S_q]
// into logits f32 [S_q, S_kv], -inf outside each window (dsa_indexer_logits).
func (c *Context) IndexerLogits(params *IndexerParams, q, weights, k, kScale, ks, ke, logits *Tensor,
	stream Stream) error {
	qLayout, qData := q.parts()
	weightsLayout, weightsData := weights.parts()
	kLayout, kData := k.parts()
	kScaleLayout, kScaleData := kScale.parts()
	ksLayout, ksData := ks.parts()
	keLayout, keData := ke.parts()
	logitsLayout, logitsData := logits.parts()
	var message *C.char
	status := C.dsa_go_indexer_logits(c.raw, params.toC(), qLayout, qData, weightsLayout, weightsData, kLayout, kData,
		kScaleLayout, kScaleData, ksLayout, ksData, keLayout, keData, logitsLayout, logitsData, C.uintptr_t(stream),
		&message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// IndexerLogitsPaged computes lightning-indexer logits of a decode step over the paged key cache:
// q e4m3 [B, n_next, H_I, D_I], weights f32 [B*n_next, H_I], kCache u8 [num_pages, 64*(D_I+4)],
// blockTable i32 [B, max_pages] and contextLens i32 [B] into logits f32 [B*n_next, max_context]
// (dsa_indexer_logits_paged).
func (c *Context) IndexerLogitsPaged(params *IndexerParams, q, weights, kCache, blockTable, contextLens,
	logits *Tensor, stream Stream) error {
	qLayout, qData := q.parts()
	weightsLayout, weightsData := weights.parts()
	kCacheLayout, kCacheData := kCache.parts()
	blockTableLayout, blockTableData := blockTable.parts()
	contextLensLayout, contextLensData := contextLens.parts()
	logitsLayout, logitsData := logits.parts()
	var message *C.char
	status := C.dsa_go_indexer_logits_paged(c.raw, params.toC(), qLayout, qData, weightsLayout, weightsData,
		kCacheLayout, kCacheData, blockTableLayout, blockTableData, contextLensLayout, contextLensData, logitsLayout,
		logitsData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// IndexerCacheWrite quantises keys k [T, D_I] (f32 or bf16) and scatters them into the paged
// indexer key cache u8 [num_pages, 64*(D_I+4)] at the slots slotMapping i64 [T]; negative or
// out-of-range slots are skipped (dsa_indexer_cache_write).
func (c *Context) IndexerCacheWrite(k, slotMapping, kCache *Tensor, stream Stream) error {
	kLayout, kData := k.parts()
	slotMappingLayout, slotMappingData := slotMapping.parts()
	kCacheLayout, kCacheData := kCache.parts()
	var message *C.char
	status := C.dsa_go_indexer_cache_write(c.raw, kLayout, kData, slotMappingLayout, slotMappingData, kCacheLayout,
		kCacheData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// SparseAttention is sparse MLA attention, prefill form: q bf16 [S_q, H_q, d_qk], kv bf16
// [S_kv, d_qk], indices i32 [S_q, k] (invalid ones skipped), attnSink f32 [H_q] or nil,
// topkLength i32 [S_q] or nil, into out bf16 [S_q, H_q, d_v], lse f32 [S_q, H_q] and, unless nil,
// maxLogits f32 [S_q, H_q] (dsa_sparse_attention). params must not be nil: Scale has no default.
func (c *Context) SparseAttention(params *SparseAttentionParams, q, kv, indices, attnSink, topkLength, out, lse,
	maxLogits *Tensor, stream Stream) error {
	qLayout, qData := q.parts()
	kvLayout, kvData := kv.parts()
	indicesLayout, indicesData := indices.parts()
	attnSinkLayout, attnSinkData := attnSink.parts()
	topkLengthLayout, topkLengthData := topkLength.parts()
	outLayout, outData := out.parts()
	lseLayout, lseData := lse.parts()
	maxLogitsLayout, maxLogitsData := maxLogits.parts()
	var message *C.char
	status := C.dsa_go_sparse_attention(c.raw, params.toC(), qLayout, qData, kvLayout, kvData, indicesLayout,
		indicesData, attnSinkLayout, attnSinkData, topkLengthLayout, topkLengthData, outLayout, outData, lseLayout,
		lseData, maxLogitsLayout, maxLogitsData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// SparseAttentionPaged is sparse MLA attention over a paged KV cache: q bf16 [B, s_q, H_q, d_qk],
// kvCache bf16 [num_pages, page_size, d_qk] or the FP8 MLA cache u8 [num_pages, page_size, 656],
// indices i32 [B, s_q, k] of physical slots, attnSink f32 [H_q] or nil, topkLength i32 [B, s_q]
// or nil, into out bf16 [B, s_q, H_q, d_v] and lse f32 [B, s_q, H_q]
// (dsa_sparse_attention_paged).
func (c *Context) SparseAttentionPaged(params *SparseAttentionParams, q, kvCache, indices, attnSink, topkLength,
	out, lse *Tensor, stream Stream) error {
	qLayout, qData := q.parts()
	kvCacheLayout, kvCacheData := kvCache.parts()
	indicesLayout, indicesData := indices.parts()
	attnSinkLayout, attnSinkData := attnSink.parts()
	topkLengthLayout, topkLengthData := topkLength.parts()
	outLayout, outData := out.parts()
	lseLayout, lseData := lse.parts()
	var message *C.char
	status := C.dsa_go_sparse_attention_paged(c.raw, params.toC(), qLayout, qData, kvCacheLayout, kvCacheData,
		indicesLayout, indicesData, attnSinkLayout, attnSinkData, topkLengthLayout, topkLengthData, outLayout, outData,
		lseLayout, lseData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// MLACacheWrite writes T tokens into the FP8 MLA cache u8 [num_pages, page_size, 656]: cKV
// [T, 512] and kPE [T, 64] (both f32 or both bf16) at the slots slotMapping i64 [T];
// out-of-range slots are skipped (dsa_mla_cache_write).
func (c *Context) MLACacheWrite(cKV, kPE, slotMapping, kvCache *Tensor, stream Stream) error {
	cKVLayout, cKVData := cKV.parts()
	kPELayout, kPEData := kPE.parts()
	slotMappingLayout, slotMappingData := slotMapping.parts()
	kvCacheLayout, kvCacheData := kvCache.parts()
	var message *C.char
	status := C.dsa_go_mla_cache_write(c.raw, cKVLayout, cKVData, kPELayout, kPEData, slotMappingLayout,
		slotMappingData, kvCacheLayout, kvCacheData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// Workspace is scratch memory of the fused ops (IndexerTopk, Attention, ...) on the context's
// device: the C workspace and workspace_bytes. A nil *Workspace lets the library allocate scratch
// for the call. libdsa refuses a workspace that is not aligned to 16 bytes or is smaller than the
// matching *WorkspaceSize query.
type Workspace struct {
	host    []byte  // Go memory, or nil
	address uintptr // device memory when host is nil
	bytes   int
	device  Device
}

// NewWorkspace is host memory, for CPU contexts (Go allocates 16 bytes or more 16-byte aligned).
func NewWorkspace(memory []byte) *Workspace {
	return &Workspace{host: memory, bytes: len(memory), device: CPU}
}

// NewDeviceWorkspace is memory at address on device (e.g. a CUDA allocation) of the given size.
func NewDeviceWorkspace(address uintptr, bytes int, device Device) *Workspace {
	return &Workspace{address: address, bytes: bytes, device: device}
}

// workspaceParts is how a workspace is passed to a dsa_go_* wrapper; a workspace on another
// device than the context's is refused here, because libdsa cannot tell.
func (c *Context) workspaceParts(w *Workspace) (unsafe.Pointer, C.uintptr_t, C.size_t, error) {
	if w == nil {
		return nil, 0, 0, nil
	}
	device, err := c.Device()
	if err != nil {
		return nil, 0, 0, err
	}
	if device != w.device {
		return nil, 0, 0, &Error{StatusDeviceMismatch,
			fmt.Sprintf("workspace: on %+v, the context on %+v", w.device, device)}
	}
	if len(w.host) > 0 {
		return unsafe.Pointer(&w.host[0]), 0, C.size_t(w.bytes), nil
	}
	return nil, C.uintptr_t(w.address), C.size_t(w.bytes), nil
}

// IndexerTopkWorkspaceSize is the scratch IndexerTopk and IndexerTopkPaged need for numQueries
// query rows over numTokens key tokens (S_kv; paged: max_pages*64), in bytes
// (dsa_indexer_topk_workspace_size).
func (c *Context) IndexerTopkWorkspaceSize(numQueries, numTokens int64) (int, error) {
	var bytes C.size_t
	var message *C.char
	status := C.dsa_go_indexer_topk_workspace_size(c.raw, C.int64_t(numQueries), C.int64_t(numTokens), &bytes,
		&message)
	runtime.KeepAlive(c)
	return int(bytes), check(status, message)
}

// IndexerTopk is the fused lightning indexer + top-k of a ragged prefill: the indices i32
// [S_q, k] that IndexerLogits then Topk (windows [ks, ke)) would give, without the [S_q, S_kv]
// logits (dsa_indexer_topk). workspace may be nil.
func (c *Context) IndexerTopk(indexerParams *IndexerParams, topkParams *TopkParams, q, weights, k, kScale, ks, ke,
	indices *Tensor, workspace *Workspace, stream Stream) error {
	workspaceData, workspaceAddress, workspaceBytes, err := c.workspaceParts(workspace)
	if err != nil {
		return err
	}
	qLayout, qData := q.parts()
	weightsLayout, weightsData := weights.parts()
	kLayout, kData := k.parts()
	kScaleLayout, kScaleData := kScale.parts()
	ksLayout, ksData := ks.parts()
	keLayout, keData := ke.parts()
	indicesLayout, indicesData := indices.parts()
	var message *C.char
	status := C.dsa_go_indexer_topk(c.raw, indexerParams.toC(), topkParams.toC(), qLayout, qData, weightsLayout,
		weightsData, kLayout, kData, kScaleLayout, kScaleData, ksLayout, ksData, keLayout, keData, indicesLayout,
		indicesData, workspaceData, workspaceAddress, workspaceBytes, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	runtime.KeepAlive(workspace)
	return check(status, message)
}

// IndexerTopkPaged is the fused lightning indexer + top-k of a paged decode step: token positions
// into indices and/or physical cache slots into slots (either may be nil, not both; i32
// [B*n_next, k]), as IndexerLogitsPaged then Topk would give (dsa_indexer_topk_paged).
func (c *Context) IndexerTopkPaged(indexerParams *IndexerParams, topkParams *TopkParams, q, weights, kCache,
	blockTable, contextLens, indices, slots *Tensor, workspace *Workspace, stream Stream) error {
	workspaceData, workspaceAddress, workspaceBytes, err := c.workspaceParts(workspace)
	if err != nil {
		return err
	}
	qLayout, qData := q.parts()
	weightsLayout, weightsData := weights.parts()
	kCacheLayout, kCacheData := kCache.parts()
	blockTableLayout, blockTableData := blockTable.parts()
	contextLensLayout, contextLensData := contextLens.parts()
	indicesLayout, indicesData := indices.parts()
	slotsLayout, slotsData := slots.parts()
	var message *C.char
	status := C.dsa_go_indexer_topk_paged(c.raw, indexerParams.toC(), topkParams.toC(), qLayout, qData,
		weightsLayout, weightsData, kCacheLayout, kCacheData, blockTableLayout, blockTableData, contextLensLayout,
		contextLensData, indicesLayout, indicesData, slotsLayout, slotsData, workspaceData, workspaceAddress,
		workspaceBytes, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	runtime.KeepAlive(workspace)
	return check(status, message)
}

// AttentionWorkspaceSize is the scratch Attention and AttentionPaged need for numQueries query
// rows over numTokens key tokens (paged: max_pages*64) with the K of topkParams (nil: 2048), in
// bytes (dsa_attention_workspace_size).
func (c *Context) AttentionWorkspaceSize(topkParams *TopkParams, numQueries, numTokens int64) (int, error) {
	var bytes C.size_t
	var message *C.char
	status := C.dsa_go_attention_workspace_size(c.raw, topkParams.toC(), C.int64_t(numQueries),
		C.int64_t(numTokens), &bytes, &message)
	runtime.KeepAlive(c)
	return int(bytes), check(status, message)
}

// Attention is one DSA layer step of a ragged prefill: indexer (indexQ, indexWeights, indexK,
// indexKScale, windows [ks, ke)) -> top-k -> sparse MLA attention (q, kv, attnSink or nil) into
// out and lse; selected (i32 [S_q, k] or nil) receives the indices used (dsa_attention).
// attentionParams must not be nil: Scale has no default.
func (c *Context) Attention(indexerParams *IndexerParams, topkParams *TopkParams,
	attentionParams *SparseAttentionParams, indexQ, indexWeights, indexK, indexKScale, ks, ke, q, kv, attnSink, out,
	lse, selected *Tensor, workspace *Workspace, stream Stream) error {
	workspaceData, workspaceAddress, workspaceBytes, err := c.workspaceParts(workspace)
	if err != nil {
		return err
	}
	indexQLayout, indexQData := indexQ.parts()
	indexWeightsLayout, indexWeightsData := indexWeights.parts()
	indexKLayout, indexKData := indexK.parts()
	indexKScaleLayout, indexKScaleData := indexKScale.parts()
	ksLayout, ksData := ks.parts()
	keLayout, keData := ke.parts()
	qLayout, qData := q.parts()
	kvLayout, kvData := kv.parts()
	attnSinkLayout, attnSinkData := attnSink.parts()
	outLayout, outData := out.parts()
	lseLayout, lseData := lse.parts()
	selectedLayout, selectedData := selected.parts()
	var message *C.char
	status := C.dsa_go_attention(c.raw, indexerParams.toC(), topkParams.toC(), attentionParams.toC(), indexQLayout,
		indexQData, indexWeightsLayout, indexWeightsData, indexKLayout, indexKData, indexKScaleLayout, indexKScaleData,
		ksLayout, ksData, keLayout, keData, qLayout, qData, kvLayout, kvData, attnSinkLayout, attnSinkData, outLayout,
		outData, lseLayout, lseData, selectedLayout, selectedData, workspaceData, workspaceAddress, workspaceBytes,
		C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	runtime.KeepAlive(workspace)
	return check(status, message)
}

// AttentionPaged is one DSA layer step of a paged decode: fused indexer + top-k over the indexer
// key cache (blockTable, contextLens) -> physical slots -> sparse MLA attention over kvCache
// (pages of 64 tokens, bf16 or the FP8 MLA cache) into out and lse; selected (i32 [B*n_next, k]
// or nil) receives the slots used (dsa_attention_paged).
func (c *Context) AttentionPaged(indexerParams *IndexerParams, topkParams *TopkParams,
	attentionParams *SparseAttentionParams, indexQ, indexWeights, indexKCache, blockTable, contextLens, q, kvCache,
	attnSink, out, lse, selected *Tensor, workspace *Workspace, stream Stream) error {
	workspaceData, workspaceAddress, workspaceBytes, err := c.workspaceParts(workspace)
	if err != nil {
		return err
	}
	indexQLayout, indexQData := indexQ.parts()
	indexWeightsLayout, indexWeightsData := indexWeights.parts()
	indexKCacheLayout, indexKCacheData := indexKCache.parts()
	blockTableLayout, blockTableData := blockTable.parts()
	contextLensLayout, contextLensData := contextLens.parts()
	qLayout, qData := q.parts()
	kvCacheLayout, kvCacheData := kvCache.parts()
	attnSinkLayout, attnSinkData := attnSink.parts()
	outLayout, outData := out.parts()
	lseLayout, lseData := lse.parts()
	selectedLayout, selectedData := selected.parts()
	var message *C.char
	status := C.dsa_go_attention_paged(c.raw, indexerParams.toC(), topkParams.toC(), attentionParams.toC(),
		indexQLayout, indexQData, indexWeightsLayout, indexWeightsData, indexKCacheLayout, indexKCacheData,
		blockTableLayout, blockTableData, contextLensLayout, contextLensData, qLayout, qData, kvCacheLayout,
		kvCacheData, attnSinkLayout, attnSinkData, outLayout, outData, lseLayout, lseData, selectedLayout,
		selectedData, workspaceData, workspaceAddress, workspaceBytes, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	runtime.KeepAlive(workspace)
	return check(status, message)
}

// IndexerLoss is the indexer distillation loss, forward and backward (dsa_indexer_loss): the KL
// divergence of the student softmax over I = sum_h w_h ReLU(indexQ . indexK) from the teacher
// (the head mean of softmax(TeacherScale * teacherQ . teacherK), or teacherProbs renormalised),
// per row over its window (dense) or its in-window indices (sparse), and the gradients of
// loss = Coeff * mean over active rows. Pass teacherQ and teacherK, or teacherProbs (the others
// nil); indices is nil in dense mode; each output may be nil. dsa.h has shapes and statuses.
func (c *Context) IndexerLoss(params *IndexerLossParams, indexQ, indexK, weights, ks, ke, indices, teacherQ,
	teacherK, teacherProbs, loss, rowLoss, dIndexQ, dIndexK, dWeights *Tensor, stream Stream) error {
	indexQLayout, indexQData := indexQ.parts()
	indexKLayout, indexKData := indexK.parts()
	weightsLayout, weightsData := weights.parts()
	ksLayout, ksData := ks.parts()
	keLayout, keData := ke.parts()
	indicesLayout, indicesData := indices.parts()
	teacherQLayout, teacherQData := teacherQ.parts()
	teacherKLayout, teacherKData := teacherK.parts()
	teacherProbsLayout, teacherProbsData := teacherProbs.parts()
	lossLayout, lossData := loss.parts()
	rowLossLayout, rowLossData := rowLoss.parts()
	dIndexQLayout, dIndexQData := dIndexQ.parts()
	dIndexKLayout, dIndexKData := dIndexK.parts()
	dWeightsLayout, dWeightsData := dWeights.parts()
	var message *C.char
	status := C.dsa_go_indexer_loss(c.raw, params.toC(), indexQLayout, indexQData, indexKLayout, indexKData,
		weightsLayout, weightsData, ksLayout, ksData, keLayout, keData, indicesLayout, indicesData, teacherQLayout,
		teacherQData, teacherKLayout, teacherKData, teacherProbsLayout, teacherProbsData, lossLayout, lossData,
		rowLossLayout, rowLossData, dIndexQLayout, dIndexQData, dIndexKLayout, dIndexKData, dWeightsLayout,
		dWeightsData, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	return check(status, message)
}

// SparseAttentionBackwardWorkspaceSize is the scratch SparseAttentionBackward needs for
// numQueries rows of topk indices over numTokens KV rows of dQK values, in bytes
// (dsa_sparse_attention_backward_workspace_size); params may be nil (the defaults).
func (c *Context) SparseAttentionBackwardWorkspaceSize(params *SparseAttentionBackwardParams, numQueries, topk,
	numTokens, dQK int64) (int, error) {
	var bytes C.size_t
	var message *C.char
	status := C.dsa_go_sparse_attention_backward_workspace_size(c.raw, params.toC(), C.int64_t(numQueries),
		C.int64_t(topk), C.int64_t(numTokens), C.int64_t(dQK), &bytes, &message)
	runtime.KeepAlive(c)
	return int(bytes), check(status, message)
}

// SparseAttentionBackward is the backward pass of SparseAttention
// (dsa_sparse_attention_backward): from q [S_q, H_q, d_qk] and kv [S_kv, d_qk] (bf16 or f32),
// indices i32 [S_q, k], attnSink f32 [H_q] or nil, topkLength i32 [S_q] or nil, the forward's out
// and lse, and dout [S_q, H_q, d_v], it writes dq [S_q, H_q, d_qk] (f32 or bf16), dkv f32
// [S_kv, d_qk] and, unless nil (it must be nil without a sink), dAttnSink f32 [H_q]. params must
// not be nil: Scale has no default. workspace may be nil.
func (c *Context) SparseAttentionBackward(params *SparseAttentionBackwardParams, q, kv, indices, attnSink, topkLength,
	out, lse, dout, dq, dkv, dAttnSink *Tensor, workspace *Workspace, stream Stream) error {
	workspaceData, workspaceAddress, workspaceBytes, err := c.workspaceParts(workspace)
	if err != nil {
		return err
	}
	qLayout, qData := q.parts()
	kvLayout, kvData := kv.parts()
	indicesLayout, indicesData := indices.parts()
	attnSinkLayout, attnSinkData := attnSink.parts()
	topkLengthLayout, topkLengthData := topkLength.parts()
	outLayout, outData := out.parts()
	lseLayout, lseData := lse.parts()
	doutLayout, doutData := dout.parts()
	dqLayout, dqData := dq.parts()
	dkvLayout, dkvData := dkv.parts()
	dAttnSinkLayout, dAttnSinkData := dAttnSink.parts()
	var message *C.char
	status := C.dsa_go_sparse_attention_backward(c.raw, params.toC(), qLayout, qData, kvLayout, kvData, indicesLayout,
		indicesData, attnSinkLayout, attnSinkData, topkLengthLayout, topkLengthData, outLayout, outData, lseLayout,
		lseData, doutLayout, doutData, dqLayout, dqData, dkvLayout, dkvData, dAttnSinkLayout, dAttnSinkData,
		workspaceData, workspaceAddress, workspaceBytes, C.uintptr_t(stream), &message)
	runtime.KeepAlive(c)
	runtime.KeepAlive(workspace)
	return check(status, message)
}
