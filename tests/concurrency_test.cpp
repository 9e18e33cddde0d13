// Determinism and concurrency of every tensor op on the CPU (tests/op_cases.hpp):
//  - results are bitwise identical across runs and for 1, 2, 3 and 8 threads;
//  - several threads sharing one context, running different ops at once, get exactly the
//    results of serial runs.
// CI also runs this file under ThreadSanitizer (.ci/run), so a data race fails it even when
// the results happen to agree.
#include <thread>

#include "op_cases.hpp"

using namespace dsa_test;

namespace {

// Large enough that every op splits its work into several chunks; small enough for TSan.
const CaseSize kSize{67, 700, 5};

std::vector<std::vector<uint8_t>> run_once(OpCase& op, dsa_context_t* context) {
    op.poison_outputs();
    const dsa_status_t status = op.run(context);
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, op.function << ": " << dsa_last_error_message());
    return op.outputs();
}

}  // namespace

TEST_CASE("every op gives bitwise the same results across runs and for 1, 2, 3 and 8 threads") {
    std::vector<OpCase> cases = all_op_cases(kSize);
    Context serial(1);
    std::vector<std::vector<std::vector<uint8_t>>> expected;
    for (OpCase& op : cases) expected.push_back(run_once(op, serial));
    for (int threads : {1, 2, 3, 8}) {
        Context context(threads);
        for (size_t i = 0; i < cases.size(); ++i)
            for (int repeat = 0; repeat < 2; ++repeat) {
                INFO(cases[i].function << " on " << threads << " threads, run " << repeat);
                CHECK(run_once(cases[i], context) == expected[i]);
            }
    }
}

TEST_CASE("threads sharing one context and running different ops at once get the serial results") {
    constexpr int kThreads = 4, kRounds = 2;
    Context shared(3);
    std::vector<std::vector<std::vector<uint8_t>>> expected;
    {
        std::vector<OpCase> cases = all_op_cases(kSize);
        Context serial(1);
        for (OpCase& op : cases) expected.push_back(run_once(op, serial));
    }
    // Each thread owns its copy of every case (same inputs), so only the context is shared.
    std::vector<std::vector<OpCase>> copies;
    for (int t = 0; t < kThreads; ++t) copies.push_back(all_op_cases(kSize));
    std::vector<std::vector<std::string>> mismatches(kThreads);
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t)
        workers.emplace_back([&, t] {
            std::vector<OpCase>& cases = copies[t];
            for (int round = 0; round < kRounds; ++round)
                for (size_t n = 0; n < cases.size(); ++n) {
                    const size_t i = (n + static_cast<size_t>(t) * 4) % cases.size();  // threads start apart
                    OpCase& op = cases[i];
                    op.poison_outputs();
                    const dsa_status_t status = op.run(shared);
                    if (status != DSA_STATUS_SUCCESS)
                        mismatches[t].push_back(op.function + ": " + dsa_last_error_message());
                    else if (op.outputs() != expected[i])
                        mismatches[t].push_back(op.function + ": results differ from the serial run");
                }
        });
    for (std::thread& worker : workers) worker.join();
    for (int t = 0; t < kThreads; ++t)
        for (const std::string& mismatch : mismatches[t]) FAIL_CHECK("thread " << t << ": " << mismatch);
}

TEST_CASE("contexts created and destroyed on many threads at once") {
    std::vector<std::thread> workers;
    std::vector<dsa_status_t> statuses(8, -1);
    for (int t = 0; t < 8; ++t)
        workers.emplace_back([&, t] {
            for (int repeat = 0; repeat < 5; ++repeat) {
                dsa_context_options_t options;
                dsa_context_options_init(&options);
                options.num_threads = 1 + (t + repeat) % 3;
                dsa_context_t* context = nullptr;
                statuses[t] = dsa_context_create(&context, &options);
                if (statuses[t] != DSA_STATUS_SUCCESS) return;
                OpCase op = op_case_builders()[static_cast<size_t>(t + repeat) % op_case_builders().size()](CaseSize{});
                statuses[t] = op.run(context);
                dsa_context_destroy(context);
                if (statuses[t] != DSA_STATUS_SUCCESS) return;
            }
        });
    for (std::thread& worker : workers) worker.join();
    for (dsa_status_t status : statuses) CHECK(status == DSA_STATUS_SUCCESS);
}
