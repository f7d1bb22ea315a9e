// The `unfold` command: `unfold train` (the default with no arguments: the addition task, then a
// few held-out answers), `unfold sample`, `unfold eval`. See apps/cli.hpp.
#include <string>
#include <vector>

#include <malloc.h>

#include "apps/cli.hpp"

// OpenBLAS's thread count, when the BLAS is OpenBLAS (weak: absent with another BLAS).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

int main(int argc, char** argv)
{
    // The matrices here are small (batch × a few hundred): BLAS threads only contend with the
    // tape's own work, and on a shared machine they spin. One thread is faster.
    if (openblas_set_num_threads)
        openblas_set_num_threads(1);
    // Every training step frees and reallocates the same tape-sized blocks; keeping them in the
    // heap instead of returning them to the kernel (mmap/munmap, page faults) saves system time.
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    return unfold::app::run_cli(std::vector<std::string>(argv + 1, argv + argc));
}
