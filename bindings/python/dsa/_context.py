"""The context and one method per op.

Adding an op: a method that builds its params with _params, allocates missing outputs with
_arrays.empty (shapes from the input views), and calls _run with every tensor named as in dsa.h
(None for an optional tensor passes NULL; ops without params pass params None).
"""
import collections
import ctypes

from . import _arrays
from ._library import (
    ContextOptions, DeviceType, DType, HadamardParams, IndexerParams, QuantizeFp8Params, ScaleFormat,
    SparseAttentionParams, TopkOrder, TopkParams, check, lib,
)

Device = collections.namedtuple("Device", ["type", "id"])
Device.__doc__ = "Where a context runs: type 'cpu' or 'cuda', and the CUDA ordinal."


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

    def _run(self, function, params, tensors, stream):
        """Calls `function(context, params, *tensors, stream)`, or `function(context, *tensors,
        stream)` when params is None (an op without params); `tensors` are (name, array, writable)
        in the C argument order, and an array None passes NULL (an optional tensor)."""
        views = [
            None if array is None else _arrays.view(name, array, writable=writable, stream=stream)
            for name, array, writable in tensors
        ]
        arguments = [] if params is None else [ctypes.byref(params)]
        arguments += [None if view is None else ctypes.byref(view[0]) for view in views]
        check(function(self._handle, *arguments, stream))

    def quantize_fp8(self, x, *, group_size=None, scale_format=None, amax_floor=None, out=None, stream=None):
        """FP8 block quantisation (dsa_quantize_fp8) of x [..., N] (f32, bf16 or f16).

        Returns (q, scales): e4m3 codes [..., N] (float8_e4m3fn, or uint8 where the array library
        has no FP8 dtype) and f32 scales [..., N / group_size], allocated like x unless
        out=(q, scales) is given. scale_format: ScaleFormat, or "f32" / "ue8m0".
        """
        if isinstance(scale_format, str):
            scale_format = ScaleFormat[scale_format.upper()]
        params = _params(QuantizeFp8Params, lib.dsa_quantize_fp8_params_init,
                         group_size=group_size, scale_format=scale_format, amax_floor=amax_floor)
        if out is None:
            shape = _shape(_arrays.view("x", x, stream=stream)[0])
            last = shape[-1] if shape else 0
            groups = last // params.group_size if params.group_size > 0 else 0  # else libdsa explains
            out = (_arrays.empty(x, shape, "float8_e4m3fn"), _arrays.empty(x, shape[:-1] + (groups,), "float32"))
        q, scales = out
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

    def topk(self, scores, row_starts=None, row_ends=None, block_table=None, *, k=None, order=None, n_sink=None,
             n_local=None, page_size=None, out=None, stream=None):
        """Top-k selection (dsa_topk): for every row of scores f32 [R, N], the indices int32 [R, k]
        of the k best tokens of the window [row_starts, row_ends) (int32 [R]; None: 0 and N),
        larger score first and equal scores by smaller index, -1 padding at the end of a row. With
        block_table int32 [B, max_pages], physical slots instead. order: TopkOrder, or
        "unspecified" / "score" / "index". indices are allocated like scores unless out= is given.
        """
        if isinstance(order, str):
            order = TopkOrder[order.upper()]
        params = _params(TopkParams, lib.dsa_topk_params_init, k=k, order=order, n_sink=n_sink, n_local=n_local,
                         page_size=page_size)
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

    def _attention_outputs(self, q, d_v, with_max_logits, stream):
        """out bf16 [..., d_v] and lse f32 [...] (and max_logits) for q [..., d_qk]."""
        rows = _shape(_arrays.view("q", q, stream=stream)[0])[:-1]
        outputs = (_arrays.empty(q, rows + (max(d_v, 0),), "bfloat16"), _arrays.empty(q, rows, "float32"))
        return outputs + (_arrays.empty(q, rows, "float32"),) if with_max_logits else outputs

    def sparse_attention(self, q, kv, indices, attn_sink=None, topk_length=None, *, scale, d_v=None,
                         max_logits=False, out=None, stream=None):
        """Sparse MLA attention, prefill form (dsa_sparse_attention): q bf16 [S_q, H_q, d_qk], kv
        bf16 [S_kv, d_qk], indices int32 [S_q, k] (invalid ones skipped), attn_sink f32 [H_q] or
        None, topk_length int32 [S_q] or None. scale is required (DeepSeek-V3.2: 0.13523378);
        d_v defaults to 512.

        Returns (out, lse): out bf16 [S_q, H_q, d_v] and lse f32 [S_q, H_q], plus max_logits f32
        [S_q, H_q] when max_logits=True, allocated like q unless out=(out, lse) or
        out=(out, lse, max_logits) is given.
        """
        params = _params(SparseAttentionParams, lib.dsa_sparse_attention_params_init, scale=scale, d_v=d_v)
        if out is None:
            out = self._attention_outputs(q, params.d_v, max_logits, stream)
        attention, lse, maximum = out if len(out) == 3 else (*out, None)
        self._run(lib.dsa_sparse_attention, params,
                  [("q", q, False), ("kv", kv, False), ("indices", indices, False), ("attn_sink", attn_sink, False),
                   ("topk_length", topk_length, False), ("out", attention, True), ("lse", lse, True),
                   ("max_logits", maximum, True)], stream)
        return tuple(out)

    def sparse_attention_paged(self, q, kv_cache, indices, attn_sink=None, topk_length=None, *, scale, d_v=None,
                               out=None, stream=None):
        """Sparse MLA attention over a paged KV cache (dsa_sparse_attention_paged): q bf16
        [B, s_q, H_q, d_qk], kv_cache bf16 [num_pages, page_size, d_qk] or the FP8 MLA cache uint8
        [num_pages, page_size, 656], indices int32 [B, s_q, k] of physical slots, attn_sink f32
        [H_q] or None, topk_length int32 [B, s_q] or None. Returns (out, lse): bf16
        [B, s_q, H_q, d_v] and f32 [B, s_q, H_q], allocated like q unless out=(out, lse) is given.
        """
        params = _params(SparseAttentionParams, lib.dsa_sparse_attention_params_init, scale=scale, d_v=d_v)
        if out is None:
            out = self._attention_outputs(q, params.d_v, False, stream)
        attention, lse = out
        self._run(lib.dsa_sparse_attention_paged, params,
                  [("q", q, False), ("kv_cache", kv_cache, False), ("indices", indices, False),
                   ("attn_sink", attn_sink, False), ("topk_length", topk_length, False), ("out", attention, True),
                   ("lse", lse, True)], stream)
        return tuple(out)

    def mla_cache_write(self, c_kv, k_pe, slot_mapping, kv_cache, *, stream=None):
        """Writes tokens into the FP8 MLA cache uint8 [num_pages, page_size, 656] in place
        (dsa_mla_cache_write): c_kv [T, 512] and k_pe [T, 64] (both f32 or both bf16) at the slots
        slot_mapping int64 [T] (out-of-range slots skipped). Returns kv_cache."""
        self._run(lib.dsa_mla_cache_write, None,
                  [("c_kv", c_kv, False), ("k_pe", k_pe, False), ("slot_mapping", slot_mapping, False),
                   ("kv_cache", kv_cache, True)], stream)
        return kv_cache
