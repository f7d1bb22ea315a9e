#pragma once
// The MPI job every case of unfold_distributed_tests runs in (mpiexec -n 2, tests/CMakeLists.txt):
// each case runs on every rank, and makes the same collective calls in the same order.
#include <unfold/framework/distributed/mpi.hpp>

namespace unfold::test
{
/// MPI_COMM_WORLD, initialised on first use and finalised at exit.
inline mpi_communicator& world()
{
    static mpi_communicator w;
    return w;
}
} // namespace unfold::test
