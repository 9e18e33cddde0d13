// Versions, status strings, the thread-local error message, tensor helpers and contexts.
#include <string>

#include "../../core/cpu/isa.hpp"
#include "api.hpp"

// The core mirrors the ABI's codes; keep them in lock step.
static_assert(static_cast<int>(dsa::StatusCode::internal) == DSA_STATUS_INTERNAL);
static_assert(static_cast<int>(dsa::StatusCode::workspace_too_small) == DSA_STATUS_WORKSPACE_TOO_SMALL);
static_assert(static_cast<int>(dsa::StatusCode::layout_unsupported) == DSA_STATUS_LAYOUT_UNSUPPORTED);
static_assert(static_cast<int>(dsa::DType::i64) == DSA_DTYPE_I64);
static_assert(static_cast<int>(dsa::DType::fp8_e4m3) == DSA_DTYPE_FP8_E4M3);
static_assert(static_cast<int>(dsa::DeviceType::cuda) == DSA_DEVICE_CUDA);
static_assert(sizeof(dsa_tensor_t) == sizeof(dsa::TensorView));

namespace dsa::capi {
namespace {
thread_local std::string last_error;
}

dsa_status_t fail(const Status& status) {
    try {
        last_error = status.message();
    } catch (...) {
        last_error.clear();  // no memory for the message: the code still says what happened
    }
    return static_cast<dsa_status_t>(status.code());
}

const TensorView* view_of(const dsa_tensor_t* tensor, TensorView& storage) {
    if (tensor == nullptr) return nullptr;
    storage.data = tensor->data;
    storage.ndim = tensor->ndim;
    storage.dtype = static_cast<DType>(tensor->dtype);
    storage.device = static_cast<DeviceType>(tensor->device_type);
    storage.device_id = tensor->device_id;
    for (int axis = 0; axis < kMaxDims; ++axis) {
        storage.shape[axis] = tensor->shape[axis];
        storage.strides[axis] = tensor->strides[axis];
    }
    return &storage;
}

Status require_context(dsa_context_t* context, Context** out) {
    if (context == nullptr || !context->impl)
        return {StatusCode::invalid_argument, "context: is NULL; create one with dsa_context_create"};
    *out = context->impl.get();
    return Status::success();
}

}  // namespace dsa::capi

using namespace dsa;

extern "C" {

uint32_t dsa_version(void) { return DSA_VERSION_NUMBER; }

const char* dsa_version_string(void) {
    static const std::string text = std::to_string(DSA_VERSION_MAJOR) + "." + std::to_string(DSA_VERSION_MINOR) +
                                     "." + std::to_string(DSA_VERSION_PATCH);
    return text.c_str();
}

const char* dsa_build_info(void) {
    static const std::string text = [] {
        std::string info = std::string("libdsa ") + dsa_version_string();
        try {
#ifdef DSA_HAVE_CUDA
            info += "; " + cuda::describe();
#else
            info += "; cuda: not built";
#endif
            info += "; cpu: " + cpu::vector_path();
        } catch (...) {
        }
        return info;
    }();
    return text.c_str();
}

const char* dsa_status_string(dsa_status_t status) {
    switch (status) {
        case DSA_STATUS_SUCCESS: return "success";
        case DSA_STATUS_INVALID_ARGUMENT: return "invalid argument";
        case DSA_STATUS_SHAPE_MISMATCH: return "shape mismatch";
        case DSA_STATUS_DTYPE_MISMATCH: return "dtype mismatch";
        case DSA_STATUS_DEVICE_MISMATCH: return "device mismatch";
        case DSA_STATUS_LAYOUT_UNSUPPORTED: return "layout unsupported";
        case DSA_STATUS_UNSUPPORTED: return "unsupported";
        case DSA_STATUS_OUT_OF_MEMORY: return "out of memory";
        case DSA_STATUS_CUDA_ERROR: return "CUDA error";
        case DSA_STATUS_WORKSPACE_TOO_SMALL: return "workspace too small";
        case DSA_STATUS_INTERNAL: return "internal error";
        default: return "unknown status";
    }
}

const char* dsa_last_error_message(void) { return capi::last_error.c_str(); }

size_t dsa_dtype_size(dsa_dtype_t dtype) {
    return dtype_known(dtype) ? static_cast<size_t>(dtype_size(static_cast<DType>(dtype))) : 0;
}

dsa_status_t dsa_tensor_init_contiguous(dsa_tensor_t* tensor, void* data, int32_t ndim, const int64_t* shape,
                                        dsa_dtype_t dtype, dsa_device_type_t device_type, int32_t device_id) {
    return capi::guarded([&]() -> Status {
        if (tensor == nullptr) return {StatusCode::invalid_argument, "tensor: is NULL"};
        if (ndim < 0 || ndim > DSA_MAX_DIMS)
            return {StatusCode::invalid_argument, "ndim: must be in [0, 8], got " + std::to_string(ndim)};
        if (shape == nullptr && ndim > 0) return {StatusCode::invalid_argument, "shape: is NULL"};
        TensorView view;
        view.data = data;
        view.ndim = ndim;
        view.dtype = static_cast<DType>(dtype);
        view.device = static_cast<DeviceType>(device_type);
        view.device_id = device_id;
        int64_t stride = 1;
        for (int axis = ndim - 1; axis >= 0; --axis) {
            view.shape[axis] = shape[axis];
            view.strides[axis] = stride;
            if (shape[axis] > 0 && __builtin_mul_overflow(stride, shape[axis], &stride))
                return {StatusCode::shape_mismatch, "shape: the element count overflows int64"};
        }
        DSA_TRY(check_tensor(&view, "tensor"));
        std::memset(tensor, 0, sizeof *tensor);
        tensor->data = data;
        tensor->ndim = ndim;
        tensor->dtype = dtype;
        tensor->device_type = device_type;
        tensor->device_id = device_id;
        for (int axis = 0; axis < ndim; ++axis) {
            tensor->shape[axis] = view.shape[axis];
            tensor->strides[axis] = view.strides[axis];
        }
        return Status::success();
    });
}

dsa_status_t dsa_context_options_init(dsa_context_options_t* options) {
    return capi::guarded([&]() -> Status {
        if (options == nullptr) return {StatusCode::invalid_argument, "options: is NULL"};
        std::memset(options, 0, sizeof *options);
        options->struct_size = sizeof *options;
        options->device_type = DSA_DEVICE_CPU;
        return Status::success();
    });
}

dsa_status_t dsa_context_create(dsa_context_t** context, const dsa_context_options_t* options) {
    return capi::guarded([&]() -> Status {
        if (context == nullptr) return {StatusCode::invalid_argument, "context: output pointer is NULL"};
        *context = nullptr;
        dsa_context_options_t resolved;
        dsa_context_options_init(&resolved);
        DSA_TRY(capi::read_params(options, &resolved, "options"));
        std::unique_ptr<Context> created;
        DSA_TRY(create_context(static_cast<DeviceType>(resolved.device_type), resolved.device_id,
                               resolved.num_threads, &created));
        *context = new dsa_context{std::move(created)};
        return Status::success();
    });
}

void dsa_context_destroy(dsa_context_t* context) { delete context; }

dsa_status_t dsa_context_device(const dsa_context_t* context, dsa_device_type_t* device_type, int32_t* device_id) {
    return capi::guarded([&]() -> Status {
        if (context == nullptr || !context->impl) return {StatusCode::invalid_argument, "context: is NULL"};
        if (device_type == nullptr) return {StatusCode::invalid_argument, "device_type: is NULL"};
        if (device_id == nullptr) return {StatusCode::invalid_argument, "device_id: is NULL"};
        *device_type = static_cast<dsa_device_type_t>(context->impl->device());
        *device_id = context->impl->device_id();
        return Status::success();
    });
}

dsa_status_t dsa_context_num_threads(const dsa_context_t* context, int32_t* num_threads) {
    return capi::guarded([&]() -> Status {
        if (context == nullptr || !context->impl) return {StatusCode::invalid_argument, "context: is NULL"};
        if (num_threads == nullptr) return {StatusCode::invalid_argument, "num_threads: is NULL"};
        *num_threads = context->impl->pool().num_threads();
        return Status::success();
    });
}

}  // extern "C"
