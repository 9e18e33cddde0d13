// A small persistent thread pool. parallel_for splits [0, count) into fixed chunks that do not
// depend on the number of threads, so a kernel that writes each chunk's outputs from that chunk
// alone gives bitwise the same result for any thread count. Several threads may call
// parallel_for on one pool at once: their jobs share the workers.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dsa {

class ThreadPool {
public:
    explicit ThreadPool(int num_threads);  // total threads including the caller; >= 1
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int num_threads() const { return num_threads_; }

    // Calls body(begin, end) for consecutive chunks of at most `grain` items covering [0, count).
    // The calling thread takes part. Rethrows the first exception a chunk threw (after all
    // chunks have finished).
    void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

private:
    struct Job;
    void worker_loop();
    static void run_chunks(Job& job);

    int num_threads_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::shared_ptr<Job>> queue_;
    bool stopping_ = false;
};

}  // namespace dsa
