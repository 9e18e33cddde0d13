// dsa-bench: benchmarks every libdsa op through the public C API on the CPU or a CUDA GPU.
// Per case: random inputs, one call checked against an oracle on sampled rows, then the median of
// the timed calls, rates by ../shared/PERFORMANCE.md's formulas and the ratio to the roofline of
// the ceilings measured in the same run. `dsa-bench --help` lists everything.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "bench/bench.hpp"
#include "bench/presets.hpp"

namespace dsa_bench {
namespace {

struct Options {
    std::string device = "cpu";
    int device_id = 0;
    int threads = 0;
    std::vector<std::string> presets;
    std::vector<std::string> cases;  // "op:key=value,..."
    std::vector<std::string> only_ops;
    std::string json;  // "" none, "-" stdout
    bool list = false;
    int repeats = 10;
    int warmup = 2;
    int check_rows = 4;
    double long_call_seconds = 1.0;
    uint64_t seed = 1;
    bool ceilings = true;
};

struct CaseSpec {
    const Op* op;
    Shape shape;
};

void print_help() {
    std::printf(
        "usage: dsa-bench [--preset NAME]... [--case OP[:KEY=VALUE,...]]... [options]\n"
        "\n"
        "Benchmarks libdsa ops through the public C API. Each case gets random inputs (never zeros), one\n"
        "call checked against an oracle on sampled rows (CPU: the scalar references; CUDA: libdsa's CPU\n"
        "path), then the median of the timed calls (CPU: wall clock; CUDA: events, L2 flushed by writing\n"
        "256 MB before every call), TFLOP/s and GB/s by ../shared/PERFORMANCE.md's formulas, and the\n"
        "fraction of the roofline max(FLOP / compute ceiling, bytes / copy ceiling) / time, with the\n"
        "ceilings measured in the same run (CPU: an f32 FMA loop and memcpy; CUDA: a cuBLAS bf16 GEMM\n"
        "8192^3 and a device-to-device copy). Ops a device does not implement are reported as\n"
        "unsupported (a row, not a failure). Exit status 1 if any case failed or disagreed.\n"
        "\n"
        "options:\n"
        "  --device cpu|cuda     where the ops run (default cpu)\n"
        "  --device-id N         CUDA device ordinal (default 0)\n"
        "  --threads N           CPU threads of the library (0 = all cores; default 0)\n"
        "  --preset NAME         add a preset's cases (repeatable)\n"
        "  --case OP[:K=V,...]   add one case: the op's default shape with these values (K and M\n"
        "                        suffixes mean 1024 and 1048576, e.g. context=128K)\n"
        "  --op NAME             keep only cases of this op (repeatable)\n"
        "  --list                print the cases (with --json: their op, shape and params) and exit\n"
        "  --list-ops            print the op names and exit\n"
        "  --json FILE           write one JSON object per case (JSON lines; '-' = stdout, the table\n"
        "                        then goes to stderr)\n"
        "  --repeats N           timed calls per case (default 10)\n"
        "  --warmup N            untimed calls before them (default 2)\n"
        "  --long-call SECONDS   when the checked call took longer, 3 timed calls and no warm-up\n"
        "                        (default 1; the repeats are in the output)\n"
        "  --check-rows N        rows (sequences for paged ops) compared with the oracle (default 4)\n"
        "  --seed N              input seed (default 1)\n"
        "  --no-ceilings         skip measuring the ceilings (no roofline ratios): for sanitizer runs\n"
        "\n"
        "presets:\n");
    for (const Preset& preset : all_presets())
        std::printf("  %-10s %s (%zu cases)\n", preset.name, preset.summary, preset.cases.size());
    std::printf("\nops and their shape keys (defaults):\n");
    for (const Op& op : all_ops()) {
        std::string keys;
        for (const auto& [key, value] : op.defaults) keys += " " + key + "=" + std::to_string(value);
        std::printf("  %s:%s\n      %s\n", op.name, keys.c_str(), op.summary);
    }
}

int64_t parse_integer(const std::string& text) {
    size_t used = 0;
    int64_t value = std::stoll(text, &used);
    const std::string suffix = text.substr(used);
    if (suffix == "K" || suffix == "k")
        value *= 1024;
    else if (suffix == "M" || suffix == "m")
        value *= 1024 * 1024;
    else if (!suffix.empty())
        throw std::invalid_argument("not an integer: " + text);
    return value;
}

// The op's defaults with "key=value,..." applied.
Shape make_shape(const Op& op, const std::string& overrides) {
    Shape shape{op.defaults};
    std::stringstream items(overrides);
    std::string item;
    while (std::getline(items, item, ',')) {
        if (item.empty()) continue;
        const size_t equals = item.find('=');
        if (equals == std::string::npos) throw std::invalid_argument("expected KEY=VALUE, got '" + item + "'");
        const std::string key = item.substr(0, equals);
        bool known = false;
        for (auto& [name, value] : shape.entries)
            if (name == key) {
                value = parse_integer(item.substr(equals + 1));
                known = true;
            }
        if (!known) throw std::invalid_argument(std::string(op.name) + " has no shape key '" + key + "'");
    }
    for (const auto& [name, value] : shape.entries)
        if (value < 0) throw std::invalid_argument(std::string(op.name) + ": " + name + " must be >= 0");
    return shape;
}

const Op& require_op(const std::string& name) {
    const Op* op = find_op(name);
    if (!op) throw std::invalid_argument("unknown op '" + name + "' (see --list-ops)");
    return *op;
}

std::vector<CaseSpec> collect_cases(const Options& options) {
    std::vector<CaseSpec> cases;
    for (const std::string& name : options.presets) {
        const Preset* preset = find_preset(name);
        if (!preset) throw std::invalid_argument("unknown preset '" + name + "'");
        for (const auto& [op, overrides] : preset->cases) cases.push_back({&require_op(op), make_shape(require_op(op), overrides)});
    }
    for (const std::string& text : options.cases) {
        const size_t colon = text.find(':');
        const Op& op = require_op(text.substr(0, colon));
        cases.push_back({&op, make_shape(op, colon == std::string::npos ? "" : text.substr(colon + 1))});
    }
    if (options.only_ops.empty()) return cases;
    for (const std::string& name : options.only_ops) require_op(name);
    std::vector<CaseSpec> kept;
    for (const CaseSpec& spec : cases)
        for (const std::string& name : options.only_ops)
            if (name == spec.op->name) kept.push_back(spec);
    return kept;
}

Options parse(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            print_help();
            std::exit(0);
        } else if (arg == "--list-ops") {
            for (const Op& op : all_ops()) std::printf("%s\n", op.name);
            std::exit(0);
        } else if (arg == "--device") {
            options.device = value();
            if (options.device != "cpu" && options.device != "cuda")
                throw std::invalid_argument("--device must be cpu or cuda");
        } else if (arg == "--device-id") {
            options.device_id = static_cast<int>(parse_integer(value()));
        } else if (arg == "--threads") {
            options.threads = static_cast<int>(parse_integer(value()));
        } else if (arg == "--preset") {
            options.presets.push_back(value());
        } else if (arg == "--case") {
            options.cases.push_back(value());
        } else if (arg == "--op") {
            options.only_ops.push_back(value());
        } else if (arg == "--list") {
            options.list = true;
        } else if (arg == "--json") {
            options.json = value();
        } else if (arg == "--repeats") {
            options.repeats = static_cast<int>(parse_integer(value()));
        } else if (arg == "--warmup") {
            options.warmup = static_cast<int>(parse_integer(value()));
        } else if (arg == "--long-call") {
            options.long_call_seconds = std::stod(value());
        } else if (arg == "--check-rows") {
            options.check_rows = static_cast<int>(parse_integer(value()));
        } else if (arg == "--no-ceilings") {
            options.ceilings = false;
        } else if (arg == "--seed") {
            options.seed = static_cast<uint64_t>(parse_integer(value()));
        } else {
            throw std::invalid_argument("unknown argument '" + arg + "' (see --help)");
        }
    }
    if (options.repeats < 1 || options.warmup < 0 || options.check_rows < 1 || options.threads < 0)
        throw std::invalid_argument("--repeats and --check-rows must be >= 1, --warmup and --threads >= 0");
    if (options.presets.empty() && options.cases.empty())
        throw std::invalid_argument("nothing to run: give --preset or --case (see --help)");
    return options;
}

// ---- Output -------------------------------------------------------------------------------

std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string json_number(double value) {
    if (!std::isfinite(value)) return "null";
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    return text;
}

std::string json_params(const Shape& shape) {
    std::string out = "{";
    for (const auto& [name, value] : shape.entries)
        out += (out.size() > 1 ? ", " : "") + json_string(name) + ": " + std::to_string(value);
    return out + "}";
}

// Four significant digits, or "-" for a missing value.
std::string human(double value) {
    if (!std::isfinite(value)) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.4g", value);
    return text;
}

struct Result {
    std::string status = "failed";  // ok | unsupported | failed
    std::string message;
    bool checked = false;
    Work work;
    Timing timing;
    double tflops = NAN, gbps = NAN, ratio = NAN;
    std::string bound;
};

Result run_case(Bench& bench, const CaseSpec& spec, const Ceilings& ceilings, const Options& options) {
    Result result;
    try {
        Prepared prepared = spec.op->prepare(bench, spec.shape);
        result.work = prepared.work;
        const auto start = std::chrono::steady_clock::now();
        const dsa_status_t status = prepared.run();
        if (status == DSA_STATUS_UNSUPPORTED) {
            result.status = "unsupported";
            result.message = dsa_last_error_message();
            return result;
        }
        require_success(status, spec.op->name);
        bench.device.synchronize();
        const double first_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        result.message = prepared.check();
        result.checked = result.message.empty();
        const bool long_call = first_seconds > options.long_call_seconds;
        result.timing = bench.device.time(
            [&] { require_success(prepared.run(), spec.op->name); }, long_call ? 0 : options.warmup,
            long_call ? std::min(3, options.repeats) : options.repeats);
        const double seconds = result.timing.median_ms * 1e-3;
        if (result.work.flop > 0) result.tflops = result.work.flop / seconds / 1e12;
        if (result.work.bytes > 0) result.gbps = result.work.bytes / seconds / 1e9;
        // A ceiling that could not be measured (0) leaves its term out.
        const double compute = ceilings.flops > 0 ? result.work.flop / ceilings.flops : 0,
                     memory = ceilings.bytes_per_second > 0 ? result.work.bytes / ceilings.bytes_per_second : 0;
        if (compute > 0 || memory > 0) {
            result.bound = compute >= memory ? "compute" : "memory";
            result.ratio = std::max(compute, memory) / seconds;
        }
        result.status = result.checked ? "ok" : "failed";
    } catch (const Unsupported& error) {
        result.status = "unsupported";
        result.message = error.what();
    } catch (const std::exception& error) {
        result.status = "failed";
        result.message = error.what();
    }
    return result;
}

std::string today() {
    const std::time_t now = std::time(nullptr);
    char text[16];
    std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
    return text;
}

int run(const Options& options) {
    const std::vector<CaseSpec> cases = collect_cases(options);
    std::ofstream json_file;
    if (!options.json.empty() && options.json != "-") {
        json_file.open(options.json);
        if (!json_file) throw std::runtime_error("cannot write " + options.json);
    }
    std::ostream& json = options.json == "-" ? std::cout : static_cast<std::ostream&>(json_file);
    std::ostream& table = options.json == "-" ? std::cerr : std::cout;

    if (options.list) {
        for (const CaseSpec& spec : cases) {
            table << spec.op->name << "  " << spec.shape.text() << "\n";
            if (!options.json.empty())
                json << "{\"op\": " << json_string(spec.op->name) << ", \"shape\": " << json_string(spec.shape.text())
                     << ", \"params\": " << json_params(spec.shape) << "}\n";
        }
        return 0;
    }

    std::unique_ptr<Device> device;
    std::unique_ptr<Oracle> oracle;
    if (options.device == "cuda") {
#ifdef DSA_BENCH_CUDA
        device = make_cuda_device(options.device_id);
        oracle = make_library_oracle(options.threads);
#else
        throw std::runtime_error("this dsa-bench was built without CUDA");
#endif
    } else {
        device = make_cpu_device(options.threads);
        oracle = make_reference_oracle();
    }
    Bench bench{*device, *oracle, options.seed, options.check_rows};
    const Ceilings ceilings = options.ceilings ? device->measure_ceilings() : Ceilings{};
    const std::string device_name = device->description();
    table << "dsa-bench " << today() << ": " << device_name << "\n"
          << "library: " << dsa_build_info() << "\n"
          << "ceilings (same run): " << human(ceilings.flops / 1e12) << " TFLOP/s (" << ceilings.flops_what << "), "
          << human(ceilings.bytes_per_second / 1e9) << " GB/s (" << ceilings.bytes_what << ")\n"
          << "checked against: " << oracle->name() << "\n\n";
    char line[256];
    std::snprintf(line, sizeof line, "%-24s %10s %9s %9s %8s %6s %-8s %s\n", "op", "ms", "TFLOP/s", "GB/s", "bound",
                  "roof", "check", "shape");
    table << line;

    int failures = 0;
    for (const CaseSpec& spec : cases) {
        const Result r = run_case(bench, spec, ceilings, options);
        failures += r.status == "failed";
        std::string ms = r.status == "ok" || r.status == "failed" ? human(r.timing.median_ms) : "-";
        if (r.timing.repeats > 0 && r.timing.repeats < options.repeats)
            ms.append("(").append(std::to_string(r.timing.repeats)).append(")");  // fewer timed calls
        const std::string roof = std::isfinite(r.ratio) ? human(100 * r.ratio) + "%" : "-";
        std::snprintf(line, sizeof line, "%-24s %10s %9s %9s %8s %6s %-8s %s\n", spec.op->name, ms.c_str(),
                      human(r.tflops).c_str(), human(r.gbps).c_str(), r.bound.empty() ? "-" : r.bound.c_str(),
                      roof.c_str(),
                      r.status == "ok" ? "ok" : (r.status == "unsupported" ? "unsupp." : "FAILED"), spec.shape.text().c_str());
        table << line;
        if (!r.message.empty()) table << "    " << r.status << ": " << r.message << "\n";
        table.flush();
        if (!options.json.empty()) {
            json << "{\"op\": " << json_string(spec.op->name) << ", \"shape\": " << json_string(spec.shape.text())
                 << ", \"params\": " << json_params(spec.shape) << ", \"device\": " << json_string(options.device)
                 << ", \"device_name\": " << json_string(device_name) << ", \"date\": " << json_string(today())
                 << ", \"build\": " << json_string(dsa_build_info()) << ", \"status\": " << json_string(r.status)
                 << ", \"message\": " << json_string(r.message) << ", \"ms\": "
                 << (r.timing.repeats > 0 ? json_number(r.timing.median_ms) : "null")
                 << ", \"repeats\": " << r.timing.repeats << ", \"flop\": " << json_number(r.work.flop)
                 << ", \"bytes\": " << json_number(r.work.bytes) << ", \"tflops\": " << json_number(r.tflops)
                 << ", \"gbps\": " << json_number(r.gbps) << ", \"bound\": "
                 << (r.bound.empty() ? "null" : json_string(r.bound)) << ", \"ceiling_ratio\": " << json_number(r.ratio)
                 << ", \"ceiling_tflops\": " << json_number(ceilings.flops / 1e12)
                 << ", \"ceiling_gbps\": " << json_number(ceilings.bytes_per_second / 1e9)
                 << ", \"checked\": " << (r.checked ? "true" : "false") << ", \"oracle\": " << json_string(oracle->name())
                 << "}\n";
            json.flush();
        }
    }
    table << "\n" << cases.size() << " cases, " << failures << " failed\n";
    return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace dsa_bench

int main(int argc, char** argv) {
    try {
        return dsa_bench::run(dsa_bench::parse(argc, argv));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "dsa-bench: %s\n", error.what());
        return 2;
    }
}
