#pragma once
/// What every tutorial notebook starts with, in the Jupyter kernel (tutorials/kernel/) and in a
/// notebook compiled as one program (tutorials/kernel/run_program.py). Only standard headers, so
/// a notebook's first cell may still `#define UNFOLD_DOUBLE` before including Unfold.
///
/// The markers below are lines on stdout/stderr starting with "\x01unfold:" that the kernel and
/// the program runner read and never show:
///   show    path    display the image file `path` (PNG or SVG) as the cell's output
///   error   text    the cell failed (an exception escaped its statements)
///   cell    n       the start of cell n (compiled programs only)

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

namespace unfold::notebook
{

/// Flushes both streams, so the kernel sees a cell's output before the cell ends.
inline void flush()
{
    std::cout.flush();
    std::fflush(stdout);
    std::cerr.flush();
    std::fflush(stderr);
}

inline int& failures()
{
    static int count = 0;
    return count;
}

/// Runs the statements of a cell (see tutorials/kernel/cells.py); an exception escaping them is
/// reported as the cell's error instead of ending the interpreter. Returns 0 (it initialises an
/// int).
template <class F>
int run(F&& statements)
{
    try
    {
        statements();
    }
    catch (const std::exception& e)
    {
        flush();
        std::fprintf(stderr, "\x01unfold:error exception: %s\n", e.what());
        ++failures();
    }
    catch (...)
    {
        flush();
        std::fprintf(stderr, "\x01unfold:error exception of unknown type\n");
        ++failures();
    }
    flush();
    return 0;
}

/// Shows the image file at `path` (.png or .svg) as the output of the current cell.
inline void show(const std::string& path)
{
    std::cout.flush();
    std::printf("\x01unfold:show %s\n", path.c_str());
    flush();
}

/// Marks the start of cell n on both streams (compiled programs).
inline int cell(int n)
{
    flush();
    std::printf("\x01unfold:cell %d\n", n);
    std::fprintf(stderr, "\x01unfold:cell %d\n", n);
    flush();
    return 0;
}

/// An uncaught exception (thrown while initialising a notebook variable, outside run()) ends the
/// process; this prints what it was first, so the kernel can say why it restarted.
inline void on_terminate()
{
    flush();
    if (auto e = std::current_exception())
    {
        try
        {
            std::rethrow_exception(e);
        }
        catch (const std::exception& x)
        {
            std::fprintf(stderr, "\x01unfold:error uncaught exception: %s\n", x.what());
        }
        catch (...)
        {
            std::fprintf(stderr, "\x01unfold:error uncaught exception of unknown type\n");
        }
    }
    std::fflush(stderr);
    std::abort();
}

inline int install()
{
    std::set_terminate(on_terminate);
    return 0;
}

} // namespace unfold::notebook

/// unfold_show("plot.svg"): display an image file in the notebook.
inline void unfold_show(const std::string& path) { unfold::notebook::show(path); }
