#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace stories {
namespace {

std::string number(double value, const char* format = "%.6g") {
    if (!std::isfinite(value)) return "null";
    char text[64];
    std::snprintf(text, sizeof(text), format, value);
    return text;
}

template <typename T>
std::string json_list(const std::vector<T>& values, const char* format) {
    std::string text = "[";
    for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + number(static_cast<double>(values[i]), format);
    return text + "]";
}

std::string result_json(const Metrics& m) {
    std::ostringstream out;
    out << "{\"k\": " << m.k << ", \"method\": \"" << m.name << "\", \"mass_recall\": " << number(m.mass_recall)
        << ", \"worst_head_mass\": " << number(m.worst_head_mass) << ", \"oracle_overlap\": " << number(m.oracle_overlap)
        << ", \"kl\": " << number(m.kl) << ", \"ppl\": " << number(m.ppl) << ", \"dense_ppl\": " << number(m.dense_ppl)
        << ", \"positions\": " << m.positions << ", \"sparse_layers\": " << json_list(m.sparse_layers, "%.0f")
        << ", \"layer_mass_recall\": " << json_list(m.layer_mass_recall, "%.4f") << "}";
    return out.str();
}

// The methods in the order they were first evaluated, each with its results in k order.
std::vector<std::pair<std::string, std::vector<const Metrics*>>> series(const Report& report) {
    std::vector<std::pair<std::string, std::vector<const Metrics*>>> lines;
    for (const Metrics& m : report.results) {
        auto line = std::find_if(lines.begin(), lines.end(), [&](const auto& l) { return l.first == m.name; });
        if (line == lines.end()) line = lines.insert(lines.end(), {m.name, {}});
        line->second.push_back(&m);
    }
    for (auto& line : lines)
        std::sort(line.second.begin(), line.second.end(), [](const Metrics* a, const Metrics* b) { return a->k < b->k; });
    return lines;
}

}  // namespace

void print_table(const Report& report) {
    std::printf("\n%6s  %-22s %8s %11s %8s %8s %8s\n", "k", "method", "mass", "worst head", "overlap", "KL", "ppl");
    int32_t previous_k = -1;
    for (const Metrics& m : report.results) {
        if (previous_k != -1 && m.k != previous_k) std::printf("\n");
        previous_k = m.k;
        std::printf("%6d  %-22s %8.3f %11.3f %8.3f %8.3f %8.2f\n", m.k, m.name.c_str(), m.mass_recall, m.worst_head_mass,
                    m.oracle_overlap, m.kl, m.ppl);
    }
    std::printf("\ndense f32 ppl %.2f over every position; bf16 sparse path with every token selected: KL %.4f, "
                "ppl %.2f (the noise floor)\n",
                report.dense_ppl, report.bf16_dense.kl, report.bf16_dense.ppl);
}

std::string report_json(const Report& report) {
    std::ostringstream out;
    out << "{\n";
    out << "  \"model\": \"" << report.model << "\",\n";
    out << "  \"device\": \"" << report.device << "\",\n";
    out << "  \"train_sequences\": " << report.train_sequences << ",\n";
    out << "  \"eval_sequences\": " << report.eval_sequences << ",\n";
    out << "  \"seq_len\": " << report.seq_len << ",\n";
    out << "  \"seed\": " << report.seed << ",\n";
    out << "  \"greedy_tokens\": " << json_list(report.greedy_tokens, "%.0f") << ",\n";
    out << "  \"indexer\": " << report.indexer << ",\n";
    out << "  \"training_loss\": " << json_list(report.training_loss, "%.5g") << ",\n";
    out << "  \"results\": [\n";
    for (size_t i = 0; i < report.results.size(); ++i)
        out << "    " << result_json(report.results[i]) << (i + 1 < report.results.size() ? ",\n" : "\n");
    out << "  ],\n";
    out << "  \"bf16_dense\": " << result_json(report.bf16_dense) << ",\n";
    out << "  \"dense_ppl\": " << number(report.dense_ppl) << ",\n";
    out << "  \"seconds\": " << number(report.seconds, "%.1f") << "\n";
    out << "}\n";
    return out.str();
}

std::string report_svg(const Report& report) {
    const auto lines = series(report);
    int32_t k_min = 1 << 30, k_max = 1;
    double kl_max = 0.0;
    for (const Metrics& m : report.results) {
        k_min = std::min(k_min, m.k);
        k_max = std::max(k_max, m.k);
        if (std::isfinite(m.kl)) kl_max = std::max(kl_max, m.kl);
    }
    kl_max = std::max(1.0, std::ceil(kl_max));
    const double log_min = std::log2(static_cast<double>(k_min));
    const double log_span = std::max(1.0, std::log2(static_cast<double>(k_max)) - log_min);
    const char* colors[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"};
    constexpr double panel_width = 360, panel_height = 240, left = 60, top = 40, gap = 90;

    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << 2 * panel_width + gap + 2 * left << "\" height=\""
        << panel_height + top + 150 << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    svg << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << report.model << " converted to DSA: "
        << report.eval_sequences << " held-out sequences, positions t &gt;= k</text>\n";
    struct Panel {
        const char* title;
        double y_max;
        double (*value)(const Metrics&);
    };
    const Panel panels[] = {
        {"attention-mass recall", 1.0, [](const Metrics& m) { return m.mass_recall; }},
        {"next-token KL(dense || sparse), nats", kl_max, [](const Metrics& m) { return m.kl; }},
    };
    for (int p = 0; p < 2; ++p) {
        const Panel& panel = panels[p];
        const double x0 = left + p * (panel_width + gap), y0 = top;
        auto x_of = [&](int32_t k) { return x0 + (std::log2(static_cast<double>(k)) - log_min) / log_span * panel_width; };
        auto y_of = [&](double v) { return y0 + panel_height - std::clamp(v / panel.y_max, 0.0, 1.0) * panel_height; };
        svg << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << panel_width << "\" height=\"" << panel_height
            << "\" fill=\"none\" stroke=\"#999\"/>\n";
        svg << "<text x=\"" << x0 << "\" y=\"" << y0 - 8 << "\">" << panel.title << "</text>\n";
        for (int tick = 0; tick <= 4; ++tick) {
            const double v = panel.y_max * tick / 4.0;
            svg << "<text x=\"" << x0 - 6 << "\" y=\"" << y_of(v) + 4 << "\" text-anchor=\"end\">" << number(v, "%.2g")
                << "</text>\n";
            svg << "<line x1=\"" << x0 << "\" x2=\"" << x0 + panel_width << "\" y1=\"" << y_of(v) << "\" y2=\"" << y_of(v)
                << "\" stroke=\"#eee\"/>\n";
        }
        for (int32_t k = k_min; k <= k_max; k *= 2)
            svg << "<text x=\"" << x_of(k) << "\" y=\"" << y0 + panel_height + 16 << "\" text-anchor=\"middle\">" << k
                << "</text>\n";
        svg << "<text x=\"" << x0 + panel_width / 2 << "\" y=\"" << y0 + panel_height + 32
            << "\" text-anchor=\"middle\">k (tokens kept per query)</text>\n";
        for (size_t l = 0; l < lines.size(); ++l) {
            const char* color = colors[l % 8];
            std::string points;
            for (const Metrics* m : lines[l].second) {
                const double v = panel.value(*m);
                if (!std::isfinite(v)) continue;
                points += number(x_of(m->k), "%.1f") + "," + number(y_of(v), "%.1f") + " ";
                svg << "<circle cx=\"" << number(x_of(m->k), "%.1f") << "\" cy=\"" << number(y_of(v), "%.1f")
                    << "\" r=\"3\" fill=\"" << color << "\"/>\n";
            }
            svg << "<polyline points=\"" << points << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n";
        }
    }
    for (size_t l = 0; l < lines.size(); ++l) {
        const double x = left + static_cast<double>(l % 3) * 240, y = top + panel_height + 60 + static_cast<double>(l / 3) * 18;
        svg << "<line x1=\"" << x << "\" x2=\"" << x + 24 << "\" y1=\"" << y - 4 << "\" y2=\"" << y - 4 << "\" stroke=\""
            << colors[l % 8] << "\" stroke-width=\"2\"/>\n";
        svg << "<text x=\"" << x + 30 << "\" y=\"" << y << "\">" << lines[l].first << "</text>\n";
    }
    svg << "</svg>\n";
    return svg.str();
}

}  // namespace stories
