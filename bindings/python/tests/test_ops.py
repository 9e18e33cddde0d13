"""The Python API against the real library on the CPU, compared with numpy references."""
import threading

import ml_dtypes
import numpy
import pytest

import dsa

FP8 = ml_dtypes.float8_e4m3fn


def reference_quantize(x, group_size, scale_format="f32", amax_floor=1e-4):
    """DSA_SPEC section 2 in numpy, f32 arithmetic as the library does."""
    x = x.astype(numpy.float32)
    groups = x.reshape(x.shape[:-1] + (-1, group_size))
    amax = numpy.maximum(numpy.abs(groups).max(-1), numpy.float32(amax_floor))
    scales = (amax / numpy.float32(448)).astype(numpy.float32)
    if scale_format == "ue8m0":
        mantissa, exponent = numpy.frexp(scales)
        scales = numpy.ldexp(numpy.float32(1), numpy.where(mantissa == 0.5, exponent - 1, exponent)).astype(numpy.float32)
    codes = numpy.clip(groups / scales[..., None], -448, 448).astype(FP8)
    return codes.reshape(x.shape), scales


def reference_hadamard(x, scale=None):
    n = x.shape[-1]
    matrix = numpy.ones((1, 1))
    while matrix.shape[0] < n:
        matrix = numpy.block([[matrix, matrix], [matrix, -matrix]])
    return x.astype(numpy.float64) @ matrix * (n**-0.5 if scale is None else scale)


@pytest.fixture(scope="module")
def context():
    with dsa.Context(num_threads=3) as context:
        yield context


def test_versions_and_build_info():
    version = dsa.version()
    assert version // 10000 == dsa.ABI_MAJOR
    assert dsa.version_string() == f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    assert "cpu" in dsa.build_info()
    assert dsa.status_string(dsa.Status.SHAPE_MISMATCH) == "shape mismatch"


def test_context_lifecycle():
    context = dsa.Context(num_threads=2)
    assert context.device == dsa.Device("cpu", 0)
    assert context.num_threads == 2
    context.close()
    context.close()
    with pytest.raises(dsa.DsaError) as failure:
        context.num_threads
    assert failure.value.code == dsa.Status.INVALID_ARGUMENT
    with pytest.raises(dsa.DsaError) as failure:
        dsa.Context(num_threads=-1)
    assert "num_threads" in failure.value.message


@pytest.mark.parametrize("scale_format", ["f32", "ue8m0"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float16, ml_dtypes.bfloat16])
def test_quantize_matches_reference(context, rng, scale_format, dtype):
    x = (rng.standard_normal((5, 3, 192)) * 4).astype(dtype)
    q, scales = context.quantize_fp8(x, group_size=64, scale_format=scale_format)
    codes, expected_scales = reference_quantize(x, 64, scale_format)
    assert q.dtype == FP8 and q.shape == x.shape and scales.shape == (5, 3, 3)
    numpy.testing.assert_array_equal(scales, expected_scales)
    numpy.testing.assert_array_equal(q.view(numpy.uint8), codes.view(numpy.uint8))


def test_dequantize_is_exact_scaling(context, rng):
    x = rng.standard_normal((7, 256)).astype(numpy.float32)
    q, scales = context.quantize_fp8(x)
    y = context.dequantize_fp8(q, scales)
    expected = q.astype(numpy.float32) * numpy.repeat(scales, 128, axis=-1)
    numpy.testing.assert_array_equal(y, expected)
    y16 = context.dequantize_fp8(q, scales, dtype="bfloat16")
    assert y16.dtype == ml_dtypes.bfloat16
    numpy.testing.assert_array_equal(y16, expected.astype(ml_dtypes.bfloat16))


def test_out_arguments_strides_and_uint8_codes(context, rng):
    wide = rng.standard_normal((6, 300)).astype(numpy.float32)
    x = wide[:, :256]  # rows with a stride of 300 elements
    q = numpy.full((6, 256), 0xAA, numpy.uint8)
    scales_storage = numpy.full((6, 6), numpy.nan, numpy.float32)
    scales = scales_storage[:, ::3]  # a scale column of stride 3
    result = context.quantize_fp8(x, out=(q, scales))
    assert result[0] is q and result[1] is scales
    codes, expected_scales = reference_quantize(numpy.ascontiguousarray(x), 128)
    numpy.testing.assert_array_equal(q, codes.view(numpy.uint8))
    numpy.testing.assert_array_equal(scales, expected_scales)
    assert numpy.isnan(scales_storage[:, 1::3]).all() and numpy.isnan(scales_storage[:, 2::3]).all()


def test_hadamard_matches_reference_and_works_in_place(context, rng):
    x = rng.standard_normal((3, 2, 128)).astype(numpy.float32)
    y = context.hadamard(x)
    numpy.testing.assert_allclose(y, reference_hadamard(x), rtol=1e-5, atol=1e-5)
    scaled = context.hadamard(x, scale=0.25)
    numpy.testing.assert_allclose(scaled, reference_hadamard(x, 0.25), rtol=1e-5, atol=1e-5)
    in_place = x.copy()
    assert context.hadamard(in_place, out=in_place) is in_place
    numpy.testing.assert_array_equal(in_place, y)
    bf16 = x.astype(ml_dtypes.bfloat16)
    y16 = context.hadamard(bf16)
    assert y16.dtype == ml_dtypes.bfloat16
    numpy.testing.assert_allclose(y16.astype(numpy.float32), reference_hadamard(bf16), rtol=1e-2, atol=1e-2)


def test_hadamard_quantize_fp8_equals_hadamard_then_quantize_fp8(context, rng):
    x = (rng.standard_normal((3, 2, 256)) * 4).astype(ml_dtypes.bfloat16)
    for scale_format in ("f32", "ue8m0"):
        q, scales = context.hadamard_quantize_fp8(x, group_size=64, scale_format=scale_format)
        assert q.shape == x.shape and scales.shape == (3, 2, 4) and scales.dtype == numpy.float32
        rotated = context.hadamard(x.astype(numpy.float32))
        want_q, want_scales = context.quantize_fp8(rotated, group_size=64, scale_format=scale_format)
        numpy.testing.assert_array_equal(q.view(numpy.uint8), want_q.view(numpy.uint8))
        numpy.testing.assert_array_equal(scales.view(numpy.uint32), want_scales.view(numpy.uint32))
    q, scales = numpy.full((2, 128), 0x5A, numpy.uint8), numpy.full((2, 4), 7, numpy.float32)
    x32 = rng.standard_normal((2, 128)).astype(numpy.float32)
    assert context.hadamard_quantize_fp8(x32, scale=0.5, group_size=32, out=(q, scales))[0] is q
    want_q, want_scales = context.quantize_fp8(context.hadamard(x32, scale=0.5), group_size=32)
    numpy.testing.assert_array_equal(q, want_q.view(numpy.uint8))
    numpy.testing.assert_array_equal(scales, want_scales)
    with pytest.raises(dsa.DsaError) as failure:
        context.hadamard_quantize_fp8(rng.standard_normal((2, 96)).astype(numpy.float32), group_size=32)
    assert failure.value.code == dsa.Status.SHAPE_MISMATCH and failure.value.message.startswith("x:")


def test_library_errors_carry_code_and_message(context, rng):
    x = rng.standard_normal((2, 128)).astype(numpy.float32)
    q, scales = numpy.full((2, 128), 0x5A, numpy.uint8), numpy.full((2, 1), 7, numpy.float32)
    with pytest.raises(dsa.DsaError) as failure:
        context.quantize_fp8(x, group_size=100, out=(q, scales))
    assert failure.value.code == dsa.Status.INVALID_ARGUMENT
    assert failure.value.message.startswith("params.group_size")
    assert str(failure.value).startswith("invalid argument: params.group_size")
    assert (q == 0x5A).all() and (scales == 7).all(), "outputs untouched"

    with pytest.raises(dsa.DsaError) as failure:
        context.hadamard(x, out=numpy.empty((2, 128), numpy.int32))
    assert failure.value.code == dsa.Status.DTYPE_MISMATCH and failure.value.message.startswith("y:")
    with pytest.raises(dsa.DsaError) as failure:
        context.hadamard(x[:, ::-1].copy()[:, ::-1])  # negative strides reach libdsa, which refuses
    assert failure.value.code == dsa.Status.LAYOUT_UNSUPPORTED and failure.value.message.startswith("x:")
    with pytest.raises(dsa.DsaError) as failure:
        context.hadamard(x.astype(numpy.float64))
    assert failure.value.code == dsa.Status.DTYPE_MISMATCH and failure.value.message.startswith("x:")
    read_only = numpy.empty((2, 128), numpy.float32)
    read_only.flags.writeable = False
    with pytest.raises(dsa.DsaError) as failure:
        context.hadamard(x, out=read_only)
    assert failure.value.message.startswith("y:")
    with pytest.raises(TypeError):
        context.hadamard([[1.0, 2.0]])


def test_threads_share_a_context_and_get_their_own_errors(context, rng):
    x = rng.standard_normal((4, 256)).astype(numpy.float32)
    expected = context.quantize_fp8(x)
    problems = []

    def work(thread):
        for _ in range(20):
            try:
                context.quantize_fp8(x, group_size=-1 - thread)
                problems.append(f"thread {thread}: no error")
            except dsa.DsaError as error:
                if error.message != f"params.group_size: must be > 0, got {-1 - thread}":
                    problems.append(f"thread {thread}: {error.message}")
            q, scales = context.quantize_fp8(x)
            if not (numpy.array_equal(q.view(numpy.uint8), expected[0].view(numpy.uint8)) and numpy.array_equal(scales, expected[1])):
                problems.append(f"thread {thread}: results differ")

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
