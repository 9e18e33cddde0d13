/* The public header compiles as strict C (C99 and C11, -Wpedantic -Werror) and links. */
#include "dsa.h"

#include <stdio.h>

int main(void) {
    dsa_context_t* context = NULL;
    dsa_quantize_fp8_params_t params;
    if (dsa_quantize_fp8_params_init(&params) != DSA_STATUS_SUCCESS) return 1;
    if (dsa_context_create(&context, NULL) != DSA_STATUS_SUCCESS) return 1;
    dsa_context_destroy(context);
    if (dsa_version() != DSA_VERSION_NUMBER) return 1;
    printf("%s\n", dsa_build_info());
    return 0;
}
