// Named lists of cases: the op and its shape overrides ("key=value,...").
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace dsa_bench {

struct Preset {
    const char* name;
    const char* summary;
    std::vector<std::pair<const char*, const char*>> cases;
};

const std::vector<Preset>& all_presets();
const Preset* find_preset(const std::string& name);

}  // namespace dsa_bench
