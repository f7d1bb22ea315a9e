// The `unfold` command: `unfold train` (the default with no arguments: the addition task, then a
// few held-out answers), `unfold sample`, `unfold eval`. See apps/cli.hpp. Started by mpirun (in a
// build with MPI), `unfold train` is data-parallel over the job's processes.
#include <memory>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#ifdef UNFOLD_HAVE_MPI
#include <unfold/framework/distributed/mpi.hpp>
#endif

int main(int argc, char** argv)
{
    // The matrices here are small (batch × a few hundred): BLAS threads only contend with the
    // tape's own work, and on a shared machine they spin. One thread is faster.
    unfold::set_num_threads(1);
    const std::vector<std::string> args(argv + 1, argv + argc);
#ifdef UNFOLD_HAVE_MPI
    if (unfold::mpi_communicator::launched())
    {
        unfold::mpi_communicator world;
        const int status = unfold::app::run_cli(args, stdout, stderr, &world);
        std::fflush(stdout);
        std::fflush(stderr);
        if (status != 0 && world.size() > 1)
            world.abort(status); // the other ranks may be waiting for this one
        return status;
    }
#endif
    return unfold::app::run_cli(args);
}
