// A header is enough on its own: an op's header brings what its users write with it (the scalar
// forms of arithmetic come with add, sub, mul and div), and the umbrella header has everything.
#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/ops/mul.hpp>

using namespace unfold;
using unfold::testing::max_abs_diff;

BOOST_AUTO_TEST_SUITE(headers)

BOOST_AUTO_TEST_CASE(mul_alone_gives_the_scalar_forms)
{
    tape t;
    const var x = t.variable(tensor{1.0, -2.0});
    const var loss = x * x * real(0.5) + 1;
    BOOST_TEST(max_abs_diff(loss.value(), tensor{1.5, 3.0}) == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
