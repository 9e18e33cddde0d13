// The demo's outputs: the table on stdout, report.json and chart.svg.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "evaluation.hpp"

namespace stories {

struct Report {
    std::string model, device;
    int64_t train_sequences = 0, eval_sequences = 0, seq_len = 0;
    uint64_t seed = 0;
    std::string indexer;   // a JSON object describing the indexer and its training (written as is)
    std::vector<float> training_loss;
    std::vector<int32_t> greedy_tokens;
    std::vector<Metrics> results;
    double dense_ppl = 0.0;
    Metrics bf16_dense;  // every token selected: the bf16 path's own error, the noise floor
    double seconds = 0.0;
};

void print_table(const Report& report);

// report.json: the results and settings; "seconds" is alone on the last line, the only value that
// differs between two runs with the same settings on the CPU.
std::string report_json(const Report& report);

// chart.svg: mass recall and KL against k, one line per method.
std::string report_svg(const Report& report);

}  // namespace stories
