#pragma once
/// The process_group of a job started by mpirun or srun, on MPI (Debian: libopenmpi-dev);
/// CMake target Unfold::distributed. See Note [Data parallelism] in
/// framework/data_parallel.hpp.

#include <climits>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include <unfold/framework/error.hpp>
#include <unfold/framework/process_group.hpp>

namespace unfold
{

namespace detail
{
inline MPI_Datatype mpi_type(const float*) { return MPI_FLOAT; }
inline MPI_Datatype mpi_type(const double*) { return MPI_DOUBLE; }

/// Throws unfold::error naming `what` and MPI's own message unless `code` is MPI_SUCCESS.
inline void mpi_check(int code, const char* what)
{
    if (code == MPI_SUCCESS)
        return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    fail(fmt::format("MPI: {} failed: {}", what, std::string(text, std::size_t(length))));
}

inline int mpi_count(std::size_t n, const char* what)
{
    UNFOLD_CHECK(n <= std::size_t(INT_MAX), "MPI: {} of {} elements is more than one call sends",
                 what, n);
    return int(n);
}

class mpi_request final : public pending_collective
{
public:
    explicit mpi_request(MPI_Request r)
        : m_request(r)
    {}
    ~mpi_request() override
    {
        if (m_request != MPI_REQUEST_NULL)
            MPI_Wait(&m_request, MPI_STATUS_IGNORE);
    }
    bool test() override
    {
        int done = 0;
        mpi_check(MPI_Test(&m_request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        return done != 0;
    }
    void wait() override { mpi_check(MPI_Wait(&m_request, MPI_STATUS_IGNORE), "MPI_Wait"); }

private:
    MPI_Request m_request;
};
} // namespace detail

/// MPI_COMM_WORLD as a process_group. Only the thread that made it may use it.
class mpi_communicator final : public process_group
{
public:
    /// Initialises MPI unless it already is (then this object also finalises it when destroyed).
    mpi_communicator()
    {
        int initialised = 0;
        MPI_Initialized(&initialised);
        if (!initialised)
        {
            int provided = 0;
            detail::mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided),
                              "MPI_Init_thread");
            m_owns = true;
        }
        // Errors come back as codes, which mpi_check turns into unfold::error.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &m_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &m_size);
    }
    mpi_communicator(const mpi_communicator&) = delete;
    mpi_communicator& operator=(const mpi_communicator&) = delete;
    ~mpi_communicator() override
    {
        int finalised = 0;
        MPI_Finalized(&finalised);
        if (m_owns && !finalised)
            MPI_Finalize();
    }

    /// True when this process was started by an MPI launcher (mpirun, mpiexec, srun): then
    /// making an mpi_communicator joins the job; otherwise the program runs alone.
    static bool launched()
    {
        for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
            if (std::getenv(name))
                return true;
        return false;
    }

    int rank() const override { return m_rank; }
    int size() const override { return m_size; }

    void broadcast(real* data, std::size_t n, int root) override
    {
        detail::mpi_check(MPI_Bcast(data, detail::mpi_count(n, "MPI_Bcast"), detail::mpi_type(data),
                                    root, MPI_COMM_WORLD),
                          "MPI_Bcast");
    }
    void sum(real* data, std::size_t n) override { sum_of(data, n); }
    void sum_doubles(double* data, std::size_t n) override { sum_of(data, n); }
    std::unique_ptr<pending_collective> start_sum(real* data, std::size_t n) override
    {
        MPI_Request r = MPI_REQUEST_NULL;
        detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, data, detail::mpi_count(n, "MPI_Iallreduce"),
                                         detail::mpi_type(data), MPI_SUM, MPI_COMM_WORLD, &r),
                          "MPI_Iallreduce");
        return std::make_unique<detail::mpi_request>(r);
    }
    std::vector<std::string> gather_text(const std::string& text) override
    {
        int length = detail::mpi_count(text.size(), "MPI_Allgatherv");
        const auto ranks = static_cast<std::size_t>(m_size);
        std::vector<int> lengths(ranks), offsets(ranks);
        detail::mpi_check(
            MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD),
            "MPI_Allgather");
        std::size_t total = 0;
        for (int r = 0; r < m_size; ++r)
        {
            offsets[std::size_t(r)] = detail::mpi_count(total, "MPI_Allgatherv");
            total += std::size_t(lengths[std::size_t(r)]);
        }
        std::string all(total, '\0');
        detail::mpi_check(MPI_Allgatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(),
                                         offsets.data(), MPI_CHAR, MPI_COMM_WORLD),
                          "MPI_Allgatherv");
        std::vector<std::string> out;
        for (int r = 0; r < m_size; ++r)
            out.push_back(all.substr(std::size_t(offsets[std::size_t(r)]),
                                     std::size_t(lengths[std::size_t(r)])));
        return out;
    }
    tensor gather_rows(const tensor& part) override
    {
        UNFOLD_CHECK(part.dimension() >= 1, "gather_rows: a part of shape {} has no rows",
                     shape_str(part.shape()));
        shape_type shape(part.shape().begin(), part.shape().end());
        shape[0] *= std::size_t(m_size);
        tensor all(shape);
        const int n = detail::mpi_count(part.size(), "MPI_Allgather");
        detail::mpi_check(MPI_Allgather(part.data(), n, detail::mpi_type(part.data()), all.data(),
                                        n, detail::mpi_type(part.data()), MPI_COMM_WORLD),
                          "MPI_Allgather");
        return all;
    }
    void barrier() override { detail::mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
    [[noreturn]] void abort(int status) override
    {
        MPI_Abort(MPI_COMM_WORLD, status);
        std::_Exit(status); // MPI_Abort does not return; if it did, still end here
    }

private:
    template <class T>
    void sum_of(T* data, std::size_t n)
    {
        detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, detail::mpi_count(n, "MPI_Allreduce"),
                                        detail::mpi_type(data), MPI_SUM, MPI_COMM_WORLD),
                          "MPI_Allreduce");
    }

    int m_rank = 0;
    int m_size = 1;
    bool m_owns = false;
};

} // namespace unfold
