// The demo's command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "device.hpp"
#include "indexer.hpp"

namespace stories {

struct DemoOptions {
    std::string model;  // file or folder (then stories260K.bin inside it)
    std::string out = "dsa-demo-out";
    DeviceChoice device = DeviceChoice::automatic;
    int threads = 0;
    uint64_t seed = 1;
    int64_t train_sequences = 0, eval_sequences = 0, seq_len = 512;
    int64_t dense_steps = 0, sparse_steps = 0, batch_sequences = 0;
    int32_t sparse_k = 64;
    float learning_rate = 0.0f;
    IndexerShape indexer;
    IndexerInit init = IndexerInit::teacher;
    std::vector<int32_t> k_values{16, 32, 64, 128};
    bool rotate = true;
    int32_t hybrid_sink = 1, hybrid_local = 8;
    bool quiet = false;
    int64_t greedy_tokens = 32;
};

// The default configuration, or the larger one (--large).
DemoOptions default_options(bool large);

// Parses argv (argv[0] is the program). Returns false with *exit_code set when the program should
// stop: 0 after --help, 2 after a bad argument (the message is printed on stderr).
bool parse_options(int argc, char** argv, DemoOptions* options, int* exit_code);

}  // namespace stories
