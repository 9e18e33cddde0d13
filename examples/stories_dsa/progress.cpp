#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace stories {

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) == 1; }

Progress::Progress(std::string label, int64_t total, bool quiet)
    : label_(std::move(label)),
      total_(total < 1 ? 1 : total),
      quiet_(quiet),
      terminal_(stdout_is_terminal()),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& status) {
    if (quiet_) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (terminal_) {
        constexpr int width = 30;
        const int filled = static_cast<int>(width * done / total_);
        std::printf("\r  %-10s [%s%s] %3d%% %5.1fs %s\033[K", label_.c_str(), std::string(filled, '#').c_str(),
                    std::string(width - filled, '.').c_str(), static_cast<int>(100 * done / total_), seconds,
                    status.c_str());
        std::fflush(stdout);
    } else if (done >= next_report_) {
        std::printf("  %-10s %3d%% %6.1fs %s\n", label_.c_str(), static_cast<int>(100 * done / total_), seconds,
                    status.c_str());
        std::fflush(stdout);
        next_report_ = done + (total_ + 9) / 10;
    }
}

void Progress::finish(const std::string& status) {
    if (quiet_) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (terminal_) std::printf("\r\033[K");
    std::printf("  %-10s done in %.1fs %s\n", label_.c_str(), seconds, status.c_str());
    std::fflush(stdout);
}

}  // namespace stories
