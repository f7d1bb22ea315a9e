// The gradient checker must catch the bugs it exists for: a wrong derivative, and a backward that
// assigns its gradient instead of accumulating it (correct on trees, wrong on reuse).
#include <boost/test/unit_test.hpp>

#include <unfold/ops/add.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/tanh.hpp>

using namespace unfold;

namespace
{
struct wrong_derivative_op
{
    static constexpr const char* name = "wrong_derivative";
    tensor forward(const tensor& x) const { return x * x; }
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy * x; // should be 2x
    }
    static gradcheck_spec check() { return gradcheck_spec().input({2, 3}); }
};

struct assigning_op
{
    static constexpr const char* name = "assigning";
    tensor forward(const tensor& x) const { return x * x; }
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        gx = 2 * gy * x; // assigns: loses other contributions
    }
    static gradcheck_spec check() { return gradcheck_spec().input({2, 3}); }
};
} // namespace

BOOST_AUTO_TEST_SUITE(gradcheck_utility)

BOOST_AUTO_TEST_CASE(a_wrong_derivative_is_caught)
{
    const gradcheck_result r = check_op<wrong_derivative_op>();
    BOOST_TEST(!r.passed);
    BOOST_TEST(r.report.find("wrong_derivative [default]") != std::string::npos, r.report);
}

BOOST_AUTO_TEST_CASE(assigning_instead_of_accumulating_is_caught_by_the_reuse_case)
{
    const gradcheck_result r = check_op<assigning_op>();
    BOOST_TEST(!r.passed);
    BOOST_TEST(r.report.find("input reused by two nodes") != std::string::npos, r.report);
    BOOST_TEST(r.report.find("assigning [default]:") == std::string::npos, r.report);
}

BOOST_AUTO_TEST_CASE(parameters_are_perturbed_and_their_gradients_restored)
{
    param w("w", tensor{{0.3, -0.2}, {0.1, 0.4}});
    w.grad() = tensor{{1, 2}, {3, 4}};
    const tensor before = w.grad();
    const gradcheck_result r =
        gradcheck([&](tape& t, const std::vector<var>& x) { return tanh(matmul(x[0], t[w])); },
                  {tensor{{0.5, -1.0}}}, {w});
    BOOST_TEST(r.passed, r.report);
    BOOST_TEST(r.checked == 6u); // 2 input elements + 4 parameter elements
    BOOST_TEST(w.grad() == before);
}

BOOST_AUTO_TEST_SUITE_END()
