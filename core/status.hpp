// Status: the result of every core function. Codes equal the DSA_STATUS_* values of dsa.h (the
// C layer checks that at compile time); the message names the argument and what was expected.
#pragma once

#include <string>
#include <utility>

namespace dsa {

enum class StatusCode : int {
    ok = 0,
    invalid_argument = 1,
    shape_mismatch = 2,
    dtype_mismatch = 3,
    device_mismatch = 4,
    layout_unsupported = 5,
    unsupported = 6,
    out_of_memory = 7,
    cuda_error = 8,
    workspace_too_small = 9,
    internal = 10,
};

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status success() { return {}; }
    bool ok() const { return code_ == StatusCode::ok; }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }

private:
    StatusCode code_ = StatusCode::ok;
    std::string message_;
};

// Returns from the enclosing function when `expr` yields an error status.
#define DSA_TRY(expr)                              \
    do {                                           \
        ::dsa::Status dsa_try_status_ = (expr);    \
        if (!dsa_try_status_.ok()) return dsa_try_status_; \
    } while (0)

}  // namespace dsa
