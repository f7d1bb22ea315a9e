// A 10,000-step GRU unroll, forward and backward, on a thread with a 256 KiB stack: nothing in
// recording, backward or tape destruction recurses over the graph (Note [Backward order]), and
// the memory the tape holds grows linearly with the number of steps.
#include <cmath>
#include <exception>
#include <functional>

#include <boost/test/unit_test.hpp>
#include <pthread.h>

#include "test_util.hpp"
#include <unfold/models/gru.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/sum.hpp>

using namespace unfold;

namespace
{
/// Runs f on a new thread whose stack is `bytes`; rethrows what f threw.
void run_with_stack(std::size_t bytes, const std::function<void()>& f)
{
    struct job
    {
        const std::function<void()>* f;
        std::exception_ptr error;
    } j{&f, nullptr};
    pthread_attr_t attr;
    BOOST_REQUIRE(pthread_attr_init(&attr) == 0);
    BOOST_REQUIRE(pthread_attr_setstacksize(&attr, bytes) == 0);
    pthread_t thread;
    const int created = pthread_create(
        &thread, &attr,
        [](void* p) -> void* {
            auto* jp = static_cast<job*>(p);
            try
            {
                (*jp->f)();
            }
            catch (...)
            {
                jp->error = std::current_exception();
            }
            return nullptr;
        },
        &j);
    pthread_attr_destroy(&attr);
    BOOST_REQUIRE(created == 0);
    pthread_join(thread, nullptr);
    if (j.error)
        std::rethrow_exception(j.error);
}

/// Bytes of tensor data (values and gradients) held by the tape `x` is recorded on.
std::size_t tape_bytes(const var& x)
{
    std::size_t n = 0;
    for (const auto& node : detail::core_of(x).nodes)
        n += (node.value_size() + (node.grad && !node.grad_is_param ? node.grad->size() : 0)) *
                 sizeof(real) +
             sizeof(node);
    return n;
}

struct run_result
{
    std::size_t nodes = 0;
    std::size_t bytes = 0; ///< after backward, gradients included
    real loss = 0;
    bool grads_finite = false;
};

/// Forward and backward of a GRU (B = 2, I = 3, H = 4) over T steps.
run_result run_gru(std::size_t T)
{
    param_store store;
    generator g(5);
    const gru_cell cell = gru_cell::create(store, 3, 4, g);
    tape t;
    const var xs = t.constant(g.uniform({T, 2, 3}, -1, 1));
    const std::vector<var> states = unroll(cell, t, xs, t.constant(zeros({2, 4})));
    const var loss = mean(states.back()) + mean(states[T / 2]);
    t.backward(loss);
    run_result r;
    r.nodes = t.size();
    r.bytes = tape_bytes(loss);
    r.loss = loss.item();
    r.grads_finite = true;
    for (const param& p : store)
        for (real v : p.grad())
            r.grads_finite = r.grads_finite && std::isfinite(v);
    return r;
}
} // namespace

BOOST_AUTO_TEST_SUITE(long_unroll)

BOOST_AUTO_TEST_CASE(ten_thousand_gru_steps_on_a_small_stack_with_linear_memory)
{
    run_result r2500, r5000, r10000;
    run_with_stack(256 * 1024, [&] {
        r2500 = run_gru(2500);
        r5000 = run_gru(5000);
        r10000 = run_gru(10000);
    });
    BOOST_TEST(std::isfinite(r10000.loss));
    BOOST_TEST(r10000.grads_finite);
    // Linear growth: doubling the steps doubles the nodes and the bytes (within 2%: the constant
    // overhead of the parameters and the input).
    const double nodes_ratio_1 = double(r5000.nodes) / double(r2500.nodes);
    const double nodes_ratio_2 = double(r10000.nodes) / double(r5000.nodes);
    const double bytes_ratio_1 = double(r5000.bytes) / double(r2500.bytes);
    const double bytes_ratio_2 = double(r10000.bytes) / double(r5000.bytes);
    BOOST_TEST_MESSAGE("nodes " << r2500.nodes << " " << r5000.nodes << " " << r10000.nodes
                                << ", bytes " << r2500.bytes << " " << r5000.bytes << " "
                                << r10000.bytes);
    BOOST_TEST(std::abs(nodes_ratio_1 - 2) < 0.02);
    BOOST_TEST(std::abs(nodes_ratio_2 - 2) < 0.02);
    BOOST_TEST(std::abs(bytes_ratio_1 - 2) < 0.02);
    BOOST_TEST(std::abs(bytes_ratio_2 - 2) < 0.02);
    // A node costs its fixed size (two xarray headers, the backward) more than its data at this
    // size: about 640 bytes for 21 nodes per step; far from anything quadratic.
    BOOST_TEST(r10000.bytes / 10000 < 32u * 1024);
}

BOOST_AUTO_TEST_SUITE_END()
