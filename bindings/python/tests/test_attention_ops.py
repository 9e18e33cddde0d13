"""Top-k, the lightning indexer and sparse attention against the real library on the CPU,
compared with hand-computed answers and numpy references in float64."""
import ml_dtypes
import numpy
import pytest

import dsa

FP8 = ml_dtypes.float8_e4m3fn
BF16 = ml_dtypes.bfloat16
NAN, INF = numpy.nan, numpy.inf


@pytest.fixture(scope="module")
def context():
    with dsa.Context(num_threads=3) as context:
        yield context


SCORES = numpy.array([
    [0.5, 2.0, -1.0, 2.0, NAN, 3.0, -INF, 0.5],
    [9.0, 8.0, 1.0, NAN, 1.0, 7.0, 7.0, 7.0],
], numpy.float32)


def test_topk_prefers_larger_scores_then_smaller_indices(context):
    # Row 0: 3.0 at 5, the tied 2.0s at 1 then 3, and of the tied 0.5s the one at 0; NaN never.
    # Row 1, window [2, 6): 7.0 at 5, the tied 1.0s at 2 then 4 (NaN at 3 skipped), -1 padding.
    starts, ends = numpy.array([0, 2], numpy.int32), numpy.array([8, 6], numpy.int32)
    indices = context.topk(SCORES, starts, ends, k=4, order="score")
    assert indices.dtype == numpy.int32 and indices.shape == (2, 4)
    numpy.testing.assert_array_equal(indices, [[5, 1, 3, 0], [5, 2, 4, -1]])
    # Whole rows, ascending indices, into an out= with padded rows.
    storage = numpy.full((2, 6), -7, numpy.int32)
    result = context.topk(SCORES, k=4, order=dsa.TopkOrder.INDEX, out=storage[:, :4])
    numpy.testing.assert_array_equal(result, [[0, 1, 3, 5], [0, 1, 5, 6]])
    assert (storage[:, 4:] == -7).all()
    # Pages of 2 tokens: tokens 5, 1, 3, 0 sit in pages 5, 3, 0, 3 at offsets 1, 1, 1, 0.
    table = numpy.array([[3, 0, 5, 1]], numpy.int32)
    slots = context.topk(SCORES[:1], block_table=table, k=4, order="score", page_size=2)
    numpy.testing.assert_array_equal(slots, [[11, 7, 1, 6]])


def random_codes(rng, shape):
    """e4m3 codes of moderate magnitude, never NaN."""
    return (rng.standard_normal(shape) * 4).astype(FP8)


def reference_logits(q, weights, k, k_scale):
    """DSA_SPEC section 4 in float64 for every (t, s): k_scale[s] * sum_h w[t, h] * ReLU(q[t, h] . k[s])."""
    dots = numpy.einsum("thd,sd->ths", q.astype(numpy.float64), k.astype(numpy.float64))
    return numpy.einsum("th,ths->ts", weights.astype(numpy.float64), numpy.maximum(dots, 0)) * k_scale


def test_indexer_logits_match_the_definition_inside_each_window(context, rng):
    queries, heads, dim, keys = 3, 2, 8, 5
    q, k = random_codes(rng, (queries, heads, dim)), random_codes(rng, (keys, dim))
    weights = rng.standard_normal((queries, heads)).astype(numpy.float32)
    k_scale = rng.uniform(0.1, 1, keys).astype(numpy.float32)
    ks, ke = numpy.array([0, 1, 4], numpy.int32), numpy.array([1, 4, 2], numpy.int32)  # the last is empty
    logits = context.indexer_logits(q, weights, k, k_scale, ks, ke)
    assert logits.dtype == numpy.float32 and logits.shape == (queries, keys)
    inside = (numpy.arange(keys) >= ks[:, None]) & (numpy.arange(keys) < ke[:, None])
    expected = numpy.where(inside, reference_logits(q, weights, k, k_scale), -INF)
    numpy.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_indexer_cache_write_then_paged_logits(context, rng):
    dim, heads, tokens, pages = 16, 2, 3, 2
    page_bytes = 64 * (dim + 4)
    keys = (rng.standard_normal((tokens + 1, dim)) * 3).astype(numpy.float32)
    cache = numpy.full((pages, page_bytes), 0xEE, numpy.uint8)
    # Tokens go to slots 64.. (page 1); the -1 of a padding token is skipped.
    assert context.indexer_cache_write(keys, numpy.array([64, 65, 66, -1], numpy.int64), cache) is cache
    codes, scales = context.quantize_fp8(keys[:tokens], group_size=dim, scale_format="ue8m0")
    numpy.testing.assert_array_equal(cache[1, : tokens * dim], codes.view(numpy.uint8).reshape(-1))
    numpy.testing.assert_array_equal(cache[1, 64 * dim : 64 * dim + 4 * tokens].view(numpy.float32), scales[:, 0])
    assert (cache[0] == 0xEE).all() and (cache[1, tokens * dim : 64 * dim] == 0xEE).all()

    # One sequence of 3 tokens in page 1, two next-token queries: query j sees [0, 2 + j).
    q = random_codes(rng, (1, 2, heads, dim))
    weights = rng.standard_normal((2, heads)).astype(numpy.float32)
    table, lens = numpy.array([[1, 0]], numpy.int32), numpy.array([3], numpy.int32)
    logits = context.indexer_logits_paged(q, weights, cache, table, lens)
    assert logits.shape == (2, 128)
    expected = numpy.full((2, 128), -INF)
    full = reference_logits(q[0], weights, codes, scales[:, 0])
    for j in range(2):
        expected[j, : 2 + j] = full[j, : 2 + j]
    numpy.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def reference_attention(q, kv, indices, scale, d_v, sink=None, lengths=None):
    """DSA_SPEC section 6 in float64 for q [S, H, d_qk]: (out [S, H, d_v], lse [S, H], max_logits [S, H])."""
    q, kv = q.astype(numpy.float64), kv.astype(numpy.float64)
    rows, heads = q.shape[:2]
    out, lse, max_logits = numpy.zeros((rows, heads, d_v)), numpy.zeros((rows, heads)), numpy.zeros((rows, heads))
    for t in range(rows):
        selected = indices[t] if lengths is None else indices[t, : lengths[t]]
        selected = selected[(selected >= 0) & (selected < len(kv))]
        z = scale * q[t] @ kv[selected].T  # [H, valid]
        weights = numpy.exp(z)
        lse[t], max_logits[t] = numpy.log(weights.sum(-1)), z.max(-1)
        total = weights.sum(-1) + (0 if sink is None else numpy.exp(sink.astype(numpy.float64)))
        out[t] = weights @ kv[selected, :d_v] / total[:, None]
    return out, lse, max_logits


def test_sparse_attention_matches_a_float64_reference(context, rng):
    rows, heads, d_qk, d_v, keys = 2, 3, 16, 8, 6
    q = rng.standard_normal((rows, heads, d_qk)).astype(BF16)
    kv = rng.standard_normal((keys, d_qk)).astype(BF16)
    # Row 0 repeats 5 (it counts twice) and pads with -1; row 1 has an out-of-range 9.
    indices = numpy.array([[4, 5, 5, -1], [2, 0, 9, 3]], numpy.int32)
    sink = numpy.array([0.5, -0.25, 1.0], numpy.float32)
    out, lse, max_logits = context.sparse_attention(q, kv, indices, sink, scale=0.3, d_v=d_v, max_logits=True)
    assert out.dtype == BF16 and out.shape == (rows, heads, d_v) and lse.dtype == numpy.float32
    expected_out, expected_lse, expected_max = reference_attention(q, kv, indices, 0.3, d_v, sink=sink)
    numpy.testing.assert_allclose(out.astype(numpy.float64), expected_out, rtol=1 / 128, atol=1 / 128)
    numpy.testing.assert_allclose(lse, expected_lse, rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(max_logits, expected_max, rtol=1e-5, atol=1e-5)

    # The paged form over the same entries as 2 pages of 3 tokens, topk_length 2 for row 1, no sink.
    lengths = numpy.array([[4, 2]], numpy.int32)
    paged_out, paged_lse = context.sparse_attention_paged(
        q[None], kv.reshape(2, 3, d_qk), indices[None], topk_length=lengths, scale=0.3, d_v=d_v)
    assert paged_out.shape == (1, rows, heads, d_v) and paged_lse.shape == (1, rows, heads)
    expected_out, expected_lse, _ = reference_attention(q, kv, indices, 0.3, d_v, lengths=lengths[0])
    numpy.testing.assert_allclose(paged_out[0].astype(numpy.float64), expected_out, rtol=1 / 128, atol=1 / 128)
    numpy.testing.assert_allclose(paged_lse[0], expected_lse, rtol=1e-5, atol=1e-5)


def test_mla_cache_write_stores_codes_scales_and_rope_keys(context, rng):
    tokens, pages, page_size = 2, 2, 4
    c_kv = (rng.standard_normal((tokens, 512)) * 4).astype(numpy.float32)
    k_pe = rng.standard_normal((tokens, 64)).astype(numpy.float32)
    slots = numpy.array([6, 1], numpy.int64)
    cache = numpy.full((pages, page_size, 656), 0xEE, numpy.uint8)
    assert context.mla_cache_write(c_kv, k_pe, slots, cache) is cache
    codes, scales = context.quantize_fp8(c_kv, scale_format="ue8m0")
    entries = cache.reshape(-1, 656)
    numpy.testing.assert_array_equal(entries[slots, :512], codes.view(numpy.uint8))
    numpy.testing.assert_array_equal(entries[slots, 512:528].copy().view(numpy.float32), scales)
    numpy.testing.assert_array_equal(entries[slots, 528:].copy().view(BF16), k_pe.astype(BF16))
    untouched = numpy.ones(len(entries), bool)
    untouched[slots] = False
    assert (entries[untouched] == 0xEE).all()


def test_new_ops_report_bad_params_by_name(context, rng):
    q, kv = rng.standard_normal((2, 1, 16)).astype(BF16), rng.standard_normal((3, 16)).astype(BF16)
    out, lse = numpy.full((2, 1, 8), 1.5, BF16), numpy.full((2, 1), 7, numpy.float32)
    with pytest.raises(dsa.DsaError) as failure:
        context.sparse_attention(q, kv, numpy.zeros((2, 2), numpy.int32), scale=0, d_v=8, out=(out, lse))
    assert failure.value.code == dsa.Status.INVALID_ARGUMENT
    assert failure.value.message.startswith("params.scale")
    assert (out == 1.5).all() and (lse == 7).all(), "outputs untouched"
    with pytest.raises(TypeError):
        context.sparse_attention(q, kv, numpy.zeros((2, 2), numpy.int32))  # scale has no default
    with pytest.raises(dsa.DsaError) as failure:
        context.topk(SCORES, k=2, n_sink=2, n_local=1)
    assert failure.value.code == dsa.Status.INVALID_ARGUMENT
    assert failure.value.message.startswith("params.n_sink + params.n_local")
    with pytest.raises(dsa.DsaError) as failure:
        context.topk(SCORES, numpy.zeros(3, numpy.int32), k=2)
    assert failure.value.code == dsa.Status.SHAPE_MISMATCH and failure.value.message.startswith("row_starts")


def prefill_problem(rng):
    queries, heads, dim, keys, q_heads, d_qk = 4, 2, 16, 10, 2, 16
    return dict(
        index_q=random_codes(rng, (queries, heads, dim)),
        index_weights=rng.standard_normal((queries, heads)).astype(numpy.float32),
        index_k=random_codes(rng, (keys, dim)),
        index_k_scale=rng.uniform(0.1, 1, keys).astype(numpy.float32),
        ks=numpy.array([0, 0, 2, 5], numpy.int32),
        ke=numpy.array([1, 6, 10, 9], numpy.int32),
        q=rng.standard_normal((queries, q_heads, d_qk)).astype(BF16),
        kv=rng.standard_normal((keys, d_qk)).astype(BF16),
    )


def test_fused_prefill_equals_its_parts(context, rng):
    p = prefill_problem(rng)
    indexer_inputs = [p[name] for name in ("index_q", "index_weights", "index_k", "index_k_scale", "ks", "ke")]
    logits = context.indexer_logits(*indexer_inputs)
    expected = context.topk(logits, p["ks"], p["ke"], k=3, order="score")
    numpy.testing.assert_array_equal(expected[0], [0, -1, -1])  # a window of one token
    expected_out, expected_lse = context.sparse_attention(p["q"], p["kv"], expected, scale=0.25, d_v=8)

    numpy.testing.assert_array_equal(context.indexer_topk(*indexer_inputs, top_k=3, order="score"), expected)
    size = context.indexer_topk_workspace_size(4, 10)
    workspace = numpy.empty(size, numpy.uint8)
    numpy.testing.assert_array_equal(
        context.indexer_topk(*indexer_inputs, top_k=3, order="score", workspace=workspace), expected)
    if size > 0:
        with pytest.raises(dsa.DsaError) as failure:
            context.indexer_topk(*indexer_inputs, top_k=3, workspace=workspace[:-1])
        assert failure.value.code == dsa.Status.WORKSPACE_TOO_SMALL
        assert failure.value.message.startswith("workspace")

    workspace = numpy.empty(context.attention_workspace_size(4, 10, top_k=3), numpy.uint8)
    out, lse, selected = context.attention(*indexer_inputs, p["q"], p["kv"], scale=0.25, d_v=8, top_k=3,
                                           order="score", selected=True, workspace=workspace)
    numpy.testing.assert_array_equal(selected, expected)
    numpy.testing.assert_array_equal(out.view(numpy.uint16), expected_out.view(numpy.uint16))
    numpy.testing.assert_array_equal(lse, expected_lse)


def test_fused_decode_equals_its_parts(context, rng):
    dim, heads, pages, d_qk = 16, 2, 2, 16
    cache = numpy.zeros((pages, 64 * (dim + 4)), numpy.uint8)
    # One sequence of 7 tokens in page 1 (block table [1, 0]).
    context.indexer_cache_write((rng.standard_normal((7, dim)) * 2).astype(numpy.float32),
                                numpy.arange(64, 71, dtype=numpy.int64), cache)
    table, lens = numpy.array([[1, 0]], numpy.int32), numpy.array([7], numpy.int32)
    index_q = random_codes(rng, (1, 2, heads, dim))
    weights = rng.standard_normal((2, heads)).astype(numpy.float32)
    q = rng.standard_normal((1, 2, 2, d_qk)).astype(BF16)
    kv_cache = rng.standard_normal((pages, 64, d_qk)).astype(BF16)

    logits = context.indexer_logits_paged(index_q, weights, cache, table, lens)
    expected_indices = context.topk(logits, k=4, order="index")
    expected_slots = context.topk(logits, block_table=table, k=4, order="index", page_size=64)
    assert ((expected_slots >= 64) & (expected_slots < 71)).all()
    indices, slots = context.indexer_topk_paged(index_q, weights, cache, table, lens, top_k=4, order="index",
                                                slots=True)
    numpy.testing.assert_array_equal(indices, expected_indices)
    numpy.testing.assert_array_equal(slots, expected_slots)
    assert context.indexer_topk_paged(index_q, weights, cache, table, lens, top_k=4, indices=False, slots=True)[0] is None

    expected_out, expected_lse = context.sparse_attention_paged(q, kv_cache, expected_slots[None], scale=0.25, d_v=8)
    out, lse = context.attention_paged(index_q, weights, cache, table, lens, q, kv_cache, scale=0.25, d_v=8, top_k=4,
                                       order="index")
    numpy.testing.assert_array_equal(out.view(numpy.uint16), expected_out.view(numpy.uint16))
    numpy.testing.assert_array_equal(lse, expected_lse)


def test_a_workspace_must_be_contiguous_and_on_the_context_device(context, rng):
    from test_arrays import CudaArray

    p = prefill_problem(rng)
    indexer_inputs = [p[name] for name in ("index_q", "index_weights", "index_k", "index_k_scale", "ks", "ke")]
    with pytest.raises(dsa.DsaError) as failure:
        context.indexer_topk(*indexer_inputs, top_k=3, workspace=CudaArray((1 << 20,), code=1, bits=8))
    assert failure.value.code == dsa.Status.DEVICE_MISMATCH and failure.value.message.startswith("workspace:")
    with pytest.raises(dsa.DsaError) as failure:
        context.indexer_topk(*indexer_inputs, top_k=3, workspace=numpy.empty(1 << 20, numpy.uint8)[::2])
    assert failure.value.code == dsa.Status.LAYOUT_UNSUPPORTED and failure.value.message.startswith("workspace:")
