// The public header compiles as C++17 (-Wall -Wextra -Wpedantic -Werror) and links.
#include "dsa.h"

#include <cstdio>

int main() {
    dsa_hadamard_params_t params;
    if (dsa_hadamard_params_init(&params) != DSA_STATUS_SUCCESS) return 1;
    std::printf("%s\n", dsa_version_string());
    return dsa_version() == DSA_VERSION_NUMBER ? 0 : 1;
}
