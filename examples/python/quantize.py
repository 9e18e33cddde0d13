"""Quantises a batch of activations to FP8 with libdsa, dequantises it, prints the round-trip
error with and without a Hadamard rotation (undone afterwards), then shows a refused call.

    PYTHONPATH=bindings/python DSA_LIBRARY=build/libdsa.so python3 examples/python/quantize.py
"""
import sys

import numpy

import dsa


def relative_error(approximation, x):
    return numpy.linalg.norm(approximation - x) / numpy.linalg.norm(x)


def fp8_round_trip(context, x):
    q, scales = context.quantize_fp8(x, scale_format="ue8m0")
    return context.dequantize_fp8(q, scales)


def main():
    print(dsa.build_info())
    rng = numpy.random.default_rng(12345)
    x = rng.standard_normal((512, 128)).astype(numpy.float32)
    x[:, ::37] *= 40  # a few outlier channels, as real activations have
    with dsa.Context() as context:
        plain = relative_error(fp8_round_trip(context, x), x)
        # The orthonormal rotation is its own inverse: rotate, round-trip, rotate back.
        rotated = relative_error(context.hadamard(fp8_round_trip(context, context.hadamard(x))), x)
        print(f"FP8 round-trip error: {plain:.4f} plain, {rotated:.4f} through the Hadamard rotation")
        if not (plain < 0.05 and rotated < 0.05):
            sys.exit("round-trip error too large")
        try:
            context.quantize_fp8(x, group_size=100)
        except dsa.DsaError as error:
            print(f"refused as expected ({error.code.name}): {error.message}")
        else:
            sys.exit("a group size of 100 for rows of 128 was accepted")


if __name__ == "__main__":
    main()
