// stories-dsa: the libdsa main job (issue 8). See docs/DEMO.md.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "demo.hpp"

namespace {

void write_file(const std::filesystem::path& path, const std::string& text) {
    std::ofstream file(path, std::ios::binary);
    file << text;
    if (!file) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace

int main(int argc, char** argv) {
    stories::DemoOptions options;
    int exit_code = 0;
    if (!stories::parse_options(argc, argv, &options, &exit_code)) return exit_code;
    try {
        const stories::Report report = stories::run_demo(options);
        std::filesystem::create_directories(options.out);
        const std::filesystem::path out(options.out);
        write_file(out / "report.json", stories::report_json(report));
        write_file(out / "chart.svg", stories::report_svg(report));
        stories::print_table(report);
        std::printf("wrote %s and %s (%.1f s)\n", (out / "report.json").string().c_str(),
                    (out / "chart.svg").string().c_str(), report.seconds);
        return 0;
    } catch (const stories::ModelNotFound& error) {
        std::fprintf(stderr, "stories-dsa: %s\n", error.what());
        return 3;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "stories-dsa: %s\n", error.what());
        return 1;
    }
}
