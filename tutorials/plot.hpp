#pragma once
/// Line plots for the tutorials: gnuplot (Debian's gnuplot-nox) writes an SVG, which the notebook
/// shows inline (unfold_show, tutorials/notebook.hpp). SVG is text, so a re-run notebook changes
/// only where its numbers change.
///
/// Every title, label and legend is drawn as written: gnuplot's enhanced text would turn
/// `hard_sigmoid` into "hard" with a subscript and eat the `@` of `W@k`, so each string is marked
/// noenhanced (only the log axis's 10^{k} ticks use enhanced text). Next to each SVG, plot()
/// writes `<name>.svg.texts`, the strings it asked for, one per line: the program test
/// (kernel/run_program.py --check) checks that the SVG shows each of them verbatim.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tutorials/notebook.hpp"

namespace unfold::tutorial
{

/// One line of a plot: y over x (x = 0, 1, 2, ... when empty).
struct series
{
    std::string title;
    std::vector<double> y;
    std::vector<double> x;
};

struct plot_options
{
    std::string title;
    std::string xlabel;
    std::string ylabel;
    bool log_y = false;
    bool reverse_x = false; ///< time running right to left (backward in time)
    bool points = false;    ///< mark every point (lines that may lie on top of each other)
};

/// The folder plots are written to: $UNFOLD_PLOT_DIR, else a temporary folder (the notebook
/// keeps the image).
inline std::filesystem::path plot_dir()
{
    const char* chosen = std::getenv("UNFOLD_PLOT_DIR");
    auto dir = chosen && *chosen ? std::filesystem::path(chosen)
                                 : std::filesystem::temp_directory_path() / "unfold-tutorials";
    std::filesystem::create_directories(dir);
    return dir;
}

/// `text` as a gnuplot string drawn literally: single-quoted (a quote doubled), noenhanced.
inline std::string gnuplot_text(const std::string& text)
{
    std::string quoted = "'";
    for (char c : text)
        quoted += c == '\'' ? std::string("''") : std::string(1, c);
    return quoted + "' noenhanced";
}

/// Plots `lines` to <plot_dir>/<name>.svg with gnuplot and shows it; returns the file's path.
/// Non-positive values are skipped on a log scale.
inline std::string plot(const std::string& name, const std::vector<series>& lines,
                        const plot_options& o = {})
{
    const auto dir = plot_dir();
    const std::string svg = (dir / (name + ".svg")).string();
    const std::string script = (dir / (name + ".gp")).string();
    std::ofstream gp(script);
    gp << "set terminal svg size 720,400 font 'sans,12' background '#ffffff'\n";
    gp << "set output '" << svg << "'\n";
    gp << "set title " << gnuplot_text(o.title) << "\nset xlabel " << gnuplot_text(o.xlabel)
       << "\nset ylabel " << gnuplot_text(o.ylabel) << "\nset grid\nset key outside right\n";
    if (o.log_y)
        gp << "set logscale y\nset format y '10^{%L}'\n";
    if (o.reverse_x)
        gp << "set xrange [*:*] reverse\n";
    gp << "plot ";
    for (std::size_t k = 0; k < lines.size(); ++k)
        gp << (k ? ", " : "") << "'-' using 1:2 with "
           << (o.points ? "linespoints pointsize 1.5" : "lines") << " linewidth 2 title "
           << gnuplot_text(lines[k].title);
    gp << "\n";
    for (const auto& s : lines)
    {
        for (std::size_t i = 0; i < s.y.size(); ++i)
            if (!o.log_y || s.y[i] > 0)
                gp << (s.x.empty() ? double(i) : s.x[i]) << " " << s.y[i] << "\n";
        gp << "e\n";
    }
    gp.close();
    const std::string command = "gnuplot '" + script + "'";
    if (std::system(command.c_str()) != 0)
        throw std::runtime_error("plot: gnuplot failed on " + script);
    std::ofstream texts(svg + ".texts");
    for (const std::string& text : {o.title, o.xlabel, o.ylabel})
        if (!text.empty())
            texts << text << "\n";
    for (const auto& s : lines)
        if (!s.title.empty())
            texts << s.title << "\n";
    texts.close();
    unfold_show(svg);
    return svg;
}

} // namespace unfold::tutorial
