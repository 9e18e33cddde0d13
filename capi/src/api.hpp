// Helpers of the extern "C" layer: the exception firewall, the thread-local error message, params
// unpacking (struct_size aware) and tensor conversion. Every entry point goes through guarded().
#pragma once

#include <cstring>
#include <new>
#include <string>

#include "../../core/context.hpp"
#include "dsa.h"

struct dsa_context {
    std::unique_ptr<dsa::Context> impl;
};

namespace dsa::capi {

// Stores the message for dsa_last_error_message() and returns the code.
dsa_status_t fail(const Status& status);

// Runs `body` (returning Status) and turns any exception into a status: nothing crosses the ABI.
template <typename Body>
dsa_status_t guarded(Body&& body) noexcept {
    try {
        const Status status = body();
        return status.ok() ? DSA_STATUS_SUCCESS : fail(status);
    } catch (const std::bad_alloc&) {
        return fail({StatusCode::out_of_memory, "out of host memory"});
    } catch (const std::exception& error) {
        return fail({StatusCode::internal, std::string("internal error: ") + error.what()});
    } catch (...) {
        return fail({StatusCode::internal, "internal error: unknown exception"});
    }
}

// Copies a caller's params struct over `defaults` (which the matching *_params_init filled).
// NULL keeps the defaults. struct_size must cover at least this version's struct; a larger
// (newer) struct is accepted only when the fields this version does not know are zero.
template <typename Params>
Status read_params(const Params* given, Params* defaults, const char* name) {
    if (given == nullptr) return Status::success();
    const size_t size = given->struct_size;
    if (size < sizeof(Params))
        return {StatusCode::invalid_argument,
                std::string(name) + ": struct_size is " + std::to_string(size) + ", expected at least " +
                    std::to_string(sizeof(Params)) + "; fill the struct with its *_params_init function"};
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(given);
    for (size_t i = sizeof(Params); i < size; ++i)
        if (bytes[i] != 0)
            return {StatusCode::unsupported,
                    std::string(name) + ": sets fields that this libdsa version (" + dsa_version_string() +
                        ") does not know; upgrade libdsa or leave them zero"};
    std::memcpy(defaults, given, sizeof(Params));
    defaults->struct_size = sizeof(Params);
    return Status::success();
}

// A view of a caller's tensor, or NULL when the caller passed NULL (core reports it by name).
const TensorView* view_of(const dsa_tensor_t* tensor, TensorView& storage);

// The context, or an error naming it.
Status require_context(dsa_context_t* context, Context** out);

}  // namespace dsa::capi
