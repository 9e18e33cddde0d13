// Cases of the training ops.
//
// TRAINING OPS GO HERE. dsa_indexer_loss (DSA_SPEC 8.1) and dsa_sparse_attention_backward
// (DSA_SPEC 8.2) are being written on branch `training`; this branch may merge it once they are
// committed with their bindings. Then add one case each, following ops_indexer.cpp:
//   - indexer_loss: T, S, H_I, D_I, H_q, d, mode (0 dense, 1 sparse with k); FLOP of the
//     student (2 * H_I * D_I per pair, forward and the two gradient products) plus the teacher's
//     q.k; checked against the oracle on sampled rows (row_loss, d_weights, d_index_q rows).
//   - sparse_attention_backward: the sparse_attention shapes; FLOP 2.5x the forward's (dQ, dKV
//     and the recomputed P); checked against the oracle on sampled rows.
// and add them to the smoke and deepseek presets (the smoke test requires every registered op).
#include "bench/bench.hpp"

namespace dsa_bench {

void add_training_ops(std::vector<Op>&) {}

}  // namespace dsa_bench
