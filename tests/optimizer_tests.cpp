// Optimisers: two steps on a 2x2 parameter with fixed gradients, against hand-computed updates
// and against torch.optim (numbers from scripts/fixtures/optimizers.py, float64).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "test_util.hpp"
#include <unfold/framework/optimizer.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

namespace
{
const tensor p0{{1.0, -2.0}, {0.5, 3.0}};
const tensor g1{{0.1, -0.3}, {0.2, 0.05}};
const tensor g2{{-0.2, 0.4}, {0.1, 0.0}};

// Float rounding of O(1) values over two steps.
constexpr double tolerance = 2e-6;

using factory = std::function<std::unique_ptr<optimizer>(std::vector<param>)>;

// Runs two steps (gradient g1, then g2) and returns the values after each.
std::pair<tensor, tensor> two_steps(const factory& make)
{
    param p("w", p0);
    auto opt = make({p});
    p.grad() = g1;
    opt->step();
    const tensor first = p.value();
    p.grad() = g2;
    opt->step();
    BOOST_TEST((p.value().shape() == p0.shape()));
    return {first, p.value()};
}

template <class Opt, class Options>
factory make(Options o)
{
    return [o](std::vector<param> ps) { return std::make_unique<Opt>(std::move(ps), o); };
}

sgd_options sgd_with(double lr, double momentum, double dampening, double wd, bool nesterov)
{
    sgd_options o;
    o.lr = lr;
    o.momentum = momentum;
    o.dampening = dampening;
    o.weight_decay = wd;
    o.nesterov = nesterov;
    return o;
}
adam_options adam_with(double lr, double beta1, double beta2, double wd)
{
    adam_options o;
    o.lr = lr;
    o.beta1 = beta1;
    o.beta2 = beta2;
    o.weight_decay = wd;
    return o;
}
rmsprop_options rmsprop_with(double lr, double alpha, double momentum, bool centered, double wd)
{
    rmsprop_options o;
    o.lr = lr;
    o.alpha = alpha;
    o.momentum = momentum;
    o.centered = centered;
    o.weight_decay = wd;
    return o;
}
adagrad_options adagrad_with(double lr, double lr_decay, double wd, double initial)
{
    adagrad_options o;
    o.lr = lr;
    o.lr_decay = lr_decay;
    o.weight_decay = wd;
    o.initial_accumulator_value = initial;
    return o;
}

struct reference_case
{
    std::string name;
    factory make;
    tensor after_first;
    tensor after_second;
};

// Printed by scripts/fixtures/optimizers.py (torch.optim, PyTorch 1.13, float64), same order.
std::vector<reference_case> torch_cases()
{
    using s = std::vector<real>;
    auto m = [](const s& v) {
        tensor t(shape_type{2, 2});
        std::copy(v.begin(), v.end(), t.begin());
        return t;
    };
    return {
        {"sgd_momentum", make<sgd>(sgd_with(0.1, 0.9, 0, 0, false)), m({0.99, -1.97, 0.48, 2.995}),
         m({1.001, -1.983, 0.452, 2.9905})},
        {"sgd_dampening_decay", make<sgd>(sgd_with(0.1, 0.9, 0.5, 0.1, false)),
         m({0.98, -1.95, 0.475, 2.965}), m({0.9671, -1.91525, 0.445125, 2.918675})},
        {"sgd_nesterov_decay", make<sgd>(sgd_with(0.1, 0.9, 0, 0.1, true)),
         m({0.962, -1.905, 0.4525, 2.9335}), m({0.965522, -1.904305, 0.4046525, 2.8494135})},
        {"adam", make<adam>(adam_with(0.01, 0.9, 0.999, 0)),
         m({0.990000001, -1.99000000033, 0.4900000005, 2.990000002}),
         m({0.993661036039, -1.99193510437, 0.480678204702, 2.98329942135})},
        {"adam_decay", make<adam>(adam_with(0.01, 0.8, 0.9, 0.1)),
         m({0.9900000005, -1.9900000002, 0.4900000004, 2.99000000029}),
         m({0.987898010761, -1.9870419463, 0.48045819711, 2.98007690639})},
        {"adamw_decay", make<adamw>(adam_with(0.01, 0.8, 0.9, 0.1)),
         m({0.989000001, -1.98800000033, 0.4895000005, 2.987000002}),
         m({0.992162333068, -1.98850783461, 0.479727279285, 2.97755537581})},
        {"rmsprop", make<rmsprop>(rmsprop_with(0.01, 0.99, 0, false, 0)),
         m({0.9000001, -1.90000003333, 0.40000005, 2.9000002}),
         m({0.989532356127, -1.98014440725, 0.355098744655, 2.9000002})},
        {"rmsprop_centered", make<rmsprop>(rmsprop_with(0.01, 0.99, 0, true, 0)),
         m({0.899496319484, -1.89949625214, 0.399496268979, 2.89949642049}),
         m({0.989120231006, -1.97965769798, 0.354187527305, 2.89949642049})},
        {"rmsprop_centered_momentum_decay", make<rmsprop>(rmsprop_with(0.01, 0.9, 0.9, true, 0.1)),
         m({0.966666672222, -1.96666666889, 0.466666671111, 2.96666666984}),
         m({0.951887461098, -1.94927056774, 0.418325819869, 2.91327498482})},
        {"adagrad", make<adagrad>(adagrad_with(0.1, 0, 0, 0)),
         m({0.9000000001, -1.90000000003, 0.40000000005, 2.9000000002}),
         m({0.98944271916, -1.98000000002, 0.35527864052, 2.9000000002})},
        {"adagrad_decay", make<adagrad>(adagrad_with(0.1, 0.5, 0.1, 0.2)),
         m({0.959175170962, -1.92546440076, 0.451204996362, 2.93836843657}),
         m({0.973029768266, -1.94516093819, 0.433036664543, 2.90773199975})},
    };
}
} // namespace

BOOST_AUTO_TEST_SUITE(optimizers)

BOOST_AUTO_TEST_CASE(plain_sgd_by_hand)
{
    // θ ← θ − 0.1 g: g1 then g2.
    const auto [first, second] = two_steps(make<sgd>(sgd_with(0.1, 0, 0, 0, false)));
    BOOST_TEST(max_abs_diff(first, tensor{{0.99, -1.97}, {0.48, 2.995}}) < tolerance);
    BOOST_TEST(max_abs_diff(second, tensor{{1.01, -2.01}, {0.47, 2.995}}) < tolerance);
}

BOOST_AUTO_TEST_CASE(sgd_momentum_and_nesterov_by_hand)
{
    // Momentum 0.9: b1 = g1, b2 = 0.9 g1 + g2 = (-0.11, 0.13, 0.28, 0.045).
    const auto [m1, m2] = two_steps(make<sgd>(sgd_with(0.1, 0.9, 0, 0, false)));
    BOOST_TEST(max_abs_diff(m1, p0 - 0.1 * g1) < tolerance);
    BOOST_TEST(max_abs_diff(m2, tensor{{1.001, -1.983}, {0.452, 2.9905}}) < tolerance);
    // Nesterov: step 1 uses g1 + 0.9 b1 = 1.9 g1; step 2 uses g2 + 0.9 b2.
    const auto [n1, n2] = two_steps(make<sgd>(sgd_with(0.1, 0.9, 0, 0, true)));
    const tensor after_first = p0 - 0.19 * g1;
    BOOST_TEST(max_abs_diff(n1, after_first) < tolerance);
    const tensor b2{{-0.11, 0.13}, {0.28, 0.045}};
    BOOST_TEST(max_abs_diff(n2, after_first - 0.1 * (g2 + 0.9 * b2)) < tolerance);
}

BOOST_AUTO_TEST_CASE(adam_first_step_by_hand)
{
    // t = 1: m̂ = g, v̂ = g², so θ ← θ − lr · g / (|g| + ε) ≈ θ − lr · sign(g).
    const auto [first, second] = two_steps(make<adam>(adam_with(0.01, 0.9, 0.999, 0)));
    BOOST_TEST(max_abs_diff(first, tensor{{0.99, -1.99}, {0.49, 2.99}}) < tolerance);
}

BOOST_AUTO_TEST_CASE(adamw_decays_the_weight_adam_decays_the_gradient)
{
    // First step, λ = 0.1, lr = 0.01: Adam normalises g + λθ, so the decay vanishes into the sign
    // (θ − 0.01 sign(g + λθ)); AdamW shrinks θ by (1 − lr λ) first: 0.999 θ − 0.01 sign(g).
    const auto [adam1, adam2] = two_steps(make<adam>(adam_with(0.01, 0.8, 0.9, 0.1)));
    const auto [adamw1, adamw2] = two_steps(make<adamw>(adam_with(0.01, 0.8, 0.9, 0.1)));
    BOOST_TEST(max_abs_diff(adam1, tensor{{0.99, -1.99}, {0.49, 2.99}}) < tolerance);
    BOOST_TEST(max_abs_diff(adamw1, tensor{{0.989, -1.988}, {0.4895, 2.987}}) < tolerance);
    BOOST_TEST(max_abs_diff(adam2, adamw2) > 1e-3);
}

BOOST_AUTO_TEST_CASE(every_optimiser_matches_torch_optim_over_two_steps)
{
    for (const auto& c : torch_cases())
    {
        BOOST_TEST_CONTEXT(c.name)
        {
            const auto [first, second] = two_steps(c.make);
            BOOST_TEST(max_abs_diff(first, c.after_first) < tolerance);
            BOOST_TEST(max_abs_diff(second, c.after_second) < tolerance);
        }
    }
}

BOOST_AUTO_TEST_CASE(step_leaves_gradients_alone_and_zero_grad_clears_them)
{
    param p("w", p0);
    sgd opt({p}, sgd_with(0.1, 0.9, 0, 0.5, false));
    p.grad() = g1;
    opt.step();
    BOOST_TEST(max_abs_diff(p.grad(), g1) == 0.0);
    BOOST_TEST(opt.steps() == 1u);
    opt.zero_grad();
    BOOST_TEST(xt::amax(xt::abs(p.grad()))() == 0.0);
}

BOOST_AUTO_TEST_CASE(set_lr_changes_the_next_step)
{
    param p("w", p0);
    sgd opt({p}, sgd_with(0.1, 0, 0, 0, false));
    p.grad() = g1;
    opt.set_lr(0.5);
    BOOST_TEST(opt.lr() == 0.5);
    opt.step();
    BOOST_TEST(max_abs_diff(p.value(), p0 - 0.5 * g1) < tolerance);
    expect_error([&] { opt.set_lr(-1); }, {"sgd", "negative"});
}

BOOST_AUTO_TEST_CASE(state_is_per_parameter)
{
    // Two parameters under one Adam: each ends exactly where it ends when optimised alone.
    param a("a", p0), b("b", tensor{3.0, -1.0}), b_alone("b", tensor{3.0, -1.0});
    adam both({a, b}, adam_with(0.01, 0.9, 0.999, 0));
    adam alone({b_alone}, adam_with(0.01, 0.9, 0.999, 0));
    for (const auto& [ga, gb] :
         {std::pair{g1, tensor{0.5, 0.25}}, std::pair{g2, tensor{-1.0, 0.0}}})
    {
        a.grad() = ga;
        b.grad() = gb;
        b_alone.grad() = gb;
        both.step();
        alone.step();
    }
    const auto [alone_a1, alone_a2] = two_steps(make<adam>(adam_with(0.01, 0.9, 0.999, 0)));
    BOOST_TEST(max_abs_diff(a.value(), alone_a2) == 0.0);
    BOOST_TEST(max_abs_diff(b.value(), b_alone.value()) == 0.0);
    BOOST_TEST(b.value()(0) != 3.0f);
}

BOOST_AUTO_TEST_CASE(params_of_takes_a_whole_store)
{
    param_store store;
    store.add("x", tensor{1.0});
    store.add("y", tensor{2.0, 3.0});
    sgd opt(params_of(store), sgd_with(1, 0, 0, 0, false));
    BOOST_TEST(opt.params().size() == 2u);
    store.get("y").grad() = tensor{1.0, -1.0};
    opt.step();
    BOOST_TEST(store.get("y").value()(0) == 1.0f);
    BOOST_TEST(store.get("y").value()(1) == 4.0f);
    BOOST_TEST(store.get("x").value()(0) == 1.0f);
}

BOOST_AUTO_TEST_CASE(bad_options_throw)
{
    param p("w", p0);
    expect_error([&] { sgd({p}, sgd_with(0.1, 0, 0, 0, true)); }, {"sgd", "Nesterov"});
    expect_error([&] { sgd({p}, sgd_with(0.1, 0.9, 0.1, 0, true)); }, {"dampening"});
    expect_error([&] { adam({p}, adam_with(0.01, 1.0, 0.999, 0)); }, {"adam", "betas"});
    expect_error([&] { adamw({p}, adam_with(-0.01, 0.9, 0.999, 0)); }, {"adamw", "negative"});
    expect_error([&] { rmsprop({p}, rmsprop_with(0.01, 0.99, -1, false, 0)); }, {"rmsprop"});
    expect_error([&] { adagrad({p}, adagrad_with(0.1, -1, 0, 0)); }, {"adagrad"});
    expect_error([&] { sgd({param()}); }, {"empty"});
}

BOOST_AUTO_TEST_CASE(a_value_whose_shape_changed_is_reported)
{
    param p("w", p0);
    sgd opt({p});
    p.value() = tensor{1.0, 2.0};
    expect_error([&] { opt.step(); }, {"sgd", "'w'", "(2,)", "(2, 2)"});
}

BOOST_AUTO_TEST_SUITE_END()
