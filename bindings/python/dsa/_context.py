"""The context and one method per op.

Adding an op: a method that builds its params with _params, allocates missing outputs with
_arrays.empty (shapes from the input views), and calls _run with every tensor named as in dsa.h
(None for an optional tensor passes NULL; ops without params pass params None).
"""
import collections
import ctypes

from . import _arrays
from ._library import (
    ContextOptions, DeviceType, DsaError, DType, HadamardParams, IndexerLossMode, IndexerLossParams, IndexerParams,
    QuantizeFp8Params, ScaleFormat, SparseAttentionBackwardMode, SparseAttentionBackwardParams, SparseAttentionParams,
    Status, TopkOrder, TopkParams, check, lib,
)

Device = collections.namedtuple("Device", ["type", "id"])
Device.__doc__ = "Where a context runs: type 'cpu' or 'cuda', and the CUDA ordinal."

IndexerLoss = collections.namedtuple("IndexerLoss", ["loss", "row_loss", "d_index_q", "d_index_k", "d_weights"])
IndexerLoss.__doc__ = "The outputs of Context.indexer_loss; None for an output that was not asked for."


def _params(structure, init, **fields):
    """A params struct with the library's defaults, then every field that is not None."""
    params = structure()
    check(init(ctypes.byref(params)))
    for name, value in fields.items():
        if value is not None:
            setattr(params, name, value)
    return params


def _shape(tensor):
    return tuple(tensor.shape[: tensor.ndim])


def _quantize_params(group_size, scale_format, amax_floor):
    """The QuantizeFp8Params of quantize_fp8 and hadamard_quantize_fp8; scale_format may be a name."""
    if isinstance(scale_format, str):
        scale_format = ScaleFormat[scale_format.upper()]
    return _params(QuantizeFp8Params, lib.dsa_quantize_fp8_params_init,
                   group_size=group_size, scale_format=scale_format, amax_floor=amax_floor)


def _quantized_like(x, params, stream):
    """New (q, scales) for quantising x: e4m3 codes of x's shape, f32 scales [..., N / group_size]."""
    shape = _shape(_arrays.view("x", x, stream=stream)[0])
    last = shape[-1] if shape else 0
    groups = last // params.group_size if params.group_size > 0 else 0  # else libdsa explains
    return _arrays.empty(x, shape, "float8_e4m3fn"), _arrays.empty(x, shape[:-1] + (groups,), "float32")


def _topk_params(k, order, n_sink, n_local, page_size):
    """dsa_topk_params_t; order: TopkOrder, or "unspecified" / "score" / "index"."""
    if isinstance(order, str):
        order = TopkOrder[order.upper()]
    return _params(TopkParams, lib.dsa_topk_params_init, k=k, order=order, n_sink=n_sink, n_local=n_local,
                   page_size=page_size)


def _optional_output(request, allocate):
    """An optional output argument: None or False pass NULL, True allocates one, an array is used."""
    if request is None or request is False:
        return None
    return allocate() if request is True else request


class Context:
    """A libdsa context: device, CPU thread pool, cached device properties. Ops are its methods.
    Any number of threads may call ops on one context at once; close() (or leaving a `with`
    block) destroys it, and must not race with them."""

    def __init__(self, device="cpu", device_id=0, num_threads=0):
        options = ContextOptions()
        check(lib.dsa_context_options_init(ctypes.byref(options)))
        options.device_type = DeviceType[device.upper()] if isinstance(device, str) else device
        options.device_id = device_id
        options.num_threads = num_threads
        handle = ctypes.c_void_p()
        check(lib.dsa_context_create(ctypes.byref(handle), ctypes.byref(options)))
        self._handle = handle

    def close(self):
        """Destroys the context; later ops fail with INVALID_ARGUMENT. Idempotent."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.dsa_context_destroy(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def __del__(self):
        self.close()

    @property
    def device(self):
        """The Device the context runs on."""
        device_type, device_id = ctypes.c_int32(), ctypes.c_int32()
        check(lib.dsa_context_device(self._handle, ctypes.byref(device_type), ctypes.byref(device_id)))
        return Device(DeviceType(device_type.value).name.lower(), device_id.value)

    @property
    def num_threads(self):
        """The number of CPU threads the context uses (>= 1)."""
        threads = ctypes.c_int32()
        check(lib.dsa_context_num_threads(self._handle, ctypes.byref(threads)))
        return threads.value

    def _run(self, function, params, tensors, stream, trailing=()):
        """Calls `function(context, *params, *tensors, *trailing, stream)`. params: a params
        struct, a tuple of them, or None (an op without params); `tensors` are (name, array,
        writable) in the C argument order, and an array None passes NULL (an optional tensor);
        `trailing` are further C arguments (a workspace and its size)."""
        views = [
            None if array is None else _arrays.view(name, array, writable=writable, stream=stream)
            for name, array, writable in tensors
        ]
        params = () if params is None else params if isinstance(params, tuple) else (params,)
        arguments = [ctypes.byref(structure) for structure in params]
        arguments += [None if view is None else ctypes.byref(view[0]) for view in views]
        check(function(self._handle, *arguments, *trailing, stream))

    def _workspace(self, workspace, stream):
        """The C (workspace, workspace_bytes) of a contiguous array of any dtype on the context's
        device, and the object that keeps it alive; None passes NULL (the library allocates)."""
        if workspace is None:
            return (None, 0), None
        tensor, keep_alive = _arrays.view("workspace", workspace, writable=True, stream=stream)
        shape = _shape(tensor)
        if list(tensor.strides[: tensor.ndim]) != _arrays.contiguous_strides(shape):
            raise DsaError(Status.LAYOUT_UNSUPPORTED, "workspace: must be contiguous")
        device = Device(DeviceType(tensor.device_type).name.lower(), tensor.device_id)
        if device != self.device:  # libdsa cannot tell where the memory is
            raise DsaError(Status.DEVICE_MISMATCH, f"workspace: on {device}, the context on {self.device}")
        elements = 1
        for extent in shape:
            elements *= extent
        return (tensor.data, elements * lib.dsa_dtype_size(tensor.dtype)), keep_alive

    def quantize_fp8(self, x, *, group_size=None, scale_format=None, amax_floor=None, out=None, stream=None):
        """FP8 block quantisation (dsa_quantize_fp8) of x [..., N] (f32, bf16 or f16).

        Returns (q, scales): e4m3 codes [..., N] (float8_e4m3fn, or uint8 where the array library
        has no FP8 dtype) and f32 scales [..., N / group_size], allocated like x unless
        out=(q, scales) is given. scale_format: ScaleFormat, or "f32" / "ue8m0".
        """
        params = _quantize_params(group_size, scale_format, amax_floor)
        q, scales = out if out is not None else _quantized_like(x, params, stream)
        self._run(lib.dsa_quantize_fp8, params, [("x", x, False), ("q", q, True), ("scales", scales, True)], stream)
        return q, scales

    def dequantize_fp8(self, q, scales, *, group_size=None, dtype="float32", out=None, stream=None):
        """The inverse of quantize_fp8 (dsa_dequantize_fp8): y = f32(q) * s, y [..., N] of `dtype`
        ("float32" or "bfloat16") allocated like q unless out= is given."""
        params = _params(QuantizeFp8Params, lib.dsa_quantize_fp8_params_init, group_size=group_size)
        if out is None:
            out = _arrays.empty(q, _shape(_arrays.view("q", q, stream=stream)[0]), dtype)
        self._run(lib.dsa_dequantize_fp8, params, [("q", q, False), ("scales", scales, False), ("y", out, True)], stream)
        return out

    def hadamard(self, x, *, scale=None, out=None, stream=None):
        """y = (x . H_n) * scale along the last dimension (dsa_hadamard); scale None or 0 means
        n^-0.5. x is f32 or bf16; y is allocated like x unless out= is given (out=x: in place)."""
        params = _params(HadamardParams, lib.dsa_hadamard_params_init, scale=scale)
        if out is None:
            x_view = _arrays.view("x", x, stream=stream)[0]
            out = _arrays.empty(x, _shape(x_view), "bfloat16" if x_view.dtype == DType.BF16 else "float32")
        self._run(lib.dsa_hadamard, params, [("x", x, False), ("y", out, True)], stream)
        return out

    def hadamard_quantize_fp8(self, x, *, scale=None, group_size=None, scale_format=None, amax_floor=None, out=None,
                              stream=None):
        """hadamard and quantize_fp8 in one pass (dsa_hadamard_quantize_fp8): every row of x
        [..., N] (f32, bf16 or f16; N a power of two up to 1024) rotated in f32 and quantised,
        bitwise hadamard into an f32 array followed by quantize_fp8 of it. Parameters and the
        returned (q, scales) as hadamard and quantize_fp8."""
        rotation = _params(HadamardParams, lib.dsa_hadamard_params_init, scale=scale)
        quantization = _quantize_params(group_size, scale_format, amax_floor)
        q, scales = out if out is not None else _quantized_like(x, quantization, stream)
        self._run(lib.dsa_hadamard_quantize_fp8, (rotation, quantization),
                  [("x", x, False), ("q", q, True), ("scales", scales, True)], stream)
        return q, scales

    def topk(self, scores, row_starts=None, row_ends=None, block_table=None, *, k=None, order=None, n_sink=None,
             n_local=None, page_size=None, out=None, stream=None):
        """Top-k selection (dsa_topk): for every row of scores f32 [R, N], the indices int32 [R, k]
        of the k best tokens of the window [row_starts, row_ends) (int32 [R]; None: 0 and N),
        larger score first and equal scores by smaller index, -1 padding at the end of a row. With
        block_table int32 [B, max_pages], physical slots instead. order: TopkOrder, or
        "unspecified" / "score" / "index". indices are allocated like scores unless out= is given.
        """
        params = _topk_params(k, order, n_sink, n_local, page_size)
        if out is None:
            rows = _shape(_arrays.view("scores", scores, stream=stream)[0])[:1]
            out = _arrays.empty(scores, rows + (max(params.k, 0),), "int32")  # a bad k: libdsa explains
        self._run(lib.dsa_topk, params, [("scores", scores, False), ("row_starts", row_starts, False),
                                         ("row_ends", row_ends, False), ("block_table", block_table, False),
                                         ("indices", out, True)], stream)
        return out

    def indexer_logits(self, q, weights, k, k_scale, ks, ke, *, out=None, stream=None):
        """Lightning-indexer logits of a ragged prefill (dsa_indexer_logits): q e4m3 codes
        [S_q, H_I, D_I] (float8_e4m3fn or uint8), weights f32 [S_q, H_I], k codes [S_kv, D_I],
        k_scale f32 [S_kv] and windows ks, ke int32 [S_q] give logits f32 [S_q, S_kv], -inf outside
        each window, allocated like q unless out= is given."""
        params = _params(IndexerParams, lib.dsa_indexer_params_init)
        if out is None:
            rows = _shape(_arrays.view("q", q, stream=stream)[0])[:1]
            columns = _shape(_arrays.view("k", k, stream=stream)[0])[:1]
            out = _arrays.empty(q, rows + columns, "float32")
        self._run(lib.dsa_indexer_logits, params, [("q", q, False), ("weights", weights, False), ("k", k, False),
                                                   ("k_scale", k_scale, False), ("ks", ks, False),
                                                   ("ke", ke, False), ("logits", out, True)], stream)
        return out

    def indexer_logits_paged(self, q, weights, k_cache, block_table, context_lens, *, max_context=None, out=None,
                             stream=None):
        """Lightning-indexer logits of a decode step over the paged key cache
        (dsa_indexer_logits_paged): q codes [B, n_next, H_I, D_I], weights f32 [B * n_next, H_I],
        k_cache uint8 [num_pages, 64 * (D_I + 4)], block_table int32 [B, max_pages] and
        context_lens int32 [B] give logits f32 [B * n_next, max_context] (max_context default
        max_pages * 64), allocated like q unless out= is given."""
        params = _params(IndexerParams, lib.dsa_indexer_params_init)
        if out is None:
            q_shape = _shape(_arrays.view("q", q, stream=stream)[0])
            if max_context is None:
                table_shape = _shape(_arrays.view("block_table", block_table, stream=stream)[0])
                max_context = 64 * table_shape[-1] if table_shape else 0
            rows = q_shape[0] * q_shape[1] if len(q_shape) > 1 else 0  # a bad rank: libdsa explains
            out = _arrays.empty(q, (rows, max_context), "float32")
        self._run(lib.dsa_indexer_logits_paged, params,
                  [("q", q, False), ("weights", weights, False), ("k_cache", k_cache, False),
                   ("block_table", block_table, False), ("context_lens", context_lens, False),
                   ("logits", out, True)], stream)
        return out

    def indexer_cache_write(self, k, slot_mapping, k_cache, *, stream=None):
        """Quantises keys k [T, D_I] (f32 or bf16) into the paged indexer key cache uint8
        [num_pages, 64 * (D_I + 4)] at the slots slot_mapping int64 [T], in place
        (dsa_indexer_cache_write; negative or out-of-range slots are skipped). Returns k_cache."""
        self._run(lib.dsa_indexer_cache_write, None,
                  [("k", k, False), ("slot_mapping", slot_mapping, False), ("k_cache", k_cache, True)], stream)
        return k_cache

    def _attention_outputs(self, q, d_v, stream):
        """out bf16 [..., d_v] and lse f32 [...] for q [..., d_qk]."""
        rows = _shape(_arrays.view("q", q, stream=stream)[0])[:-1]
        return _arrays.empty(q, rows + (max(d_v, 0),), "bfloat16"), _arrays.empty(q, rows, "float32")

    def sparse_attention(self, q, kv, indices, attn_sink=None, topk_length=None, *, scale, d_v=None,
                         max_logits=False, out=None, stream=None):
        """Sparse MLA attention, prefill form (dsa_sparse_attention): q bf16 [S_q, H_q, d_qk], kv
        bf16 [S_kv, d_qk], indices int32 [S_q, k] (invalid ones skipped), attn_sink f32 [H_q] or
        None, topk_length int32 [S_q] or None. scale is required (DeepSeek-V3.2: 0.13523378);
        d_v defaults to 512.

        Returns (out, lse): out bf16 [S_q, H_q, d_v] and lse f32 [S_q, H_q], allocated like q
        unless out=(out, lse) is given; then max_logits f32 [S_q, H_q] too when max_logits is True
        (allocated) or an array.
        """
        params = _params(SparseAttentionParams, lib.dsa_sparse_attention_params_init, scale=scale, d_v=d_v)
        attention, lse = out if out is not None else self._attention_outputs(q, params.d_v, stream)
        maximum = _optional_output(
            max_logits, lambda: _arrays.empty(lse, _shape(_arrays.view("lse", lse, stream=stream)[0]), "float32"))
        self._run(lib.dsa_sparse_attention, params,
                  [("q", q, False), ("kv", kv, False), ("indices", indices, False), ("attn_sink", attn_sink, False),
                   ("topk_length", topk_length, False), ("out", attention, True), ("lse", lse, True),
                   ("max_logits", maximum, True)], stream)
        return (attention, lse) if maximum is None else (attention, lse, maximum)

    def sparse_attention_paged(self, q, kv_cache, indices, attn_sink=None, topk_length=None, *, scale, d_v=None,
                               out=None, stream=None):
        """Sparse MLA attention over a paged KV cache (dsa_sparse_attention_paged): q bf16
        [B, s_q, H_q, d_qk], kv_cache bf16 [num_pages, page_size, d_qk] or the FP8 MLA cache uint8
        [num_pages, page_size, 656], indices int32 [B, s_q, k] of physical slots, attn_sink f32
        [H_q] or None, topk_length int32 [B, s_q] or None. Returns (out, lse): bf16
        [B, s_q, H_q, d_v] and f32 [B, s_q, H_q], allocated like q unless out=(out, lse) is given.
        """
        params = _params(SparseAttentionParams, lib.dsa_sparse_attention_params_init, scale=scale, d_v=d_v)
        attention, lse = out if out is not None else self._attention_outputs(q, params.d_v, stream)
        self._run(lib.dsa_sparse_attention_paged, params,
                  [("q", q, False), ("kv_cache", kv_cache, False), ("indices", indices, False),
                   ("attn_sink", attn_sink, False), ("topk_length", topk_length, False), ("out", attention, True),
                   ("lse", lse, True)], stream)
        return attention, lse

    def mla_cache_write(self, c_kv, k_pe, slot_mapping, kv_cache, *, stream=None):
        """Writes tokens into the FP8 MLA cache uint8 [num_pages, page_size, 656] in place
        (dsa_mla_cache_write): c_kv [T, 512] and k_pe [T, 64] (both f32 or both bf16) at the slots
        slot_mapping int64 [T] (out-of-range slots skipped). Returns kv_cache."""
        self._run(lib.dsa_mla_cache_write, None,
                  [("c_kv", c_kv, False), ("k_pe", k_pe, False), ("slot_mapping", slot_mapping, False),
                   ("kv_cache", kv_cache, True)], stream)
        return kv_cache

    def indexer_topk_workspace_size(self, num_queries, num_tokens):
        """The scratch bytes indexer_topk and indexer_topk_paged need for num_queries query rows
        over num_tokens key tokens (S_kv; paged: max_pages * 64) (dsa_indexer_topk_workspace_size)."""
        size = ctypes.c_size_t()
        check(lib.dsa_indexer_topk_workspace_size(self._handle, num_queries, num_tokens, ctypes.byref(size)))
        return size.value

    def indexer_topk(self, q, weights, k, k_scale, ks, ke, *, top_k=None, order=None, n_sink=None, n_local=None,
                     page_size=None, workspace=None, out=None, stream=None):
        """Fused lightning indexer + top-k, ragged prefill (dsa_indexer_topk): the indices int32
        [S_q, top_k] that indexer_logits then topk (windows [ks, ke)) would give, without the
        [S_q, S_kv] logits. top_k, order, n_sink, n_local, page_size are topk's k and options (top_k
        because k is the key tensor). workspace: None (the library allocates) or a contiguous array
        of at least indexer_topk_workspace_size bytes. indices are allocated like q unless out= is
        given."""
        params = (_params(IndexerParams, lib.dsa_indexer_params_init),
                  _topk_params(top_k, order, n_sink, n_local, page_size))
        if out is None:
            rows = _shape(_arrays.view("q", q, stream=stream)[0])[:1]
            out = _arrays.empty(q, rows + (max(params[1].k, 0),), "int32")
        scratch, _keep_alive = self._workspace(workspace, stream)
        self._run(lib.dsa_indexer_topk, params,
                  [("q", q, False), ("weights", weights, False), ("k", k, False), ("k_scale", k_scale, False),
                   ("ks", ks, False), ("ke", ke, False), ("indices", out, True)], stream, scratch)
        return out

    def _decode_rows(self, q, stream):
        """B * n_next of q [B, n_next, ...] (0 for a bad rank, which libdsa explains)."""
        shape = _shape(_arrays.view("q", q, stream=stream)[0])
        return shape[0] * shape[1] if len(shape) > 1 else 0

    def indexer_topk_paged(self, q, weights, k_cache, block_table, context_lens, *, top_k=None, order=None,
                           n_sink=None, n_local=None, page_size=None, indices=True, slots=False, workspace=None,
                           stream=None):
        """Fused lightning indexer + top-k, paged decode (dsa_indexer_topk_paged): inputs as
        indexer_logits_paged, options and workspace as indexer_topk. Returns (indices, slots),
        int32 [B * n_next, top_k] each: token positions and physical cache slots (page_size must
        then be 64). Each is computed when True (allocated like q) or an array, and None when
        False."""
        params = (_params(IndexerParams, lib.dsa_indexer_params_init),
                  _topk_params(top_k, order, n_sink, n_local, page_size))

        def allocate():
            return _arrays.empty(q, (self._decode_rows(q, stream), max(params[1].k, 0)), "int32")
        indices, slots = _optional_output(indices, allocate), _optional_output(slots, allocate)
        scratch, _keep_alive = self._workspace(workspace, stream)
        self._run(lib.dsa_indexer_topk_paged, params,
                  [("q", q, False), ("weights", weights, False), ("k_cache", k_cache, False),
                   ("block_table", block_table, False), ("context_lens", context_lens, False),
                   ("indices", indices, True), ("slots", slots, True)], stream, scratch)
        return indices, slots

    def attention_workspace_size(self, num_queries, num_tokens, *, top_k=None, order=None, n_sink=None, n_local=None,
                                 page_size=None):
        """The scratch bytes attention and attention_paged need for num_queries query rows over
        num_tokens key tokens (paged: max_pages * 64) with top_k selected (default 2048)
        (dsa_attention_workspace_size)."""
        params = _topk_params(top_k, order, n_sink, n_local, page_size)
        size = ctypes.c_size_t()
        check(lib.dsa_attention_workspace_size(self._handle, ctypes.byref(params), num_queries, num_tokens,
                                               ctypes.byref(size)))
        return size.value

    def attention(self, index_q, index_weights, index_k, index_k_scale, ks, ke, q, kv, attn_sink=None, *, scale,
                  d_v=None, top_k=None, order=None, n_sink=None, n_local=None, page_size=None, selected=False,
                  workspace=None, out=None, stream=None):
        """One DSA layer step, ragged prefill (dsa_attention): indexer (index_q, index_weights,
        index_k, index_k_scale, windows [ks, ke)) -> top-k (top_k and options as indexer_topk) ->
        sparse MLA attention (q, kv, attn_sink; scale required, d_v as sparse_attention).
        Returns (out, lse) as sparse_attention, then the selected indices int32 [S_q, top_k] when
        selected is True (allocated) or an array. workspace: None or a contiguous array of at
        least attention_workspace_size bytes."""
        params = (_params(IndexerParams, lib.dsa_indexer_params_init),
                  _topk_params(top_k, order, n_sink, n_local, page_size),
                  _params(SparseAttentionParams, lib.dsa_sparse_attention_params_init, scale=scale, d_v=d_v))
        attention, lse = out if out is not None else self._attention_outputs(q, params[2].d_v, stream)
        rows = _shape(_arrays.view("q", q, stream=stream)[0])[:1]
        chosen = _optional_output(selected, lambda: _arrays.empty(q, rows + (max(params[1].k, 0),), "int32"))
        scratch, _keep_alive = self._workspace(workspace, stream)
        self._run(lib.dsa_attention, params,
                  [("index_q", index_q, False), ("index_weights", index_weights, False), ("index_k", index_k, False),
                   ("index_k_scale", index_k_scale, False), ("ks", ks, False), ("ke", ke, False), ("q", q, False),
                   ("kv", kv, False), ("attn_sink", attn_sink, False), ("out", attention, True), ("lse", lse, True),
                   ("selected", chosen, True)], stream, scratch)
        return (attention, lse) if chosen is None else (attention, lse, chosen)

    def attention_paged(self, index_q, index_weights, index_k_cache, block_table, context_lens, q, kv_cache,
                        attn_sink=None, *, scale, d_v=None, top_k=None, order=None, n_sink=None, n_local=None,
                        page_size=None, selected=False, workspace=None, out=None, stream=None):
        """One DSA layer step, paged decode (dsa_attention_paged): indexer_topk_paged over the
        indexer key cache -> physical slots -> sparse_attention_paged over kv_cache (pages of 64
        tokens) for q [B, n_next, H_q, d_qk]. Returns (out, lse) as sparse_attention_paged, then
        the selected slots int32 [B * n_next, top_k] when selected is True or an array; workspace
        as attention."""
        params = (_params(IndexerParams, lib.dsa_indexer_params_init),
                  _topk_params(top_k, order, n_sink, n_local, page_size),
                  _params(SparseAttentionParams, lib.dsa_sparse_attention_params_init, scale=scale, d_v=d_v))
        attention, lse = out if out is not None else self._attention_outputs(q, params[2].d_v, stream)
        chosen = _optional_output(
            selected, lambda: _arrays.empty(q, (self._decode_rows(q, stream), max(params[1].k, 0)), "int32"))
        scratch, _keep_alive = self._workspace(workspace, stream)
        self._run(lib.dsa_attention_paged, params,
                  [("index_q", index_q, False), ("index_weights", index_weights, False),
                   ("index_k_cache", index_k_cache, False), ("block_table", block_table, False),
                   ("context_lens", context_lens, False), ("q", q, False), ("kv_cache", kv_cache, False),
                   ("attn_sink", attn_sink, False), ("out", attention, True), ("lse", lse, True),
                   ("selected", chosen, True)], stream, scratch)
        return (attention, lse) if chosen is None else (attention, lse, chosen)

    def indexer_loss(self, index_q, index_k, weights, ks, ke, *, indices=None, teacher_q=None, teacher_k=None,
                     teacher_probs=None, mode=None, coeff=None, teacher_scale=None, loss=True, row_loss=False,
                     d_index_q=True, d_index_k=True, d_weights=True, stream=None):
        """Indexer distillation loss, forward and backward (dsa_indexer_loss): the KL divergence of
        the student softmax over I = sum_h w_h ReLU(index_q . index_k) from the teacher, per row
        over its window [ks, ke) (mode "dense") or its in-window `indices` int32 [T, k] (mode
        "sparse"), and the gradients of loss = coeff * mean over active rows.

        index_q [T, H_I, D_I], index_k [S, D_I] and weights [T, H_I] are f32 or bf16; ks, ke int32
        [T]. The teacher is teacher_q [T, H_q, d] with teacher_k [S, d] or [S, H_kv, d] and
        teacher_scale (required then), or teacher_probs f32 [T, S]. mode: IndexerLossMode, or
        "dense" / "sparse" (default dense).

        Each output keyword is True (allocated like index_q), False or None (not computed), or an
        array: loss f32 [], row_loss f32 [T], d_index_q f32 [T, H_I, D_I], d_index_k f32 [S, D_I],
        d_weights f32 [T, H_I]. Returns an IndexerLoss named tuple of them.
        """
        if isinstance(mode, str):
            mode = IndexerLossMode[mode.upper()]
        params = _params(IndexerLossParams, lib.dsa_indexer_loss_params_init, mode=mode, coeff=coeff,
                         teacher_scale=teacher_scale)
        q_shape = _shape(_arrays.view("index_q", index_q, stream=stream)[0])
        k_shape = _shape(_arrays.view("index_k", index_k, stream=stream)[0])
        outputs = IndexerLoss(
            _optional_output(loss, lambda: _arrays.empty(index_q, (), "float32")),
            _optional_output(row_loss, lambda: _arrays.empty(index_q, q_shape[:1], "float32")),
            _optional_output(d_index_q, lambda: _arrays.empty(index_q, q_shape, "float32")),
            _optional_output(d_index_k, lambda: _arrays.empty(index_q, k_shape, "float32")),
            _optional_output(d_weights, lambda: _arrays.empty(index_q, q_shape[:2], "float32")),
        )
        self._run(lib.dsa_indexer_loss, params,
                  [("index_q", index_q, False), ("index_k", index_k, False), ("weights", weights, False),
                   ("ks", ks, False), ("ke", ke, False), ("indices", indices, False), ("teacher_q", teacher_q, False),
                   ("teacher_k", teacher_k, False), ("teacher_probs", teacher_probs, False)]
                  + [(name, array, True) for name, array in zip(IndexerLoss._fields, outputs)], stream)
        return outputs

    def _backward_params(self, scale, d_v, mode):
        if isinstance(mode, str):
            mode = SparseAttentionBackwardMode[mode.upper()]
        return _params(SparseAttentionBackwardParams, lib.dsa_sparse_attention_backward_params_init, scale=scale, d_v=d_v,
                       mode=mode)

    def sparse_attention_backward_workspace_size(self, num_queries, topk, num_tokens, d_qk, *, scale=None, d_v=None,
                                                 mode=None):
        """Scratch bytes sparse_attention_backward needs for num_queries rows of topk indices over
        num_tokens KV rows of d_qk values (dsa_sparse_attention_backward_workspace_size)."""
        params = self._backward_params(scale, d_v, mode)
        size = ctypes.c_size_t()
        check(lib.dsa_sparse_attention_backward_workspace_size(self._handle, ctypes.byref(params), num_queries, topk,
                                                               num_tokens, d_qk, ctypes.byref(size)))
        return size.value

    def sparse_attention_backward(self, q, kv, indices, out, lse, dout, attn_sink=None, topk_length=None, *, scale,
                                  d_v=None, mode=None, dq_dtype="float32", d_attn_sink=None, grads=None,
                                  workspace=None, stream=None):
        """Backward pass of sparse_attention (dsa_sparse_attention_backward): from q [S_q, H_q, d_qk]
        and kv [S_kv, d_qk] (bf16 or f32), indices int32 [S_q, k], the forward's out and lse, dout
        [S_q, H_q, d_v], and the optional attn_sink f32 [H_q] and topk_length int32 [S_q]. scale is
        required; d_v defaults to 512; mode: SparseAttentionBackwardMode, or "deterministic" /
        "fast".

        Returns (dq, dkv): dq [S_q, H_q, d_qk] of dq_dtype ("float32" or "bfloat16") and dkv f32
        [S_kv, d_qk], allocated like q unless grads=(dq, dkv) is given; then d_attn_sink f32 [H_q]
        too when d_attn_sink is True (allocated; needs attn_sink) or an array.
        """
        params = self._backward_params(scale, d_v, mode)
        q_shape = _shape(_arrays.view("q", q, stream=stream)[0])
        if grads is None:
            grads = (_arrays.empty(q, q_shape, dq_dtype),
                     _arrays.empty(q, _shape(_arrays.view("kv", kv, stream=stream)[0]), "float32"))
        dq, dkv = grads
        sink_grad = _optional_output(d_attn_sink, lambda: _arrays.empty(q, q_shape[1:2], "float32"))
        scratch, _keep_alive = self._workspace(workspace, stream)
        self._run(lib.dsa_sparse_attention_backward, params,
                  [("q", q, False), ("kv", kv, False), ("indices", indices, False), ("attn_sink", attn_sink, False),
                   ("topk_length", topk_length, False), ("out", out, False), ("lse", lse, False),
                   ("dout", dout, False), ("dq", dq, True), ("dkv", dkv, True), ("d_attn_sink", sink_grad, True)],
                  stream, scratch)
        return (dq, dkv) if sink_grad is None else (dq, dkv, sink_grad)
