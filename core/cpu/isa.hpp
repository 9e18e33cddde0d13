// Run-time choice of the CPU vector path: functions marked DSA_CPU_MULTIVERSION are compiled for
// AVX-512, AVX2 and baseline x86-64, and the loader picks the best the machine supports (GCC/Clang
// function multiversioning), so the library runs on any x86-64 without -march=native.
#pragma once

#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DSA_NO_MULTIVERSION)
#define DSA_CPU_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DSA_CPU_MULTIVERSION
#endif

namespace dsa::cpu {
// "avx512f", "avx2+fma" or "baseline": the widest path DSA_CPU_MULTIVERSION code takes here.
std::string vector_path();
}  // namespace dsa::cpu
