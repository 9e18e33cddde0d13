#include "linalg.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

// The inner loops are element-wise (no reductions reordered), so the vector clones round exactly
// like the baseline code: the result is the same bits on every x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define STORIES_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define STORIES_MULTIVERSION
#endif

namespace stories {
namespace {

// Eight floats in a vector register (two SSE registers in the baseline clone); element-wise
// arithmetic rounds exactly as scalar code.
typedef float Float8 __attribute__((vector_size(32)));

// A fixed set of workers that take chunks of the current job from a shared counter; the caller
// takes chunks too. Jobs run one at a time (parallel_for is called from one thread at a time).
class Workers {
public:
    explicit Workers(int threads) {
        for (int i = 1; i < threads; ++i) threads_.emplace_back([this] { serve(); });
    }
    ~Workers() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (std::thread& thread : threads_) thread.join();
    }
    int size() const { return static_cast<int>(threads_.size()) + 1; }

    void run(int64_t chunks, const std::function<void(int64_t)>& chunk_body) {
        if (threads_.empty() || chunks == 1) {
            for (int64_t c = 0; c < chunks; ++c) chunk_body(c);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            body_ = &chunk_body;
            chunks_ = chunks;
            next_chunk_ = 0;
            busy_ = static_cast<int>(threads_.size());
            ++generation_;
        }
        wake_.notify_all();
        take_chunks();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return busy_ == 0; });
        body_ = nullptr;
    }

private:
    void take_chunks() {
        for (int64_t c = next_chunk_.fetch_add(1); c < chunks_; c = next_chunk_.fetch_add(1)) (*body_)(c);
    }
    void serve() {
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
                if (stopping_) return;
                seen = generation_;
            }
            take_chunks();
            {
                std::lock_guard<std::mutex> lock(mutex_);
                --busy_;
            }
            done_.notify_one();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(int64_t)>* body_ = nullptr;
    int64_t chunks_ = 0;
    std::atomic<int64_t> next_chunk_{0};
    int busy_ = 0;
    uint64_t generation_ = 0;
    bool stopping_ = false;
};

int default_threads() {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : static_cast<int>(cores);
}

std::unique_ptr<Workers>& workers() {
    static std::unique_ptr<Workers> pool = std::make_unique<Workers>(default_threads());
    return pool;
}

}  // namespace

void set_worker_threads(int threads) {
    const int wanted = threads > 0 ? threads : default_threads();
    if (workers()->size() != wanted) {
        workers().reset();
        workers() = std::make_unique<Workers>(wanted);
    }
}

int worker_threads() { return workers()->size(); }

void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
    if (count <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t chunks = (count + grain - 1) / grain;
    workers()->run(chunks, [&](int64_t chunk) {
        const int64_t begin = chunk * grain;
        body(begin, std::min(begin + grain, count));
    });
}

STORIES_MULTIVERSION void matrix_times_matrix(const float* x, int64_t x_stride, int64_t rows, const float* w,
                                              int64_t m, int64_t n, float* y, int64_t y_stride) {
    // Blocks of 4 rows x 8 columns kept in registers while i runs (a short last block repeats its
    // last row and stores only its own), then a column tail of n % 8.
    constexpr int64_t block_columns = 8;
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        const int64_t count = std::min<int64_t>(4, rows - r0);
        const float* x0 = x + r0 * x_stride;
        const float* x1 = x + (r0 + std::min<int64_t>(1, count - 1)) * x_stride;
        const float* x2 = x + (r0 + std::min<int64_t>(2, count - 1)) * x_stride;
        const float* x3 = x + (r0 + std::min<int64_t>(3, count - 1)) * x_stride;
        int64_t j0 = 0;
        for (; j0 + block_columns <= n; j0 += block_columns) {
            Float8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
            for (int64_t i = 0; i < m; ++i) {
                Float8 wi;
                std::memcpy(&wi, w + i * n + j0, sizeof(wi));
                a0 += x0[i] * wi;
                a1 += x1[i] * wi;
                a2 += x2[i] * wi;
                a3 += x3[i] * wi;
            }
            const Float8* blocks[4] = {&a0, &a1, &a2, &a3};
            for (int64_t r = 0; r < count; ++r) std::memcpy(y + (r0 + r) * y_stride + j0, blocks[r], sizeof(Float8));
        }
        for (int64_t r = 0; r < count; ++r)
            for (int64_t j = j0; j < n; ++j) {
                float sum = 0.0f;
                for (int64_t i = 0; i < m; ++i) sum += x[(r0 + r) * x_stride + i] * w[i * n + j];
                y[(r0 + r) * y_stride + j] = sum;
            }
    }
}

STORIES_MULTIVERSION float sum_of(const float* x, int64_t n) {
    Float8 lanes = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        Float8 v;
        std::memcpy(&v, x + i, sizeof(v));
        lanes += v;
    }
    float total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (; i < n; ++i) total += x[i];
    return total;
}

STORIES_MULTIVERSION float dot(const float* a, const float* b, int64_t n) {
    Float8 lanes = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        Float8 u, v;
        std::memcpy(&u, a + i, sizeof(u));
        std::memcpy(&v, b + i, sizeof(v));
        lanes += u * v;
    }
    float total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (; i < n; ++i) total += a[i] * b[i];
    return total;
}

STORIES_MULTIVERSION float max_of(const float* x, int64_t n) {
    const float lowest = -std::numeric_limits<float>::infinity();
    Float8 lanes = {lowest, lowest, lowest, lowest, lowest, lowest, lowest, lowest};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        Float8 v;
        std::memcpy(&v, x + i, sizeof(v));
        lanes = lanes < v ? v : lanes;
    }
    float top = lowest;
    for (int j = 0; j < 8; ++j) top = std::max(top, lanes[j]);
    for (; i < n; ++i) top = std::max(top, x[i]);
    return top;
}

STORIES_MULTIVERSION void add_scaled(float* y, const float* x, float a, int64_t n) {
    for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

STORIES_MULTIVERSION void exp_in_place(float* v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float x = std::min(std::max(v[i], -87.0f), 88.0f);
        // x = m ln2 + r, |r| <= ln2 / 2 (m rounded to nearest by the 1.5 * 2^23 trick), ln2 in two
        // parts so r is exact.
        const float m = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        const float r = (x - m * 0.693359375f) - m * -2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * (r * r) + r + 1.0f;
        const float power = std::bit_cast<float>((static_cast<int32_t>(m) + 127) << 23);
        v[i] = v[i] < -87.0f ? 0.0f : p * power;
    }
}

void rms_norm(const float* x, const float* weight, int64_t n, float* out) {
    float squares = 0.0f;
    for (int64_t i = 0; i < n; ++i) squares += x[i] * x[i];
    const float inverse = 1.0f / std::sqrt(squares / static_cast<float>(n) + 1e-5f);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inverse * weight[i];
}

void rotate_pairs(float* v, int64_t rotated, const float* angles, bool inverse) {
    for (int64_t i = 0; i + 1 < rotated; i += 2) {
        const float c = angles[i], s = inverse ? -angles[i + 1] : angles[i + 1];
        const float a = v[i], b = v[i + 1];
        v[i] = a * c - b * s;
        v[i + 1] = a * s + b * c;
    }
}

}  // namespace stories
