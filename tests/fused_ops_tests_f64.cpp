// Parity of the fused ops (addmm, addcmul, sliced) with the compositions they replace (a fused op
// is allowed for speed only with a parity test against its composition), in double: values and
// every input's gradient, for the shapes the cells use (a bias row, a projected step, a whole
// sequence, PyTorch's weight layout).
#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/framework/random.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/slice.hpp>

using namespace unfold;
using unfold::testing::max_abs_diff;

static_assert(std::is_same_v<real, double>, "parity of fused ops runs in the double build");

namespace
{
struct addmm_case
{
    shape_type c, a, b;
    bool transpose_b;
};

/// Runs `f` on fresh variables holding `inputs`, backward with `seed`; returns y and the grads.
template <class F>
std::vector<tensor> value_and_grads(F f, const std::vector<tensor>& inputs, generator& g)
{
    tape t;
    std::vector<var> xs;
    for (const tensor& x : inputs)
        xs.push_back(t.variable(x));
    const var y = f(xs);
    t.backward(y, g.uniform(y.shape(), -1, 1));
    std::vector<tensor> out{y.value()};
    for (const var& x : xs)
        out.push_back(x.grad());
    return out;
}
} // namespace

BOOST_AUTO_TEST_SUITE(fused_ops)

BOOST_AUTO_TEST_CASE(addmm_equals_add_of_matmul)
{
    const std::vector<addmm_case> cases = {
        {{5, 7}, {5, 6}, {6, 7}, false},      // full c
        {{7}, {5, 6}, {6, 7}, false},         // bias row
        {{1, 7}, {3, 5, 6}, {6, 7}, false},   // sequence, (1, n) bias
        {{5, 1}, {5, 6}, {6, 7}, false},      // column broadcast
        {{5, 7}, {5, 6}, {7, 6}, true},       // projected step + h W_hhᵀ
        {{7}, {3, 5, 6}, {7, 6}, true},       // sequence x W_ihᵀ + b
        {{3, 5, 7}, {3, 5, 6}, {7, 6}, true}, // full sequence c
    };
    for (const addmm_case& k : cases)
    {
        generator g(11);
        const std::vector<tensor> inputs{g.uniform(k.c, -1, 1), g.uniform(k.a, -1, 1),
                                         g.uniform(k.b, -1, 1)};
        generator seed_fused(5), seed_composed(5);
        const auto fused = value_and_grads(
            [&](const std::vector<var>& x) {
                return k.transpose_b ? addmm_transposed(x[0], x[1], x[2]) : addmm(x[0], x[1], x[2]);
            },
            inputs, seed_fused);
        const auto composed = value_and_grads(
            [&](const std::vector<var>& x) {
                return x[0] + (k.transpose_b ? matmul_transposed(x[1], x[2]) : matmul(x[1], x[2]));
            },
            inputs, seed_composed);
        for (std::size_t i = 0; i < fused.size(); ++i)
            BOOST_TEST(max_abs_diff(fused[i], composed[i]) <= 1e-12,
                       (i ? "gradient of input " + std::to_string(i - 1) : std::string("value"))
                           << " of addmm with c " << shape_str(k.c) << ", a " << shape_str(k.a)
                           << ", b " << shape_str(k.b));
    }
}

BOOST_AUTO_TEST_CASE(addmm_of_a_block_equals_addmm_of_its_select)
{
    generator g(17);
    const std::vector<tensor> inputs{g.uniform({4, 3, 5}, -1, 1), g.uniform({3, 2}, -1, 1),
                                     g.uniform({5, 2}, -1, 1)};
    for (std::ptrdiff_t k : {0, 2, 3})
    {
        generator seed_fused(5), seed_composed(5);
        const auto fused = value_and_grads(
            [&](const std::vector<var>& x) {
                return apply(addmm_op{true, k}, x[0], x[1], x[2]);
            },
            inputs, seed_fused);
        const auto composed = value_and_grads(
            [&](const std::vector<var>& x) {
                return addmm_transposed(select(x[0], k), x[1], x[2]);
            },
            inputs, seed_composed);
        for (std::size_t i = 0; i < fused.size(); ++i)
            BOOST_TEST(max_abs_diff(fused[i], composed[i]) == 0.0, "output/gradient " << i);
    }
    tape t;
    unfold::testing::expect_error(
        [&] {
            (void)apply(addmm_op{true, 4}, t.constant(zeros({4, 3, 5})), t.constant(zeros({3, 2})),
                        t.constant(zeros({5, 2})));
        },
        {"addmm: block 4 of c (4, 3, 5) is not a block of the product's shape (3, 5)"});
}

BOOST_AUTO_TEST_CASE(sliced_equals_the_activation_of_a_slice)
{
    generator g(19);
    const std::vector<tensor> inputs{g.uniform({3, 12}, -4, 4)};
    auto same = [&](const char* what, auto fused, auto composed) {
        generator seed_fused(5), seed_composed(5);
        const auto a = value_and_grads(fused, inputs, seed_fused);
        const auto b = value_and_grads(composed, inputs, seed_composed);
        for (std::size_t i = 0; i < a.size(); ++i)
            BOOST_TEST(max_abs_diff(a[i], b[i]) == 0.0, what << ": output/gradient " << i);
    };
    // Every built-in activation, through the cells' own path (activation::on_columns).
    const std::vector<std::pair<const char*, activation>> cases{
        {"sigmoid", activations::sigmoid()},
        {"tanh", activations::tanh()},
        {"relu", activations::relu()},
        {"hard sigmoid", activations::hard_sigmoid()},
        {"elu", activations::elu(0.5)}};
    for (const auto& [what, f] : cases)
        same(
            what, [&, f = f](const std::vector<var>& x) { return f.on_columns(x[0], 3, 9); },
            [&, f = f](const std::vector<var>& x) { return f(slice_cols(x[0], 3, 9)); });
    // A user's activation (a lambda) has no op to fuse: on_columns slices, then applies it.
    const activation user = [](const var& x) { return x * x; };
    tape t;
    const var x = t.constant(inputs[0]);
    const std::size_t before = t.size();
    BOOST_TEST(max_abs_diff(user.on_columns(x, 0, 4).value(),
                            tensor(xt::square(xt::view(inputs[0], xt::all(), xt::range(0, 4))))) ==
               0.0);
    BOOST_TEST(t.size() == before + 2); // slice, then x * x
    (void)activations::sigmoid().on_columns(x, 0, 4);
    BOOST_TEST(t.size() == before + 3); // one node
}

BOOST_AUTO_TEST_CASE(addcmul_equals_add_of_mul)
{
    generator g(13);
    const std::vector<tensor> inputs{g.uniform({4, 6}, -1, 1), g.uniform({4, 6}, -1, 1),
                                     g.uniform({4, 6}, -1, 1)};
    generator seed_fused(5), seed_composed(5);
    const auto fused = value_and_grads(
        [](const std::vector<var>& x) { return addcmul(x[0], x[1], x[2]); }, inputs, seed_fused);
    const auto composed = value_and_grads(
        [](const std::vector<var>& x) { return x[0] + x[1] * x[2]; }, inputs, seed_composed);
    for (std::size_t i = 0; i < fused.size(); ++i)
        BOOST_TEST(max_abs_diff(fused[i], composed[i]) <= 1e-15, "output/gradient " << i);
    tape t;
    unfold::testing::expect_error(
        [&] {
            (void)addcmul(t.constant(zeros({2, 3})), t.constant(zeros({2, 3})),
                          t.constant(zeros({3})));
        },
        {"addcmul: shapes (2, 3), (2, 3) and (3,) differ"});
}

BOOST_AUTO_TEST_CASE(addmm_skips_the_gradients_of_constants)
{
    generator g(3);
    tape t;
    const var c = t.constant(g.uniform({4, 3}, -1, 1));
    const var a = t.constant(g.uniform({4, 2}, -1, 1));
    const var b = t.variable(g.uniform({2, 3}, -1, 1));
    const var y = addmm(c, a, b);
    t.backward(y, tensor(y.shape(), 1.0));
    const tensor expected = xt::sum(a.value(), {0}); // d Σy / d b[k, j] = Σ_i a[i, k]
    for (std::size_t k = 0; k < 2; ++k)
        for (std::size_t j = 0; j < 3; ++j)
            BOOST_TEST(std::abs(b.grad()(k, j) - expected(k)) <= 1e-12);
}

BOOST_AUTO_TEST_CASE(addmm_names_the_shapes_it_cannot_use)
{
    tape t;
    const var c = t.constant(zeros({4, 2}));
    const var a = t.constant(zeros({4, 2}));
    const var b = t.constant(zeros({2, 3}));
    // c must broadcast to the product's shape, not the other way round
    unfold::testing::expect_error([&] { (void)addmm(c, a, b); },
                                  {"addmm: shapes (4, 3) and (4, 2) cannot be broadcast"});
    unfold::testing::expect_error(
        [&] {
            (void)addmm(t.constant(zeros({2, 4, 3})), a, b);
        },
        {"addmm: c of shape (2, 4, 3)", "product's shape (4, 3)"});
    unfold::testing::expect_error(
        [&] {
            (void)addmm(c, a, t.constant(zeros({3, 3})));
        },
        {"addmm: cannot multiply shapes (4, 2) and (3, 3)"});
}

BOOST_AUTO_TEST_SUITE_END()
