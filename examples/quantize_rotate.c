/* Rotate a batch of vectors with the Hadamard transform (as DeepSeek does to indexer q and k
 * before FP8), quantise them to FP8 e4m3 with power-of-two scales and back, and print the
 * relative round-trip error with and without the rotation, plus one refused call. */
#include <dsa.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 512
#define DIM 128

static int check(dsa_status_t status, const char* what) {
    if (status == DSA_STATUS_SUCCESS) return 0;
    fprintf(stderr, "%s failed: %s: %s\n", what, dsa_status_string(status), dsa_last_error_message());
    return 1;
}

/* Quantise x with ue8m0 scales, dequantise, and return ||x^ - x|| / ||x||. */
static double round_trip_error(dsa_context_t* context, float* x, uint8_t* codes, float* scales, float* back) {
    const int64_t shape[2] = {ROWS, DIM}, scale_shape[2] = {ROWS, 1};
    dsa_tensor_t xt, qt, st, yt;
    dsa_quantize_fp8_params_t params;
    double error = 0.0, norm = 0.0;
    int i;
    if (dsa_tensor_init_contiguous(&xt, x, 2, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0) ||
        dsa_tensor_init_contiguous(&qt, codes, 2, shape, DSA_DTYPE_FP8_E4M3, DSA_DEVICE_CPU, 0) ||
        dsa_tensor_init_contiguous(&st, scales, 2, scale_shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0) ||
        dsa_tensor_init_contiguous(&yt, back, 2, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0))
        return -1.0;
    dsa_quantize_fp8_params_init(&params);
    params.scale_format = DSA_SCALE_FORMAT_UE8M0;
    if (check(dsa_quantize_fp8(context, &params, &xt, &qt, &st, NULL), "dsa_quantize_fp8") ||
        check(dsa_dequantize_fp8(context, &params, &qt, &st, &yt, NULL), "dsa_dequantize_fp8"))
        return -1.0;
    for (i = 0; i < ROWS * DIM; ++i) {
        error += (back[i] - x[i]) * (double)(back[i] - x[i]);
        norm += x[i] * (double)x[i];
    }
    return sqrt(error / norm);
}

int main(void) {
    static float x[ROWS * DIM], rotated[ROWS * DIM], back[ROWS * DIM];
    static uint8_t codes[ROWS * DIM];
    static float scales[ROWS];
    const int64_t shape[2] = {ROWS, DIM};
    dsa_context_t* context = NULL;
    dsa_tensor_t xt, rt;
    double plain, with_rotation;
    unsigned seed = 12345u;
    int i;

    /* Gaussian-ish activations with a few large outlier channels, as real activations have. */
    for (i = 0; i < ROWS * DIM; ++i) {
        double sum = 0.0;
        int k;
        for (k = 0; k < 4; ++k) {
            seed = seed * 1664525u + 1013904223u;
            sum += (seed >> 8) / 16777216.0 - 0.5;
        }
        x[i] = (float)sum * ((i % DIM) % 37 == 0 ? 40.0f : 1.0f);
    }
    printf("%s\n", dsa_build_info());
    if (check(dsa_context_create(&context, NULL), "dsa_context_create")) return 1;
    if (dsa_tensor_init_contiguous(&xt, x, 2, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0) ||
        dsa_tensor_init_contiguous(&rt, rotated, 2, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0))
        return 1;
    if (check(dsa_hadamard(context, NULL, &xt, &rt, NULL), "dsa_hadamard")) return 1;

    plain = round_trip_error(context, x, codes, scales, back);
    with_rotation = round_trip_error(context, rotated, codes, scales, back);
    /* Undo the rotation (it is its own inverse) and confirm it returns the input. */
    if (check(dsa_hadamard(context, NULL, &rt, &rt, NULL), "dsa_hadamard (inverse)")) return 1;
    {
        double worst = 0.0;
        for (i = 0; i < ROWS * DIM; ++i) worst = fmax(worst, fabs(rotated[i] - x[i]));
        printf("Hadamard applied twice: max |x - H(H(x))| = %.2e\n", worst);
    }
    printf("FP8 e4m3 round trip, %d x %d, ue8m0 scales per 128:\n", ROWS, DIM);
    printf("  relative error without rotation: %.4f\n", plain);
    printf("  relative error with rotation:    %.4f\n", with_rotation);

    /* An error path: a group size that does not divide the row length. */
    {
        dsa_quantize_fp8_params_t params;
        dsa_tensor_t qt, st;
        const int64_t scale_shape[2] = {ROWS, 2};
        dsa_quantize_fp8_params_init(&params);
        params.group_size = 96;
        dsa_tensor_init_contiguous(&qt, codes, 2, shape, DSA_DTYPE_FP8_E4M3, DSA_DEVICE_CPU, 0);
        dsa_tensor_init_contiguous(&st, scales, 2, scale_shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0);
        const dsa_status_t status = dsa_quantize_fp8(context, &params, &xt, &qt, &st, NULL);
        printf("a bad call is refused: %s: %s\n", dsa_status_string(status), dsa_last_error_message());
        if (status != DSA_STATUS_INVALID_ARGUMENT) return 1;
    }
    dsa_context_destroy(context);
    return plain > 0.0 && plain < 0.05 && with_rotation > 0.0 && with_rotation < 0.05 ? 0 : 1;
}
