#include "options.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <stdexcept>

namespace stories {
namespace {

const char* kUsage =
    "usage: stories-dsa [options]\n"
    "Converts stories260K to DeepSeek Sparse Attention: trains a lightning indexer per layer by\n"
    "distillation from the frozen dense model, then measures sparse models (FP8 indexer + top-k +\n"
    "bf16 sparse attention, every layer sparse) on held-out sequences. Writes report.json and\n"
    "chart.svg into --out.\n"
    "\n"
    "  --model PATH         model file, or a folder holding stories260K.bin (default: $DSA_MODEL,\n"
    "                       else ../shared/models next to the source tree)\n"
    "  --out DIR            output folder (default ./dsa-demo-out)\n"
    "  --device D           auto (default: CUDA when libdsa can run the demo there), cpu or cuda\n"
    "  --threads N          CPU threads (default: all cores; results do not depend on it)\n"
    "  --seed N             random seed of sampling and training (default 1)\n"
    "  --large              the larger configuration (more data and steps; slower)\n"
    "  --train-sequences N  sampled training sequences\n"
    "  --eval-sequences N   sampled held-out sequences\n"
    "  --seq-len N          tokens per sequence (default 512, at most the model's context)\n"
    "  --steps N            dense warm-up steps (every layer each step)\n"
    "  --sparse-steps N     sparse-stage steps after the warm-up (default 0)\n"
    "  --sparse-k N         the selection size the sparse stage trains on (default 64)\n"
    "  --batch N            sequences per step\n"
    "  --lr X               peak Adam learning rate\n"
    "  --heads N            indexer heads\n"
    "  --dim N              indexer head dim\n"
    "  --rope-dim N         indexer dims with RoPE (even, <= dim)\n"
    "  --init teacher|random  indexer start: the layer's own attention projections, or random\n"
    "  --k LIST             comma-separated k values (default 16,32,64,128)\n"
    "  --no-hadamard        quantise the indexer's q and k to FP8 without the Hadamard rotation\n"
    "  --hybrid-sink N      forced first tokens of the hybrid selection (default 1)\n"
    "  --hybrid-local N     forced last tokens of the hybrid selection (default 8)\n"
    "  --quiet              no progress output\n"
    "  --help               this text\n";

bool parse_integer(const char* text, int64_t low, int64_t high, int64_t* value) {
    char* end = nullptr;
    errno = 0;
    const long long parsed = std::strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < low || parsed > high) return false;
    *value = parsed;
    return true;
}

}  // namespace

DemoOptions default_options(bool large) {
    DemoOptions options;
    const char* environment = std::getenv("DSA_MODEL");
    options.model = environment != nullptr && *environment != '\0' ? environment : STORIES_DSA_DEFAULT_MODEL;
    // The default fits the 5-minute budget on 2 cores. One sequence per step beat larger batches
    // at the same cost (docs/DEMO.md). --large takes several times longer.
    options.train_sequences = large ? 256 : 96;
    options.eval_sequences = large ? 32 : 16;
    options.dense_steps = large ? 3000 : 960;
    options.batch_sequences = 1;
    options.learning_rate = 3e-3f;
    options.indexer = large ? IndexerShape{16, 64, 32} : IndexerShape{16, 32, 32};
    return options;
}

bool parse_options(int argc, char** argv, DemoOptions* options, int* exit_code) {
    bool large = false;
    for (int i = 1; i < argc; ++i) large = large || std::strcmp(argv[i], "--large") == 0;
    *options = default_options(large);
    auto fail = [&](const std::string& message) {
        std::fprintf(stderr, "stories-dsa: %s (see --help)\n", message.c_str());
        *exit_code = 2;
        return false;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::fputs(kUsage, stdout);
            *exit_code = 0;
            return false;
        }
        if (flag == "--large") continue;
        if (flag == "--no-hadamard") { options->rotate = false; continue; }
        if (flag == "--quiet") { options->quiet = true; continue; }
        static const char* const value_flags[] = {
            "--model", "--out", "--device", "--threads", "--seed", "--train-sequences", "--eval-sequences",
            "--seq-len", "--steps", "--sparse-steps", "--sparse-k", "--batch", "--lr", "--heads", "--dim",
            "--rope-dim", "--init", "--k", "--hybrid-sink", "--hybrid-local"};
        if (std::find(std::begin(value_flags), std::end(value_flags), flag) == std::end(value_flags))
            return fail("unknown option " + flag);
        if (i + 1 >= argc) return fail(flag + " needs a value");
        const char* value = argv[++i];
        int64_t n = 0;
        auto integer = [&](int64_t low, int64_t high) {
            if (!parse_integer(value, low, high, &n))
                throw std::invalid_argument(flag + ": expected an integer in [" + std::to_string(low) + ", " +
                                            std::to_string(high) + "], got '" + value + "'");
            return n;
        };
        try {
            if (flag == "--model") options->model = value;
            else if (flag == "--out") options->out = value;
            else if (flag == "--device") {
                const std::string device = value;
                if (device == "auto") options->device = DeviceChoice::automatic;
                else if (device == "cpu") options->device = DeviceChoice::cpu;
                else if (device == "cuda") options->device = DeviceChoice::cuda;
                else return fail("--device: expected auto, cpu or cuda, got '" + device + "'");
            } else if (flag == "--threads") options->threads = static_cast<int>(integer(0, 1024));
            else if (flag == "--seed") options->seed = static_cast<uint64_t>(integer(0, INT64_MAX));
            else if (flag == "--train-sequences") options->train_sequences = integer(1, 100000);
            else if (flag == "--eval-sequences") options->eval_sequences = integer(1, 100000);
            else if (flag == "--seq-len") options->seq_len = integer(2, 1 << 20);
            else if (flag == "--steps") options->dense_steps = integer(0, 1000000);
            else if (flag == "--sparse-steps") options->sparse_steps = integer(0, 1000000);
            else if (flag == "--sparse-k") options->sparse_k = static_cast<int32_t>(integer(1, 1 << 20));
            else if (flag == "--batch") options->batch_sequences = integer(1, 100000);
            else if (flag == "--lr") {
                char* end = nullptr;
                const float rate = std::strtof(value, &end);
                if (end == value || *end != '\0' || !(rate > 0.0f) || rate > 1.0f)
                    return fail("--lr: expected a number in (0, 1], got '" + std::string(value) + "'");
                options->learning_rate = rate;
            } else if (flag == "--heads") options->indexer.heads = static_cast<int32_t>(integer(1, 1024));
            else if (flag == "--dim") options->indexer.dim = static_cast<int32_t>(integer(1, 1024));
            else if (flag == "--rope-dim") options->indexer.rope_dim = static_cast<int32_t>(integer(0, 1024));
            else if (flag == "--init") {
                const std::string init = value;
                if (init == "teacher") options->init = IndexerInit::teacher;
                else if (init == "random") options->init = IndexerInit::random;
                else return fail("--init: expected teacher or random, got '" + init + "'");
            } else if (flag == "--k") {
                options->k_values.clear();
                std::stringstream list(value);
                std::string item;
                while (std::getline(list, item, ','))
                    if (!parse_integer(item.c_str(), 1, 1 << 20, &n)) return fail("--k: bad entry '" + item + "'");
                    else options->k_values.push_back(static_cast<int32_t>(n));
                if (options->k_values.empty()) return fail("--k: empty list");
            } else if (flag == "--hybrid-sink") options->hybrid_sink = static_cast<int32_t>(integer(0, 1 << 20));
            else if (flag == "--hybrid-local") options->hybrid_local = static_cast<int32_t>(integer(0, 1 << 20));
        } catch (const std::invalid_argument& error) {
            return fail(error.what());
        }
    }
    const IndexerShape& shape = options->indexer;
    if (shape.rope_dim > shape.dim || shape.rope_dim % 2 != 0) return fail("--rope-dim must be even and <= --dim");
    if (options->rotate && (shape.dim & (shape.dim - 1)) != 0)
        return fail("the Hadamard rotation needs a power-of-two --dim (or pass --no-hadamard)");
    for (int32_t k : options->k_values)
        if (options->hybrid_sink + options->hybrid_local > k)
            return fail("--hybrid-sink + --hybrid-local must not exceed the smallest k");
    return true;
}

}  // namespace stories
