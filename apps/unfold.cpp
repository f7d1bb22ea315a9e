// The `unfold` command: `unfold train` (the default with no arguments: the addition task, then a
// few held-out answers), `unfold sample`, `unfold eval`. See apps/cli.hpp.
#include <string>
#include <vector>

#include "apps/cli.hpp"

int main(int argc, char** argv)
{
    // The matrices here are small (batch × a few hundred): BLAS threads only contend with the
    // tape's own work, and on a shared machine they spin. One thread is faster.
    unfold::set_num_threads(1);
    return unfold::app::run_cli(std::vector<std::string>(argv + 1, argv + argc));
}
