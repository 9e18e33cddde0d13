#include "isa.hpp"

namespace dsa::cpu {

std::string vector_path() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return __builtin_cpu_supports("fma") ? "avx2+fma" : "avx2";
#endif
    return "baseline";
}

}  // namespace dsa::cpu
