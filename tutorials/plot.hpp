#pragma once
/// Line plots and heatmaps for the tutorials: gnuplot (Debian's gnuplot-nox) writes an SVG, which
/// the notebook shows inline (unfold_show, tutorials/notebook.hpp). SVG is text, so a re-run
/// notebook changes only where its numbers change.
///
/// Every title, label and legend is drawn as written: gnuplot's enhanced text would turn
/// `hard_sigmoid` into "hard" with a subscript and eat the `@` of `W@k`, so each string is marked
/// noenhanced (only the log axis's 10^{k} ticks use enhanced text). Next to each SVG, plot() and
/// heatmap() write `<name>.svg.texts`, the strings they asked for, one per line: the program test
/// (kernel/run_program.py --check) checks that the SVG shows each of them verbatim.

#include <algorithm>
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

/// `text` as a single-quoted gnuplot string (a quote doubled).
inline std::string gnuplot_quoted(const std::string& text)
{
    std::string quoted = "'";
    for (char c : text)
        quoted += c == '\'' ? std::string("''") : std::string(1, c);
    return quoted + "'";
}

/// `text` as a gnuplot string drawn literally: single-quoted, noenhanced.
inline std::string gnuplot_text(const std::string& text)
{
    return gnuplot_quoted(text) + " noenhanced";
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

/// What heatmap() draws besides the values.
struct heatmap_options
{
    std::string title;
    std::string xlabel;
    std::string ylabel;
    double low = 0;      ///< the value drawn white
    double high = 1;     ///< the value drawn dark blue
    bool numbers = true; ///< each value (two decimals) in its square, instead of a colour bar
};

/// Draws values[r][c] as a grid of coloured squares (white at o.low, dark blue at o.high) to
/// <plot_dir>/<name>.svg with gnuplot and shows it: row r from top to bottom, column c from left
/// to right, each axis ticked with its labels, drawn as written. Throws std::invalid_argument
/// when the labels do not fit the values. Returns the file's path.
inline std::string heatmap(const std::string& name, const std::vector<std::vector<double>>& values,
                           const std::vector<std::string>& row_labels,
                           const std::vector<std::string>& column_labels,
                           const heatmap_options& o = {})
{
    const std::size_t rows = values.size(), columns = column_labels.size();
    if (rows == 0 || rows != row_labels.size() || columns == 0)
        throw std::invalid_argument("heatmap: " + std::to_string(rows) + " rows of values for " +
                                    std::to_string(row_labels.size()) + " row labels and " +
                                    std::to_string(columns) + " column labels");
    for (const auto& row : values)
        if (row.size() != columns)
            throw std::invalid_argument("heatmap: a row of " + std::to_string(row.size()) +
                                        " values for " + std::to_string(columns) + " columns");
    const auto dir = plot_dir();
    const std::string svg = (dir / (name + ".svg")).string();
    const std::string script = (dir / (name + ".gp")).string();
    std::ofstream gp(script);
    gp << "set terminal svg size " << 220 + 52 * columns << "," << 150 + 40 * rows
       << " font 'sans,12' background '#ffffff'\n";
    gp << "set output '" << svg << "'\n";
    gp << "set title " << gnuplot_text(o.title) << "\nset xlabel " << gnuplot_text(o.xlabel)
       << "\nset ylabel " << gnuplot_text(o.ylabel) << "\n";
    auto tics = [&gp](const char* axis, const std::vector<std::string>& labels) {
        gp << "set " << axis << " (";
        for (std::size_t k = 0; k < labels.size(); ++k)
            gp << (k ? ", " : "") << gnuplot_quoted(labels[k]) << " " << k;
        gp << ") noenhanced scale 0\n";
    };
    tics("xtics", column_labels);
    tics("ytics", row_labels);
    gp << "set xrange [-0.5:" << double(columns) - 0.5 << "]\nset yrange [" << double(rows) - 0.5
       << ":-0.5]\nset cbrange [" << o.low << ":" << o.high << "]\n"
       << "set palette defined (0 '#ffffff', 1 '#08306b')\nunset key\n";
    if (o.numbers)
    {
        gp << "unset colorbox\n"; // the squares say their values
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t c = 0; c < columns; ++c)
            {
                char number[32];
                std::snprintf(number, sizeof number, "%.2f", values[r][c]);
                const bool dark = values[r][c] > (o.low + o.high) / 2;
                gp << "set label " << gnuplot_quoted(number) << " at " << c << "," << r
                   << " center front noenhanced textcolor rgb '" << (dark ? "#ffffff" : "#000000")
                   << "'\n";
            }
    }
    // `pixels`: one rectangle per value; a browser would blur a small bitmap scaled up.
    gp << "plot '-' using 1:2:3 with image pixels\n";
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < columns; ++c)
            gp << c << " " << r << " " << values[r][c] << "\n";
    gp << "e\n";
    gp.close();
    const std::string command = "gnuplot '" + script + "'";
    if (std::system(command.c_str()) != 0)
        throw std::runtime_error("heatmap: gnuplot failed on " + script);
    std::ofstream texts(svg + ".texts");
    for (const std::string& text : {o.title, o.xlabel, o.ylabel})
        if (!text.empty())
            texts << text << "\n";
    std::vector<std::string> ticks; // each label once
    for (const auto* labels : {&row_labels, &column_labels})
        for (const std::string& text : *labels)
            if (!text.empty() && std::find(ticks.begin(), ticks.end(), text) == ticks.end())
                ticks.push_back(text);
    for (const std::string& text : ticks)
        texts << text << "\n";
    texts.close();
    unfold_show(svg);
    return svg;
}

} // namespace unfold::tutorial
