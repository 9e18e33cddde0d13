// Unit tests of the demo's own maths and plumbing, on a small random model written in the
// llama2.c format (no dependency on ../shared).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "demo.hpp"
#include "device.hpp"
#include "evaluation.hpp"
#include "indexer.hpp"
#include "linalg.hpp"
#include "model.hpp"
#include "options.hpp"
#include "random.hpp"
#include "report.hpp"
#include "training.hpp"

using namespace stories;

namespace {

std::vector<float> random_values(int64_t count, uint64_t stream, double scale = 1.0) {
    Random random(42, stream);
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = static_cast<float>(random.normal() * scale);
    return values;
}

// A random checkpoint: dim 16, hidden 24, 2 layers, 4 heads over 2 kv heads, vocabulary 32,
// context 40. Returns its path (under the build's temporary folder).
std::string write_random_model(const std::string& name, int32_t vocab_sign = 1) {
    const int32_t dim = 16, hidden = 24, layers = 2, heads = 4, kv_heads = 2, vocab = 32, seq_len = 40;
    const int32_t kv_dim = dim / heads * kv_heads, head_size = dim / heads;
    const int32_t header[7] = {dim, hidden, layers, heads, kv_heads, vocab * vocab_sign, seq_len};
    const std::string path = (std::filesystem::temp_directory_path() / name).string();
    std::ofstream file(path, std::ios::binary);
    file.write(reinterpret_cast<const char*>(header), sizeof(header));
    uint64_t stream = 0;
    auto put = [&](int64_t count, double scale, double offset = 0.0) {
        std::vector<float> values = random_values(count, ++stream, scale);
        for (float& v : values) v += static_cast<float>(offset);
        file.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * 4));
    };
    put(int64_t(vocab) * dim, 1.0);
    put(int64_t(layers) * dim, 0.1, 1.0);
    put(int64_t(layers) * dim * dim, 0.5);
    put(int64_t(layers) * kv_dim * dim, 0.5);
    put(int64_t(layers) * kv_dim * dim, 0.5);
    put(int64_t(layers) * dim * dim, 0.3);
    put(int64_t(layers) * dim, 0.1, 1.0);
    put(int64_t(layers) * hidden * dim, 0.3);
    put(int64_t(layers) * dim * hidden, 0.3);
    put(int64_t(layers) * hidden * dim, 0.3);
    put(dim, 0.1, 1.0);
    put(int64_t(seq_len) * head_size, 1.0);  // the two legacy RoPE tables
    if (vocab_sign < 0) put(int64_t(vocab) * dim, 1.0);
    return path;
}

const Model& test_model() {
    static const Model model = load_model(write_random_model("stories_dsa_test_model.bin"));
    return model;
}

std::vector<int32_t> test_tokens(int64_t sequences, int64_t length) {
    return sample_sequences(test_model(), sequences, length, 7, 0);
}

}  // namespace

TEST_CASE("matrix_times_matrix: every row equals the plain loop, bit for bit, for any row count") {
    for (int64_t rows : {1, 3, 4, 5, 9})
        for (int64_t n : {1, 7, 8, 13, 24}) {
            const int64_t m = 11;
            const std::vector<float> x = random_values(rows * m, 1), w = random_values(m * n, 2);
            std::vector<float> y(static_cast<size_t>(rows * n), NAN);
            matrix_times_matrix(x.data(), m, rows, w.data(), m, n, y.data(), n);
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = 0; j < n; ++j) {
                    float expected = 0.0f;
                    for (int64_t i = 0; i < m; ++i) expected += x[r * m + i] * w[i * n + j];
                    CHECK(y[r * n + j] == expected);
                }
        }
}

TEST_CASE("exp_in_place is within 2 ulp of exp, and 0 below -87") {
    std::vector<float> x;
    for (float v = -90.0f; v < 88.0f; v += 0.0137f) x.push_back(v);
    std::vector<float> y = x;
    exp_in_place(y.data(), static_cast<int64_t>(y.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        if (x[i] < -87.0f) {
            CHECK(y[i] == 0.0f);
            continue;
        }
        const double expected = std::exp(static_cast<double>(x[i]));
        CHECK(std::fabs(y[i] - expected) <= 2.4e-7 * expected);
    }
}

TEST_CASE("sum_of, max_of and dot over lengths that are not multiples of 8") {
    for (int64_t n : {0, 1, 7, 8, 9, 31, 100}) {
        const std::vector<float> a = random_values(n, 3), b = random_values(n, 4);
        double sum = 0.0, product = 0.0;
        float top = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < n; ++i) {
            sum += a[i];
            product += double(a[i]) * b[i];
            top = std::max(top, a[i]);
        }
        CHECK(sum_of(a.data(), n) == doctest::Approx(sum).epsilon(1e-5));
        CHECK(dot(a.data(), b.data(), n) == doctest::Approx(product).epsilon(1e-5));
        CHECK(max_of(a.data(), n) == top);
    }
}

TEST_CASE("rotate_pairs: the inverse rotation undoes it, and odd tails are untouched") {
    const RopeTable rope(10, 12, 8);
    std::vector<float> v = random_values(13, 5), original = v;
    rotate_pairs(v.data(), 12, rope.angles(7), false);
    CHECK(v[12] == original[12]);
    CHECK(v[0] != original[0]);
    rotate_pairs(v.data(), 12, rope.angles(7), true);
    for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(original[i]).epsilon(1e-6));
}

TEST_CASE("parallel_for runs every index once, in chunks that do not depend on the thread count") {
    for (int threads : {1, 3}) {
        set_worker_threads(threads);
        std::vector<int> seen(1001, 0);
        std::vector<int64_t> chunk_starts(1001, -1);
        parallel_for(1001, 64, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                ++seen[i];
                chunk_starts[i] = begin;
            }
        });
        for (int64_t i = 0; i < 1001; ++i) {
            CHECK(seen[i] == 1);
            CHECK(chunk_starts[i] == i / 64 * 64);
        }
    }
    set_worker_threads(0);
}

TEST_CASE("load_model: tied and untied classifiers; clear errors for missing, short and bad files") {
    const Model& tied = test_model();
    CHECK(tied.config.dim == 16);
    CHECK(tied.config.kv_dim() == 8);
    CHECK(tied.classifier.size() == tied.embedding.size());
    CHECK(tied.classifier[1 * 32 + 5] == tied.embedding[5 * 16 + 1]);  // transposed embedding
    const Model untied = load_model(write_random_model("stories_dsa_untied.bin", -1));
    CHECK(untied.config.vocab_size == 32);
    CHECK(untied.classifier[1 * 32 + 5] != untied.embedding[5 * 16 + 1]);

    CHECK_THROWS_WITH_AS(load_model("/nonexistent/model.bin"), doctest::Contains("cannot open"), std::runtime_error);
    const std::string path = write_random_model("stories_dsa_short.bin");
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
    CHECK_THROWS_WITH_AS(load_model(path), doctest::Contains("describes"), std::runtime_error);
    {
        std::ofstream file(path, std::ios::binary | std::ios::trunc);
        const int32_t header[7] = {16, 24, 2, 3, 2, 32, 40};  // 3 heads do not divide dim 16
        file.write(reinterpret_cast<const char*>(header), sizeof(header));
    }
    CHECK_THROWS_WITH_AS(load_model(path), doctest::Contains("n_heads"), std::runtime_error);
    CHECK_THROWS_AS(resolve_model_path("/nonexistent/folder"), ModelNotFound);
}

TEST_CASE("the batch forward and the KV-cache decoder agree") {
    const Model& model = test_model();
    const std::vector<int32_t> greedy = greedy_decode(model, 39);
    REQUIRE(greedy.size() == 40);
    DenseAttention dense(model);
    const std::vector<float> logits = forward(model, greedy, 40, dense);
    for (int64_t t = 0; t + 1 < 40; ++t) {
        const float* row = &logits[t * 32];
        CHECK(std::max_element(row, row + 32) - row == greedy[t + 1]);
    }
    // Sampling: the same streams give the same sequences whatever else is sampled.
    const std::vector<int32_t> three = sample_sequences(model, 3, 20, 9, 100);
    const std::vector<int32_t> two = sample_sequences(model, 2, 20, 9, 101);
    CHECK(std::equal(two.begin(), two.end(), three.begin() + 20));
}

TEST_CASE("indexer backward is the adjoint of its forward") {
    const Model& model = test_model();
    const IndexerShape shape{3, 8, 4};
    LayerIndexer indexer(model, 1, shape, IndexerInit::random, 5);
    const int64_t rows = 20, seq_len = 10;
    const std::vector<float> x = random_values(rows * 16, 6);
    IndexerActivations base, moved;
    indexer.forward(x.data(), rows, seq_len, base);
    std::vector<float> d_q = random_values(rows * 3 * 8, 7), d_k = random_values(rows * 8, 8);
    const std::vector<float> d_w = random_values(rows * 3, 9);
    const std::vector<float> upstream_q = d_q, upstream_k = d_k;
    std::vector<float> gradient(static_cast<size_t>(indexer.parameter_count()), 0.0f);
    indexer.backward(x.data(), rows, seq_len, d_q.data(), d_k.data(), d_w.data(), gradient.data());
    // Every activation is linear in the parameters: forward(p + e) - forward(p) = J e exactly.
    const std::vector<float> direction = random_values(indexer.parameter_count(), 10, 1e-2);
    for (int64_t i = 0; i < indexer.parameter_count(); ++i) indexer.parameters()[i] += direction[i];
    indexer.forward(x.data(), rows, seq_len, moved);
    double change = 0.0, predicted = 0.0;
    for (size_t i = 0; i < base.q.size(); ++i) change += double(moved.q[i] - base.q[i]) * upstream_q[i];
    for (size_t i = 0; i < base.k.size(); ++i) change += double(moved.k[i] - base.k[i]) * upstream_k[i];
    for (size_t i = 0; i < base.weights.size(); ++i) change += double(moved.weights[i] - base.weights[i]) * d_w[i];
    for (size_t i = 0; i < direction.size(); ++i) predicted += double(gradient[i]) * direction[i];
    CHECK(change == doctest::Approx(predicted).epsilon(1e-3));
}

TEST_CASE("teacher init: indexer head h scores q_h . k of its kv head, as the layer's attention does") {
    const Model& model = test_model();
    const std::vector<int32_t> tokens = test_tokens(1, 30);
    const TeacherData teacher = capture_teacher(model, tokens, 30);
    const IndexerShape shape{6, 8, 8};
    const LayerIndexer indexer(model, 1, shape, IndexerInit::teacher, 3);
    IndexerActivations activations;
    indexer.forward(teacher.normed[1].data(), 30, 30, activations);
    for (int64_t t = 0; t < 30; t += 7)
        for (int64_t s = 0; s <= t; s += 3)
            for (int64_t h = 0; h < 4; ++h) {
                const int64_t g = h / 2;
                double indexer_dot = 0.0, teacher_dot = 0.0;
                for (int64_t d = 0; d < 8; ++d) indexer_dot += activations.q[(t * 6 + h) * 8 + d] * activations.k[s * 8 + d];
                for (int64_t d = 0; d < 4; ++d)
                    teacher_dot += teacher.query[1][t * 16 + h * 4 + d] * teacher.key[1][s * 8 + g * 4 + d];
                CHECK(indexer_dot == doctest::Approx(teacher_dot).epsilon(1e-4).scale(1.0));
            }
    CHECK_THROWS_WITH_AS(LayerIndexer(model, 0, IndexerShape{2, 8, 8}, IndexerInit::teacher, 3),
                         doctest::Contains("heads >= 4"), std::runtime_error);
}

TEST_CASE("training and evaluation are bitwise the same for any thread count") {
    const Model& model = test_model();
    const std::vector<int32_t> tokens = test_tokens(3, 32);
    const TeacherData teacher = capture_teacher(model, tokens, 32);
    TrainingOptions options;
    options.dense_steps = 3;
    options.sparse_steps = 2;
    options.sparse_k = 8;
    options.batch_sequences = 2;
    options.quiet = true;
    std::vector<std::vector<float>> trained;
    std::vector<std::string> reports;
    for (int threads : {1, 2}) {
        set_worker_threads(threads);
        const Device device = Device::open(DeviceChoice::cpu, threads, nullptr);
        std::vector<LayerIndexer> indexers;
        for (int layer = 0; layer < 2; ++layer) indexers.emplace_back(model, layer, IndexerShape{4, 8, 4}, IndexerInit::random, 1);
        const TrainingLog log = train_indexers(model, device, teacher, indexers, options);
        CHECK(log.loss.size() == 5);
        trained.push_back(indexers[1].parameters());
        const Evaluator evaluator(model, device, indexers, test_tokens(2, 32), 32, EvaluationOptions{true, 1, 2});
        Report report;
        report.results.push_back(evaluator.run({"hybrid", Method::hybrid, 8, {true, true}, 8}));
        reports.push_back(report_json(report));
    }
    set_worker_threads(0);
    CHECK(trained[0] == trained[1]);
    CHECK(reports[0] == reports[1]);
}

TEST_CASE("evaluation: selecting every token reproduces the dense model up to bf16; the oracle beats the window") {
    const Model& model = test_model();
    const Device device = Device::open(DeviceChoice::cpu, 0, nullptr);
    const std::vector<LayerIndexer> indexers;  // no indexer method runs here
    const Evaluator evaluator(model, device, indexers, test_tokens(2, 40), 40, EvaluationOptions{});
    const Metrics everything = evaluator.run({"all", Method::window, 40, {true, true}, 0});
    CHECK(everything.mass_recall == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(everything.oracle_overlap == doctest::Approx(1.0));
    CHECK(everything.kl < 1e-3);
    CHECK(everything.ppl == doctest::Approx(evaluator.dense_ppl()).epsilon(0.02));
    const Metrics oracle = evaluator.run({"oracle", Method::oracle, 4, {true, true}, 4});
    const Metrics window = evaluator.run({"window", Method::window, 4, {true, true}, 4});
    const Metrics half = evaluator.run({"oracle", Method::oracle, 4, {false, true}, 4});
    CHECK(oracle.oracle_overlap == 1.0);
    CHECK(oracle.mass_recall > window.mass_recall);
    CHECK(oracle.worst_head_mass <= oracle.mass_recall);
    CHECK(oracle.positions == 2 * 36);
    CHECK(half.sparse_layers == std::vector<int>{1});
    CHECK(half.layer_mass_recall[0] == 0.0);
}

TEST_CASE("devices: the CPU always opens; asking for CUDA where it cannot run is a clear error") {
    std::string note = "unchanged";
    const Device cpu = Device::open(DeviceChoice::cpu, 1, &note);
    CHECK(std::string(cpu.name()) == "cpu");
    CHECK(note.empty());
    const Device automatic = Device::open(DeviceChoice::automatic, 1, &note);
    if (!automatic.is_cuda()) CHECK(note.find("running on the CPU") != std::string::npos);
    if (!automatic.is_cuda())
        CHECK_THROWS_WITH_AS(Device::open(DeviceChoice::cuda, 1, nullptr), doctest::Contains("--device cuda"),
                             std::runtime_error);
}

TEST_CASE("options: defaults, overrides and refused values") {
    auto parse = [](std::vector<const char*> arguments, DemoOptions* options) {
        arguments.insert(arguments.begin(), "stories-dsa");
        int exit_code = -1;
        const bool ok = parse_options(static_cast<int>(arguments.size()), const_cast<char**>(arguments.data()), options,
                                      &exit_code);
        return ok ? -1 : exit_code;
    };
    DemoOptions options;
    CHECK(parse({"--k", "16,32", "--steps", "5", "--device", "cpu", "--no-hadamard"}, &options) == -1);
    CHECK(options.k_values == std::vector<int32_t>{16, 32});
    CHECK(options.dense_steps == 5);
    CHECK(options.device == DeviceChoice::cpu);
    CHECK_FALSE(options.rotate);
    CHECK(parse({"--large"}, &options) == -1);
    CHECK(options.train_sequences > default_options(false).train_sequences);
    CHECK(parse({"--steps", "-3"}, &options) == 2);
    CHECK(parse({"--k", "8,x"}, &options) == 2);
    CHECK(parse({"--k", "8"}, &options) == 2);  // below the default hybrid's 1 + 8 forced tokens
    CHECK(parse({"--device", "tpu"}, &options) == 2);
    CHECK(parse({"--frobnicate"}, &options) == 2);
    CHECK(parse({"--dim", "24"}, &options) == 2);  // Hadamard needs a power of two
    CHECK(parse({"--dim", "24", "--rope-dim", "8", "--no-hadamard"}, &options) == -1);
    CHECK(parse({"--hybrid-sink", "4", "--hybrid-local", "20", "--k", "16"}, &options) == 2);
}

TEST_CASE("report.json: the issue's shape, with seconds alone on its line") {
    Report report;
    report.model = "m";
    report.device = "cpu";
    Metrics result;
    result.name = "indexer";
    result.k = 64;
    result.mass_recall = 0.5;
    result.kl = std::numeric_limits<double>::infinity();
    report.results.push_back(result);
    report.seconds = 12.34;
    const std::string json = report_json(report);
    CHECK(json.find("\"method\": \"indexer\"") != std::string::npos);
    CHECK(json.find("\"kl\": null") != std::string::npos);
    CHECK(json.find("\n  \"seconds\": 12.3\n}") != std::string::npos);
    CHECK(report_svg(report).find("<polyline") != std::string::npos);
}
