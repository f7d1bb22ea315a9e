// The gradient-check sweep: every op in ops/ (found by the build, see all_ops.hpp) is checked in
// double against central differences, including broadcasting cases and an input reused by two
// nodes. Adding ops/<name>.hpp adds a case here with no other edit.
#include <boost/test/unit_test.hpp>

#include <unfold/all_ops.hpp>

static_assert(std::is_same_v<unfold::real, double>, "the sweep runs in the double build");

BOOST_AUTO_TEST_SUITE(gradcheck_sweep)

BOOST_AUTO_TEST_CASE_TEMPLATE(op, Op, unfold::all_ops)
{
    const unfold::gradcheck_result result = unfold::check_op<Op>();
    BOOST_TEST(result.checked > 0u);
    BOOST_TEST(result.passed, Op::name << " failed its gradient check:\n" << result.report);
    BOOST_TEST_MESSAGE(Op::name << ": " << result.checked << " derivatives, max |error| "
                                << result.max_abs_error);
}

BOOST_AUTO_TEST_SUITE_END()
