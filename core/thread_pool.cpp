#include "thread_pool.hpp"

#include <atomic>
#include <exception>

namespace dsa {

struct ThreadPool::Job {
    const std::function<void(int64_t, int64_t)>* body;
    int64_t count;
    int64_t grain;
    int64_t chunks;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
    std::exception_ptr error;
};

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads < 1 ? 1 : num_threads) {
    workers_.reserve(static_cast<size_t>(num_threads_ - 1));
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::run_chunks(Job& job) {
    for (;;) {
        const int64_t chunk = job.next.fetch_add(1);
        if (chunk >= job.chunks) return;
        const int64_t begin = chunk * job.grain;
        const int64_t end = begin + job.grain < job.count ? begin + job.grain : job.count;
        try {
            (*job.body)(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(job.mutex);
            if (!job.error) job.error = std::current_exception();
        }
        if (job.done.fetch_add(1) + 1 == job.chunks) {
            std::lock_guard<std::mutex> lock(job.mutex);
            job.finished.notify_all();
        }
    }
}

void ThreadPool::worker_loop() {
    for (;;) {
        std::shared_ptr<Job> job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_ && queue_.empty()) return;
            job = queue_.front();
            // Leave the job queued while chunks remain so other workers can join it.
            if (job->next.load() >= job->chunks) {
                queue_.pop_front();
                continue;
            }
        }
        run_chunks(*job);
        std::lock_guard<std::mutex> lock(mutex_);
        if (!queue_.empty() && queue_.front() == job) queue_.pop_front();
    }
}

void ThreadPool::parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
    if (count <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t chunks = (count + grain - 1) / grain;
    if (chunks == 1 || workers_.empty()) {
        for (int64_t begin = 0; begin < count; begin += grain) body(begin, begin + grain < count ? begin + grain : count);
        return;
    }
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->count = count;
    job->grain = grain;
    job->chunks = chunks;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(job);
    }
    wake_.notify_all();
    run_chunks(*job);
    {
        std::unique_lock<std::mutex> lock(job->mutex);
        job->finished.wait(lock, [&] { return job->done.load() == job->chunks; });
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = queue_.begin(); it != queue_.end(); ++it)
            if (*it == job) {
                queue_.erase(it);
                break;
            }
    }
    if (job->error) std::rethrow_exception(job->error);
}

}  // namespace dsa
