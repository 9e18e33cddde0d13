// Argument checks shared by the training ops: tensors that may be NULL, shapes given as lists,
// and the rule that outputs overlap neither each other nor any input.
#pragma once

#include <initializer_list>

#include "../context.hpp"

namespace dsa {

// A tensor argument and the name messages call it by; view NULL: an optional tensor not passed.
struct NamedTensor {
    const TensorView* view;
    const char* name;
};

// check_tensor and the context's device for every required tensor (NULL is an error naming it)
// and for every optional tensor that was passed.
Status check_arguments(const Context& context, std::initializer_list<NamedTensor> required,
                       std::initializer_list<NamedTensor> optional);

// shape == expected exactly (rank included); `what` says where the extents come from.
Status require_shape(const TensorView& tensor, const char* name, std::initializer_list<int64_t> expected,
                     const char* what);

// Every passed output addresses each element once and overlaps no other output and no input.
Status require_separate_outputs(std::initializer_list<NamedTensor> outputs, std::initializer_list<NamedTensor> inputs);

}  // namespace dsa
