#pragma once
/// `unfold plot LOG`: the metrics log of a training run (metrics_log, apps/train.hpp) drawn by
/// gnuplot (Debian's gnuplot-nox) as SVG or PNG: the training loss at every step and the held-out
/// loss after every epoch on the left axis, the other held-out metrics on the right.

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <unfold/framework/error.hpp>

namespace unfold::app
{

/// The records of a metrics log, as series over the step.
struct metrics_series
{
    std::vector<double> steps, loss;                     ///< step records
    std::vector<double> epoch_steps;                     ///< epoch records' steps
    std::map<std::string, std::vector<double>> held_out; ///< per held-out metric
};

/// Reads the metrics log at `path`; throws unfold::error naming the file and line of a record
/// that is not one (a last line cut short by a kill is skipped, as resuming drops it).
inline metrics_series read_metrics_log(const std::string& path)
{
    std::ifstream in(path);
    UNFOLD_CHECK(in.good(), "cannot read {}: {}", path, std::strerror(errno));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    metrics_series s;
    for (std::size_t i = 0; i < lines.size(); ++i)
    {
        const auto j = nlohmann::json::parse(lines[i], nullptr, false);
        const bool last = i + 1 == lines.size();
        if (j.is_discarded() && last)
            break;
        UNFOLD_CHECK(j.is_object() && j.contains("step") && j["step"].is_number(),
                     "{}:{}: not a metrics record (a JSON object with a step)", path, i + 1);
        const double step = j["step"].get<double>();
        if (j.contains("held_out"))
        {
            UNFOLD_CHECK(j["held_out"].is_object(), "{}:{}: held_out is not an object", path,
                         i + 1);
            s.epoch_steps.push_back(step);
            for (const auto& [name, value] : j["held_out"].items())
            {
                UNFOLD_CHECK(value.is_number(), "{}:{}: held-out {} is not a number", path, i + 1,
                             name);
                auto& values = s.held_out[name];
                values.resize(s.epoch_steps.size() - 1, std::nan(""));
                values.push_back(value.get<double>());
            }
        }
        else
        {
            UNFOLD_CHECK(j.contains("loss") && (j["loss"].is_number() || j["loss"].is_null()),
                         "{}:{}: a step record without a loss", path, i + 1);
            s.steps.push_back(step);
            s.loss.push_back(j["loss"].is_null() ? std::nan("") : j["loss"].get<double>());
        }
    }
    UNFOLD_CHECK(!s.steps.empty(), "{}: no step records to plot", path);
    for (auto& [name, values] : s.held_out)
        values.resize(s.epoch_steps.size(), std::nan(""));
    return s;
}

/// Draws the log at `log_path` to `image` (.svg, or .png), titled with the log's file name.
/// Throws unfold::error when the log is bad, gnuplot is missing or fails.
inline void plot_metrics_log(const std::string& log_path, const std::string& image)
{
    namespace fs = std::filesystem;
    const metrics_series s = read_metrics_log(log_path);
    const std::string ext = fs::path(image).extension().string();
    UNFOLD_CHECK(ext == ".svg" || ext == ".png", "{}: the image must be .svg or .png", image);
    UNFOLD_CHECK(std::system("command -v gnuplot >/dev/null 2>&1") == 0,
                 "unfold plot needs gnuplot: apt-get install gnuplot-nox");

    const fs::path dir =
        fs::temp_directory_path() / ("unfold-plot-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(reinterpret_cast<std::uintptr_t>(&s)));
    fs::create_directories(dir);
    struct remove_dir
    {
        fs::path p;
        ~remove_dir()
        {
            std::error_code ec;
            fs::remove_all(p, ec);
        }
    } cleanup{dir};
    {
        std::ofstream steps(dir / "steps.dat");
        for (std::size_t i = 0; i < s.steps.size(); ++i)
            steps << fmt::format("{} {}\n", s.steps[i], s.loss[i]);
        std::ofstream epochs(dir / "epochs.dat");
        for (std::size_t i = 0; i < s.epoch_steps.size(); ++i)
        {
            epochs << fmt::format("{}", s.epoch_steps[i]);
            for (const auto& [name, values] : s.held_out)
                epochs << ' '
                       << (std::isnan(values[i]) ? std::string("NaN")
                                                 : fmt::format("{}", values[i]));
            epochs << '\n';
        }
    }
    // Strings are single-quoted and noenhanced: drawn as written (bits_per_char keeps its _).
    auto text = [](const std::string& t) {
        std::string q = "'";
        for (char c : t)
            q += c == '\'' ? std::string("''") : std::string(1, c);
        return q + "' noenhanced";
    };
    auto quoted = [](const fs::path& p) {
        std::string q = "'";
        for (char c : p.string())
            q += c == '\'' ? std::string("''") : std::string(1, c);
        return q + "'";
    };
    std::string script = ext == ".svg" ? "set terminal svg size 900,500 dynamic font 'sans,12'\n"
                                       : "set terminal pngcairo size 900,500 font 'sans,10'\n";
    script += "set output " + quoted(fs::absolute(image)) + "\n";
    script += "set title " + text(fs::path(log_path).filename().string()) + "\n";
    script += "set xlabel " + text("step") + "\nset ylabel " + text("loss") + "\n";
    script += "set key outside right top\nset grid\nset datafile missing 'NaN'\n";
    std::vector<std::string> plots = {quoted(dir / "steps.dat") +
                                      " using 1:2 with lines lw 1 title " + text("training loss")};
    std::size_t column = 2;
    bool right_axis = false;
    for (const auto& [name, values] : s.held_out)
    {
        const bool loss = name == "loss";
        right_axis = right_axis || !loss;
        plots.push_back(quoted(dir / "epochs.dat") + " using 1:" + std::to_string(column++) +
                        (loss ? " axes x1y1" : " axes x1y2") + " with linespoints pt 7 title " +
                        text("held-out " + name));
    }
    if (right_axis)
        script += "set y2label " + text("held-out metric") + "\nset y2tics\nset ytics nomirror\n";
    script += "plot ";
    for (std::size_t i = 0; i < plots.size(); ++i)
        script += (i ? ", \\\n     " : "") + plots[i];
    script += "\nunset output\n";
    std::ofstream(dir / "plot.gp") << script;
    auto shell = [](const fs::path& p) {
        std::string q = "'";
        for (char c : p.string())
            q += c == '\'' ? std::string("'\\''") : std::string(1, c);
        return q + "'";
    };
    const std::string command =
        "gnuplot " + shell(dir / "plot.gp") + " 2>" + shell(dir / "errors.txt");
    const int status = std::system(command.c_str());
    std::ifstream errors(dir / "errors.txt");
    const std::string said((std::istreambuf_iterator<char>(errors)), {});
    UNFOLD_CHECK(status == 0 && fs::exists(image), "unfold plot: gnuplot failed: {}", said);
}

} // namespace unfold::app
