#include "demo.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "evaluation.hpp"
#include "linalg.hpp"
#include "progress.hpp"
#include "training.hpp"

namespace stories {
namespace {

std::string indexer_description(const DemoOptions& o) {
    std::ostringstream out;
    out << "{\"heads\": " << o.indexer.heads << ", \"dim\": " << o.indexer.dim << ", \"rope_dim\": " << o.indexer.rope_dim
        << ", \"init\": \"" << (o.init == IndexerInit::teacher ? "teacher" : "random") << "\", \"hadamard\": "
        << (o.rotate ? "true" : "false") << ", \"dense_steps\": " << o.dense_steps << ", \"sparse_steps\": " << o.sparse_steps
        << ", \"sparse_k\": " << o.sparse_k << ", \"batch_sequences\": " << o.batch_sequences
        << ", \"learning_rate\": " << o.learning_rate << ", \"hybrid_sink\": " << o.hybrid_sink
        << ", \"hybrid_local\": " << o.hybrid_local << "}";
    return out.str();
}

void say(const DemoOptions& options, const std::string& line) {
    if (!options.quiet) std::printf("%s\n", line.c_str());
}

}  // namespace

std::string resolve_model_path(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code error;
    const fs::path given(path);
    const fs::path file = fs::is_directory(given, error) ? given / "stories260K.bin" : given;
    if (!fs::is_regular_file(file, error))
        throw ModelNotFound("model not found: " + file.string() +
                            " (pass --model FILE_OR_FOLDER or set DSA_MODEL; the shared copy is "
                            "../shared/models/stories260K.bin next to the repository)");
    return file.string();
}

Report run_demo(const DemoOptions& options) {
    const auto start = std::chrono::steady_clock::now();
    set_worker_threads(options.threads);
    const std::string model_path = resolve_model_path(options.model);
    const Model model = load_model(model_path);
    const ModelConfig& c = model.config;
    if (options.seq_len > c.seq_len)
        throw std::runtime_error("--seq-len " + std::to_string(options.seq_len) + " exceeds the model's context of " +
                                 std::to_string(c.seq_len));
    for (int32_t k : options.k_values)
        if (k >= options.seq_len)
            throw std::runtime_error("--k " + std::to_string(k) + ": every k must be below --seq-len " +
                                     std::to_string(options.seq_len) + " (metrics use positions t >= k)");

    std::string note;
    const Device device = Device::open(options.device, options.threads, &note);
    if (!note.empty()) say(options, "device: " + note);

    Report report;
    report.model = std::filesystem::path(model_path).stem().string();
    report.device = device.name();
    report.train_sequences = options.train_sequences;
    report.eval_sequences = options.eval_sequences;
    report.seq_len = options.seq_len;
    report.seed = options.seed;
    report.indexer = indexer_description(options);
    say(options, "model " + model_path + ": dim " + std::to_string(c.dim) + ", " + std::to_string(c.n_layers) +
                     " layers, " + std::to_string(c.n_heads) + " query heads / " + std::to_string(c.n_kv_heads) +
                     " kv heads of " + std::to_string(c.head_size()) + ", vocabulary " + std::to_string(c.vocab_size) +
                     "; libdsa on " + device.name() + ", " + std::to_string(worker_threads()) + " threads");

    // 1. The loader check: greedy decoding from BOS.
    report.greedy_tokens = greedy_decode(model, options.greedy_tokens);
    std::string greedy = "greedy from BOS:";
    for (int32_t token : report.greedy_tokens) greedy += " " + std::to_string(token);
    say(options, greedy);

    // 2. Training and held-out sequences from separate random streams.
    Progress sampling("sampling", 1, options.quiet);
    const std::vector<int32_t> train_tokens =
        sample_sequences(model, options.train_sequences, options.seq_len, options.seed, 0);
    std::vector<int32_t> eval_tokens =
        sample_sequences(model, options.eval_sequences, options.seq_len, options.seed, uint64_t(1) << 32);
    sampling.finish("(" + std::to_string(options.train_sequences) + " training + " +
                    std::to_string(options.eval_sequences) + " held-out sequences of " +
                    std::to_string(options.seq_len) + " tokens)");

    // 3-4. The teacher, then one indexer per layer.
    const TeacherData teacher = capture_teacher(model, train_tokens, options.seq_len);
    std::vector<LayerIndexer> indexers;
    for (int layer = 0; layer < c.n_layers; ++layer)
        indexers.emplace_back(model, layer, options.indexer, options.init, options.seed);
    TrainingOptions training;
    training.dense_steps = options.dense_steps;
    training.sparse_steps = options.sparse_steps;
    training.sparse_k = options.sparse_k;
    training.batch_sequences = options.batch_sequences;
    training.learning_rate = options.learning_rate;
    training.rotate = options.rotate;
    training.seed = options.seed;
    training.quiet = options.quiet;
    report.training_loss = train_indexers(model, device, teacher, indexers, training).loss;

    // 5. Every configuration on the held-out set.
    EvaluationOptions evaluation_options;
    evaluation_options.rotate = options.rotate;
    evaluation_options.hybrid_sink = options.hybrid_sink;
    evaluation_options.hybrid_local = options.hybrid_local;
    const Evaluator evaluator(model, device, indexers, std::move(eval_tokens), options.seq_len, evaluation_options);
    report.dense_ppl = evaluator.dense_ppl();
    const std::vector<bool> all_sparse(static_cast<size_t>(c.n_layers), true);
    std::vector<bool> first_dense = all_sparse;
    first_dense[0] = false;
    std::vector<Configuration> configurations;
    for (int32_t k : options.k_values) {
        for (Method method : {Method::oracle, Method::window, Method::indexer, Method::hybrid})
            configurations.push_back({method_name(method), method, k, all_sparse, k});
        configurations.push_back({"indexer_dense_layer0", Method::indexer, k, first_dense, k});
    }
    const Configuration bf16_dense{"bf16_dense", Method::window, static_cast<int32_t>(options.seq_len), all_sparse, 0};
    Progress progress("evaluating", static_cast<int64_t>(configurations.size()) + 1, options.quiet);
    report.bf16_dense = evaluator.run(bf16_dense);
    for (size_t i = 0; i < configurations.size(); ++i) {
        progress.update(static_cast<int64_t>(i), configurations[i].name + " k=" + std::to_string(configurations[i].k));
        report.results.push_back(evaluator.run(configurations[i]));
    }
    progress.finish("(" + std::to_string(configurations.size() + 1) + " configurations)");
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
}

}  // namespace stories
