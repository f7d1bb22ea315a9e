#pragma once
/// The processes of a data-parallel run, as the training code sees them: ranks, collectives on
/// float buffers and text, and an all-reduce that runs while the caller goes on. The MPI
/// implementation is framework/distributed/mpi.hpp (target Unfold::distributed); what is built on
/// it is framework/data_parallel.hpp. Every collective must be called by every rank, in the same
/// order.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// A collective started by process_group::start_sum, finished by wait().
struct pending_collective
{
    virtual ~pending_collective() = default;
    /// Lets the collective progress; true once it is complete (wait() then returns at once).
    virtual bool test() = 0;
    /// Blocks until the collective is complete.
    virtual void wait() = 0;
};

/// A fixed set of processes, numbered 0 … size() − 1, that run the same program.
class process_group
{
public:
    virtual ~process_group() = default;
    /// This process's number.
    virtual int rank() const = 0;
    /// The number of processes.
    virtual int size() const = 0;

    /// Replaces data[0, n) on every rank by rank `root`'s.
    virtual void broadcast(real* data, std::size_t n, int root) = 0;
    /// Replaces data[0, n) on every rank by its elementwise sum over the ranks, the same bits on
    /// every rank.
    virtual void sum(real* data, std::size_t n) = 0;
    /// The same for doubles (losses, counts), whatever `real` is.
    virtual void sum_doubles(double* data, std::size_t n) = 0;
    /// Starts sum(data, n) and returns at once; data must stay in place, untouched, until the
    /// returned collective is complete.
    virtual std::unique_ptr<pending_collective> start_sum(real* data, std::size_t n) = 0;
    /// Every rank's `text`, by rank.
    virtual std::vector<std::string> gather_text(const std::string& text) = 0;
    /// Every rank's `part`, by rank, concatenated along the first axis; every part must have the
    /// same shape.
    virtual tensor gather_rows(const tensor& part) = 0;
    /// Waits until every rank has called it.
    virtual void barrier() = 0;
    /// Ends every process of the group at once with `status` (after a rank's error has been
    /// reported: the others would otherwise wait for it in their next collective).
    [[noreturn]] virtual void abort(int status) = 0;
};

} // namespace unfold
