// The main job, steps 1-6 of issue 8: load and check the model, sample training and held-out
// sequences, capture the dense teacher, distill one indexer per layer, evaluate the sparse
// configurations.
#pragma once

#include <stdexcept>
#include <string>

#include "options.hpp"
#include "report.hpp"

namespace stories {

// The model file or folder could not be found.
class ModelNotFound : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Resolves --model: a file, or a folder with stories260K.bin. Throws ModelNotFound.
std::string resolve_model_path(const std::string& path);

// Runs everything, printing progress unless options.quiet; throws on failure.
Report run_demo(const DemoOptions& options);

}  // namespace stories
