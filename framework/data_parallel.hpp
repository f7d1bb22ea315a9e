#pragma once
/// Data-parallel training over a process_group (framework/process_group.hpp): every rank holds
/// the whole model, trains on its own part of every batch and averages the gradients.
///
/// Note [Data parallelism]
/// Each of N ranks computes the gradient of the loss on its part of the batch; the mean of the N
/// gradients is the gradient of the mean loss over the whole batch (when each rank's loss is
/// weighted by its share of the batch's counted tokens, as unfold train does), so N ranks take
/// the steps one process would take on the whole batch. They stay equal because every rank
/// starts from rank 0's parameters (broadcast_parameters), receives the same bits from each
/// all-reduce, and applies the same optimiser to them. The result differs from one process's by
/// float round-off only: a GEMM over B rows adds its terms in another order than two over B/2
/// whose sums are added afterwards.
///
/// The gradient_averager all-reduces the gradients in buckets of about `bucket_bytes`, in the
/// reverse of the parameters' order at the first step (the order backward usually completes
/// them) and in the order backward completed them after it (rank 0's), each bucket
/// started as soon as backward has completed all its parameters (Note [Gradient readiness] in
/// framework/tape.hpp) and finished in finish(), before the optimiser's step: the all-reduce of
/// the parameters used late in the forward pass overlaps the backward of the earlier ones.
/// Buckets start in the same order on every rank (collectives must), so a bucket that is ready
/// waits for the ones before it. As in PyTorch's DistributedDataParallel.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/framework/param.hpp>
#include <unfold/framework/process_group.hpp>
#include <unfold/framework/tape.hpp>

namespace unfold
{

/// Throws unfold::error, on every rank alike, unless every rank's `store` has the same
/// parameters by name and shape, in the same order; the message names the first rank and
/// parameter that differ from rank 0's. A collective: every rank must call it.
inline void check_same_parameters(process_group& group, const param_store& store)
{
    std::string mine;
    for (const param& p : store)
        mine += p.name() + '\t' + shape_str(p.shape()) + '\n';
    const std::vector<std::string> all = group.gather_text(mine);
    const auto lines = [](const std::string& text) {
        std::vector<std::string> out;
        for (std::size_t at = 0, end; (end = text.find('\n', at)) != std::string::npos;
             at = end + 1)
            out.push_back(text.substr(at, end - at));
        return out;
    };
    const std::vector<std::string> first = lines(all[0]);
    const auto described = [](const std::string& line) {
        const std::size_t tab = line.find('\t');
        return fmt::format("'{}' of shape {}", line.substr(0, tab), line.substr(tab + 1));
    };
    for (std::size_t r = 1; r < all.size(); ++r)
    {
        const std::vector<std::string> other = lines(all[r]);
        for (std::size_t i = 0; i < std::max(first.size(), other.size()); ++i)
        {
            if (i < first.size() && i < other.size() && first[i] == other[i])
                continue;
            const std::string difference =
                i >= other.size() ? fmt::format("rank {} has no parameter {}, rank 0's is {}", r, i,
                                                described(first[i]))
                : i >= first.size()
                    ? fmt::format("parameter {} of rank {}, {}, is not in rank 0's model", i, r,
                                  described(other[i]))
                    : fmt::format("parameter {} of rank {} is {} where rank 0's is {}", i, r,
                                  described(other[i]), described(first[i]));
            fail(fmt::format("data-parallel ranks hold different models: {} (rank 0 has {} "
                             "parameters, rank {} has {}); every rank must build the same model",
                             difference, first.size(), r, other.size()));
        }
    }
}

/// Copies rank `root`'s parameter values to every rank. A collective.
inline void broadcast_parameters(process_group& group, const param_store& store, int root = 0)
{
    for (param p : store)
        group.broadcast(p.value().data(), p.value().size(), root);
}

/// How a gradient_averager groups its all-reduces.
struct gradient_averager_options
{
    /// Gradients are all-reduced in buckets of at least this many bytes (a parameter larger than
    /// that is a bucket alone); fewer, larger buckets cost less per byte, smaller ones start
    /// sooner. The default is measured (bench/RESULTS.md, "Data-parallel training").
    std::size_t bucket_bytes = std::size_t(1) << 20;
};

/// Averages the gradients of `params` over the ranks of a group, overlapping the all-reduce with
/// backward (Note [Data parallelism]). Per training step: watch(t) the step's tape, backward, then
/// finish() before clipping and the optimiser's step.
class gradient_averager final : public gradient_listener
{
public:
    /// Averages `params` over `group`, in buckets as `o` says; `group` must outlive it.
    gradient_averager(process_group& group, std::vector<param> params,
                      gradient_averager_options o = {})
        : m_group(group)
        , m_params(std::move(params))
        , m_options(o)
        , m_ready(m_params.size(), false)
        , m_bucket_of(m_params.size())
    {
        for (std::size_t i = 0; i < m_params.size(); ++i)
            m_index.emplace(m_params[i].id(), i);
        std::vector<std::size_t> order(m_params.size());
        for (std::size_t i = 0; i < order.size(); ++i)
            order[i] = order.size() - 1 - i;
        make_buckets(order);
    }
    gradient_averager(const gradient_averager&) = delete;
    gradient_averager& operator=(const gradient_averager&) = delete;
    ~gradient_averager() override
    {
        for (bucket& b : m_buckets) // a collective in flight writes into b.flat
            if (b.work)
            {
                if (std::uncaught_exceptions() == 0)
                    b.work->wait();
                else // an error on this rank: the others may never join; the job will abort
                {
                    b.work.release();
                    new std::vector<real>(std::move(b.flat)); // stays where MPI may write
                }
            }
    }

    /// Makes `t`'s backward report to this averager (Note [Gradient readiness]).
    void watch(tape& t) { t.set_gradient_listener(this); }

    /// Backward has completed `p`'s gradient: starts its bucket's all-reduce when that bucket and
    /// every one before it are complete.
    void ready(const param& p) override
    {
        const auto found = m_index.find(p.id());
        UNFOLD_CHECK(found != m_index.end(),
                     "gradient_averager: parameter '{}' is not one of the {} it averages", p.name(),
                     m_params.size());
        const std::size_t i = found->second;
        UNFOLD_CHECK(!m_ready[i],
                     "gradient_averager: the gradient of '{}' was completed twice before finish(): "
                     "a second backward in one step; watch only the tape of the step's last "
                     "backward, or call finish() after each",
                     p.name());
        m_ready[i] = true;
        if (!m_rebuilt)
            m_seen.push_back(i);
        if (--m_buckets[m_bucket_of[i]].waiting == 0)
            start_ready_buckets();
    }

    /// Lets the all-reduces in flight progress (MPI progresses non-blocking collectives only
    /// inside its calls), every few nodes of backward.
    void progress() override
    {
        if (++m_ticks % 16 != 0)
            return;
        while (m_finished < m_started && m_buckets[m_finished].work->test())
            ++m_finished;
    }

    /// Completes the average: starts the buckets not started yet (those holding parameters that
    /// this step's backward did not reach, whose gradients are as they were), waits for every
    /// all-reduce and writes each parameter's mean gradient over the ranks into its grad().
    /// Every rank must call it once per step.
    void finish()
    {
        const auto backward_end = std::chrono::steady_clock::now();
        m_started_in_backward = m_started;
        for (bucket& b : m_buckets)
            b.waiting = 0;
        start_ready_buckets();
        for (bucket& b : m_buckets)
            b.overlapped =
                std::max(0.0, std::chrono::duration<double>(backward_end - b.started_at).count());
        const real scale = real(1) / real(m_group.size());
        for (bucket& b : m_buckets)
        {
            b.work->wait();
            b.work.reset();
            const real* from = b.flat.data();
            for (std::size_t i : b.params)
            {
                tensor& g = m_params[i].grad();
                for (std::size_t k = 0; k < g.size(); ++k)
                    g.data()[k] = from[k] * scale;
                from += g.size();
            }
            b.waiting = b.parameters;
        }
        std::fill(m_ready.begin(), m_ready.end(), false);
        m_started = m_finished = 0;
        m_ticks = 0;
        if (!m_rebuilt)
            rebuild_in_ready_order();
    }

    /// The number of buckets.
    std::size_t buckets() const { return m_buckets.size(); }
    /// How many buckets the last finish() found already started by backward (the rest only
    /// started in finish(), with nothing left to overlap).
    std::size_t started_during_backward() const { return m_started_in_backward; }
    /// How long, in seconds, backward still ran in the last step after bucket `b` started: the
    /// work its all-reduce could hide behind (0 for a bucket started in finish()).
    double seconds_overlapped(std::size_t b) const { return m_buckets.at(b).overlapped; }
    /// The parameters of bucket `b`, in its order.
    std::vector<param> bucket_parameters(std::size_t b) const
    {
        std::vector<param> out;
        for (std::size_t i : m_buckets.at(b).params)
            out.push_back(m_params[i]);
        return out;
    }

private:
    struct bucket
    {
        std::vector<std::size_t> params; // indices into m_params, in the bucket's order
        std::vector<real> flat;          // their gradients, one after the other
        std::size_t parameters = 0;      // params.size()
        std::size_t waiting = 0;         // parameters not yet ready this step
        std::chrono::steady_clock::time_point started_at; // this step
        double overlapped = 0; // seconds of backward after it started, last step
        std::unique_ptr<pending_collective> work;
    };

    void start_ready_buckets()
    {
        while (m_started < m_buckets.size() && m_buckets[m_started].waiting == 0)
        {
            bucket& b = m_buckets[m_started++];
            b.started_at = std::chrono::steady_clock::now();
            real* to = b.flat.data();
            for (std::size_t i : b.params)
            {
                const tensor& g = m_params[i].grad();
                std::memcpy(to, g.data(), g.size() * sizeof(real));
                to += g.size();
            }
            b.work = m_group.start_sum(b.flat.data(), b.flat.size());
        }
    }

    /// Buckets of about m_options.bucket_bytes, filled with the parameters in `order`.
    void make_buckets(const std::vector<std::size_t>& order)
    {
        m_buckets.clear();
        std::size_t bytes = 0;
        for (std::size_t i : order)
        {
            if (m_buckets.empty() || bytes >= m_options.bucket_bytes)
            {
                m_buckets.emplace_back();
                bytes = 0;
            }
            m_buckets.back().params.push_back(i);
            m_bucket_of[i] = m_buckets.size() - 1;
            bytes += m_params[i].size() * sizeof(real);
        }
        for (bucket& b : m_buckets)
        {
            std::size_t n = 0;
            for (std::size_t i : b.params)
                n += m_params[i].size();
            b.flat.resize(n);
            b.waiting = b.parameters = b.params.size();
        }
    }

    /// After the first step, as DistributedDataParallel does: buckets in the order backward
    /// completed the parameters (rank 0's, so that every rank has the same buckets), then those
    /// it did not reach, so that each bucket starts as early as backward allows.
    void rebuild_in_ready_order()
    {
        m_rebuilt = true;
        std::string mine;
        for (std::size_t i : m_seen)
            mine += std::to_string(i) + ' ';
        const std::string first = m_group.gather_text(mine)[0];
        std::vector<std::size_t> order;
        std::vector<bool> placed(m_params.size(), false);
        std::size_t at = 0;
        for (std::size_t end; (end = first.find(' ', at)) != std::string::npos; at = end + 1)
        {
            const std::size_t i = std::stoul(first.substr(at, end - at));
            order.push_back(i);
            placed[i] = true;
        }
        for (std::size_t i = m_params.size(); i-- > 0;)
            if (!placed[i])
                order.push_back(i);
        make_buckets(order);
        m_seen.clear();
    }

    process_group& m_group;
    std::vector<param> m_params;
    gradient_averager_options m_options;
    std::unordered_map<const void*, std::size_t> m_index; // by param::id()
    std::vector<bool> m_ready;
    std::vector<std::size_t> m_bucket_of;
    std::vector<bucket> m_buckets;
    std::size_t m_started = 0;  // buckets [0, m_started) are in flight or done
    std::size_t m_finished = 0; // buckets [0, m_finished) are done
    std::size_t m_started_in_backward = 0;
    std::size_t m_ticks = 0;         // progress() calls this step
    bool m_rebuilt = false;          // the buckets follow backward's order
    std::vector<std::size_t> m_seen; // the order backward completed the parameters, first step
};

} // namespace unfold
