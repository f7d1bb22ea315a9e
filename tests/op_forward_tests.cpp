// Forward values against hand-computed numbers, for the ops with a closed form.
#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/ops/matmul.hpp>

using namespace unfold;

BOOST_AUTO_TEST_SUITE(op_forward)

BOOST_AUTO_TEST_CASE(matmul_by_hand)
{
    tape t;
    var a = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    var b = t.constant(tensor{{1, 0}, {0, 1}, {2, -1}});
    const tensor expected{{7, -1}, {16, -1}};
    BOOST_TEST(testing::max_abs_diff(matmul(a, b).value(), expected) == 0.0);
    var seq = t.constant(tensor{{{1, 2, 3}}, {{4, 5, 6}}}); // (time 2, batch 1, 3)
    const tensor y = matmul(seq, b).value();
    BOOST_TEST(y.shape() == (shape_type{2, 1, 2}));
    BOOST_TEST(y(1, 0, 0) == 16);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(op_forward_transposed)

BOOST_AUTO_TEST_CASE(matmul_transposed_by_hand)
{
    tape t;
    var a = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    var w = t.constant(tensor{{1, 0, 2}, {0, 1, -1}}); // (out 2, in 3)
    const tensor expected{{7, -1}, {16, -1}};
    BOOST_TEST(testing::max_abs_diff(matmul_transposed(a, w).value(), expected) == 0.0);
    testing::expect_error(
        [&] {
            (void)matmul_transposed(a, t.constant(zeros({3, 2})));
        },
        {"matmul", "(2, 3)", "(3, 2) transposed"});
}

BOOST_AUTO_TEST_SUITE_END()
