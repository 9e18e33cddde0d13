// Progress of a long stage: a redrawn bar on a terminal, a few plain lines otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace stories {

class Progress {
public:
    Progress(std::string label, int64_t total, bool quiet);
    // `done` units of `total` finished; `status` is shown after the bar (e.g. the current loss).
    void update(int64_t done, const std::string& status);
    // Ends the stage with a last line.
    void finish(const std::string& status);

private:
    std::string label_;
    int64_t total_;
    bool quiet_, terminal_;
    int64_t next_report_ = 0;  // for plain lines: the next `done` that prints
    std::chrono::steady_clock::time_point start_;
};

// True when standard output is a terminal.
bool stdout_is_terminal();

}  // namespace stories
