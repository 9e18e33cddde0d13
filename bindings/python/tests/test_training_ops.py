"""The training ops against the real library on the CPU, compared with numpy references in
float64."""
import ml_dtypes
import numpy
import pytest

import dsa

BF16 = ml_dtypes.bfloat16


@pytest.fixture(scope="module")
def context():
    with dsa.Context(num_threads=3) as context:
        yield context


def softmax(x):
    e = numpy.exp(x - x.max())
    return e / e.sum()


def reference_indexer_loss(q, k, w, entries, teacher, coeff):
    """DSA_SPEC section 8.1 in float64 over each row's entries (token arrays; repeats allowed);
    teacher(t, entries) gives the row's teacher distribution. Every row must be active."""
    q, k, w = (numpy.asarray(a, numpy.float64) for a in (q, k, w))
    rows = len(entries)
    loss, row_loss = 0.0, numpy.zeros(rows)
    d_q, d_k, d_w = numpy.zeros_like(q), numpy.zeros_like(k), numpy.zeros_like(w)
    for t, tokens in enumerate(entries):
        u = q[t] @ k[tokens].T                         # [H, n]
        pi = softmax(w[t] @ numpy.maximum(u, 0))
        p = teacher(t, tokens)
        row_loss[t] = numpy.sum(numpy.where(p > 0, p * numpy.log(numpy.where(p > 0, p, 1) / pi), 0))
        g = coeff / rows * (pi - p)
        d_w[t] = numpy.maximum(u, 0) @ g
        grad = g * w[t][:, None] * (u > 0)             # [H, n]
        d_q[t] = grad @ k[tokens]
        numpy.add.at(d_k, tokens, grad.T @ q[t])
        loss += coeff * row_loss[t] / rows
    return loss, row_loss, d_q, d_k, d_w


def test_indexer_loss_matches_a_float64_reference(context, rng):
    rows, tokens, heads, dim, teacher_heads, kv_heads, teacher_dim = 5, 40, 4, 16, 6, 2, 8
    q = rng.standard_normal((rows, heads, dim)).astype(numpy.float32)
    k = rng.standard_normal((tokens, dim)).astype(numpy.float32)
    w = rng.standard_normal((rows, heads)).astype(numpy.float32)
    teacher_q = rng.standard_normal((rows, teacher_heads, teacher_dim)).astype(numpy.float32)
    teacher_k = rng.standard_normal((tokens, kv_heads, teacher_dim)).astype(numpy.float32)
    probs = rng.uniform(0.01, 1, (rows, tokens)).astype(numpy.float32)
    ks = numpy.arange(rows, dtype=numpy.int32)
    ke = (tokens - 10 + numpy.arange(rows)).astype(numpy.int32)
    indices = rng.integers(-2, tokens + 2, (rows, 24)).astype(numpy.int32)
    indices[:, 1] = indices[:, 0] = ks + 3  # a repeated in-window token
    scale = 0.4

    def rebuilt(t, entries):
        group = teacher_heads // kv_heads
        return numpy.mean([softmax(scale * teacher_k[entries, h // group].astype(numpy.float64) @ teacher_q[t, h])
                           for h in range(teacher_heads)], axis=0)

    def given(t, entries):
        return probs[t, entries] / probs[t, entries].sum(dtype=numpy.float64)

    for mode, probs_form in (("dense", False), ("sparse", True), ("sparse", False)):
        if mode == "dense":
            entries = [numpy.arange(ks[t], ke[t]) for t in range(rows)]
        else:
            entries = [row[(row >= ks[t]) & (row < ke[t])] for t, row in enumerate(indices)]
        want = reference_indexer_loss(q, k, w, entries, given if probs_form else rebuilt, coeff=0.5)
        teacher = {"teacher_probs": probs} if probs_form else {"teacher_q": teacher_q, "teacher_k": teacher_k,
                                                               "teacher_scale": scale}
        got = context.indexer_loss(q, k, w, ks, ke, indices=indices if mode == "sparse" else None, mode=mode,
                                   coeff=0.5, row_loss=True, **teacher)
        assert isinstance(got, dsa.IndexerLoss) and got.loss.shape == () and got.d_index_k.shape == (tokens, dim)
        for name, value, expected in zip(dsa.IndexerLoss._fields, got, want):
            numpy.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-6, err_msg=f"{mode} {name}")


def test_indexer_loss_takes_bf16_and_computes_only_what_is_asked(context, rng):
    rows, tokens, heads, dim = 3, 20, 2, 8
    q = rng.standard_normal((rows, heads, dim)).astype(BF16)
    k = rng.standard_normal((tokens, dim)).astype(BF16)
    w = rng.standard_normal((rows, heads)).astype(numpy.float32)
    probs = rng.uniform(0.01, 1, (rows, tokens)).astype(numpy.float32)
    ks, ke = numpy.zeros(rows, numpy.int32), numpy.full(rows, tokens, numpy.int32)
    entries = [numpy.arange(tokens)] * rows
    want = reference_indexer_loss(q.astype(numpy.float32), k.astype(numpy.float32), w, entries,
                                  lambda t, e: probs[t, e] / probs[t, e].sum(dtype=numpy.float64), coeff=1.0)
    d_weights = numpy.full((rows, heads), numpy.nan, numpy.float32)
    got = context.indexer_loss(q, k, w, ks, ke, teacher_probs=probs, d_index_q=False, d_index_k=None,
                               d_weights=d_weights)
    assert got.row_loss is None and got.d_index_q is None and got.d_index_k is None and got.d_weights is d_weights
    numpy.testing.assert_allclose(got.loss, want[0], rtol=1e-5)
    numpy.testing.assert_allclose(d_weights, want[4], rtol=1e-4, atol=1e-6)


def test_indexer_loss_errors_name_the_argument(context, rng):
    q = rng.standard_normal((2, 1, 4)).astype(numpy.float32)
    k = rng.standard_normal((6, 4)).astype(numpy.float32)
    w = numpy.ones((2, 1), numpy.float32)
    ks, ke = numpy.zeros(2, numpy.int32), numpy.full(2, 6, numpy.int32)
    teacher_q, teacher_k = rng.standard_normal((2, 2, 3)).astype(numpy.float32), numpy.ones((6, 3), numpy.float32)
    with pytest.raises(dsa.DsaError) as failure:
        context.indexer_loss(q, k, w, ks, ke, teacher_q=teacher_q, teacher_k=teacher_k)
    assert failure.value.code == dsa.Status.INVALID_ARGUMENT
    assert failure.value.message.startswith("params.teacher_scale")
    with pytest.raises(dsa.DsaError) as failure:
        context.indexer_loss(q, k, w, ks, ke, indices=numpy.zeros((2, 3), numpy.int32), mode="sparse",
                             teacher_probs=numpy.ones((2, 5), numpy.float32))
    assert failure.value.code == dsa.Status.SHAPE_MISMATCH and failure.value.message.startswith("teacher_probs")


def reference_attention_backward(q, kv, indices, sink, out, lse, dout, scale, d_v):
    """DSA_SPEC section 8.2 in float64, one row at a time (invalid indices skipped; a row whose
    lse is +inf contributes nothing): (dq, dkv, d_attn_sink)."""
    q, kv, out, dout = (numpy.asarray(a, numpy.float64) for a in (q, kv, out, dout))
    dq, dkv, d_sink = numpy.zeros_like(q), numpy.zeros_like(kv), numpy.zeros(q.shape[1])
    for t, row in enumerate(indices):
        tokens = row[(row >= 0) & (row < len(kv))]
        if len(tokens) == 0 or numpy.isinf(lse[t]).all():
            continue
        normaliser = numpy.logaddexp(lse[t].astype(numpy.float64), sink)  # [H]
        p = numpy.exp(scale * q[t] @ kv[tokens].T - normaliser[:, None])  # [H, n]
        D = numpy.sum(dout[t] * out[t], axis=1)
        dz = p * (dout[t] @ kv[tokens, :d_v].T - D[:, None])
        dq[t] = scale * dz @ kv[tokens]
        contribution = scale * dz.T @ q[t]
        contribution[:, :d_v] += p.T @ dout[t]
        numpy.add.at(dkv, tokens, contribution)
        d_sink -= numpy.exp(sink - normaliser) * D
    return dq, dkv, d_sink


def test_sparse_attention_backward_of_the_library_forward(context, rng):
    rows, heads, d_qk, d_v, tokens, k, scale = 6, 8, 72, 64, 50, 20, 0.15
    q = rng.standard_normal((rows, heads, d_qk)).astype(BF16)
    kv = rng.standard_normal((tokens, d_qk)).astype(BF16)
    indices = rng.integers(-3, tokens + 3, (rows, k)).astype(numpy.int32)
    indices[2] = -1  # a row without a valid index
    sink = rng.standard_normal(heads).astype(numpy.float32)
    out, lse = context.sparse_attention(q, kv, indices, sink, scale=scale, d_v=d_v)
    dout = rng.standard_normal((rows, heads, d_v)).astype(numpy.float32)
    want = reference_attention_backward(q.astype(numpy.float32), kv.astype(numpy.float32), indices, sink,
                                        out.astype(numpy.float32), lse, dout, scale, d_v)
    size = context.sparse_attention_backward_workspace_size(rows, k, tokens, d_qk, scale=scale, d_v=d_v)
    workspace = numpy.zeros(size // 8 + 1, numpy.int64)
    dq, dkv, d_sink = context.sparse_attention_backward(q, kv, indices, out, lse, dout, sink, scale=scale, d_v=d_v,
                                                        mode="fast", d_attn_sink=True, workspace=workspace)
    assert dq.dtype == numpy.float32 and dkv.shape == (tokens, d_qk) and d_sink.shape == (heads,)
    for name, value, expected in zip(("dq", "dkv", "d_attn_sink"), (dq, dkv, d_sink), want):
        numpy.testing.assert_allclose(value, expected, rtol=2e-4, atol=2e-4 * numpy.abs(expected).max(), err_msg=name)
    assert (dq[2] == 0).all()
    # bf16 dq is the f32 one rounded; no sink means no sink gradient.
    dq16, dkv16 = context.sparse_attention_backward(q, kv, indices, out, lse, dout, sink, scale=scale, d_v=d_v,
                                                    dq_dtype="bfloat16")
    numpy.testing.assert_array_equal(dq16, dq.astype(BF16))
    numpy.testing.assert_array_equal(dkv16, dkv)
    with pytest.raises(dsa.DsaError) as failure:
        context.sparse_attention_backward(q, kv, indices, out, lse, dout, scale=scale, d_v=d_v, d_attn_sink=True)
    assert failure.value.code == dsa.Status.INVALID_ARGUMENT and failure.value.message.startswith("d_attn_sink")
    with pytest.raises(dsa.DsaError) as failure:
        context.sparse_attention_backward(q, kv, indices, out, lse, dout, scale=scale, d_v=16)
    assert failure.value.code == dsa.Status.SHAPE_MISMATCH and failure.value.message.startswith("out")
