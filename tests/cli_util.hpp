#pragma once
/// Helpers of the tests that drive the `unfold` command line: in-process with captured output, or
/// the built program itself.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "tests/test_util.hpp"

namespace unfold::testing
{

/// What run() gives back: the exit status and everything written to stdout and stderr.
struct cli_result
{
    int status;
    std::string out;
    std::string err;
};

/// run_cli (the whole program as a function) with stdout and stderr captured.
inline cli_result run(const std::vector<std::string>& args)
{
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    const int status = unfold::app::run_cli(args, out, err);
    return {status, read_and_close(out), read_and_close(err)};
}

/// The `unfold` binary of the same build tree (tests/unfold_tests → apps/unfold).
inline std::filesystem::path built_program()
{
    const auto exe = std::filesystem::read_symlink("/proc/self/exe");
    return exe.parent_path().parent_path() / "apps" / "unfold";
}

} // namespace unfold::testing
