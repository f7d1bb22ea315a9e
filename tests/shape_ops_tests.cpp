// Forward values of the shape and reduction ops against hand-computed numbers, their error
// messages, and a few hand-computed gradients (scatter-add, mean's 1/n). Gradient checks of every
// case run in the double sweep (gradcheck_sweep.cpp).
#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/ops/add.hpp>
#include <unfold/ops/concat.hpp>
#include <unfold/ops/gather_rows.hpp>
#include <unfold/ops/reshape.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/stack.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/transpose.hpp>

using namespace unfold;
using testing::expect_error;
using testing::max_abs_diff;

namespace
{
/// x[i, j, k] = 12 i + 4 j + k, shape (2, 3, 4): every element names its own position.
tensor counting()
{
    tensor x = xt::arange<real>(real(24));
    x.reshape({2, 3, 4});
    return x;
}
} // namespace

BOOST_AUTO_TEST_SUITE(shape_ops)

BOOST_AUTO_TEST_CASE(sum_all_is_rank_0)
{
    tape t;
    var s = sum(t.constant(counting()));
    BOOST_TEST(s.dimension() == 0u);
    BOOST_TEST(s.size() == 1u);
    BOOST_TEST(s.item() == 276);
}

BOOST_AUTO_TEST_CASE(sum_along_axes)
{
    tape t;
    var x = t.constant(counting());
    const tensor axis0{{12, 14, 16, 18}, {20, 22, 24, 26}, {28, 30, 32, 34}};
    BOOST_TEST(max_abs_diff(sum(x, 0).value(), axis0) == 0.0);
    BOOST_TEST(max_abs_diff(sum(x, -3).value(), axis0) == 0.0);
    const tensor axis1{{12, 15, 18, 21}, {48, 51, 54, 57}};
    BOOST_TEST(max_abs_diff(sum(x, 1).value(), axis1) == 0.0);
    const tensor last{{6, 22, 38}, {54, 70, 86}};
    BOOST_TEST(max_abs_diff(sum(x, -1).value(), last) == 0.0);
    const tensor kept = sum(x, -1, true).value();
    BOOST_TEST(kept.shape() == (shape_type{2, 3, 1}));
    BOOST_TEST(kept(1, 2, 0) == 86);
    BOOST_TEST(sum(x, 1, true).value().shape() == (shape_type{2, 1, 4}));
}

BOOST_AUTO_TEST_CASE(sum_rows_and_cols)
{
    tape t;
    var m = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    BOOST_TEST(max_abs_diff(sum_rows(m).value(), tensor{5, 7, 9}) == 0.0);
    BOOST_TEST(max_abs_diff(sum_cols(m).value(), tensor{6, 15}) == 0.0);
}

BOOST_AUTO_TEST_CASE(sum_gradient_broadcasts_back)
{
    tape t;
    var x = t.variable(counting());
    t.backward(sum(x, 1), tensor{{1, 2, 3, 4}, {5, 6, 7, 8}});
    BOOST_TEST(x.grad()(0, 2, 3) == 4);
    BOOST_TEST(x.grad()(1, 0, 1) == 6);
    BOOST_TEST(x.grad()(1, 2, 1) == 6);
}

BOOST_AUTO_TEST_CASE(mean_values_and_gradient)
{
    tape t;
    var x = t.variable(counting());
    BOOST_TEST(mean(x).item() == 11.5);
    const tensor axis1{{4, 5, 6, 7}, {16, 17, 18, 19}};
    BOOST_TEST(max_abs_diff(mean(x, 1).value(), axis1) == 0.0);
    const tensor first = mean(x, -3, true).value(); // (1, 3, 4): 6 + 4 j + k
    BOOST_TEST(first.shape() == (shape_type{1, 3, 4}));
    BOOST_TEST(first(0, 2, 1) == 15);
    BOOST_TEST(max_abs_diff(mean(x, -1).value(), tensor{{1.5, 5.5, 9.5}, {13.5, 17.5, 21.5}}) ==
               0.0);
    t.backward(mean(x));
    BOOST_TEST(max_abs_diff(x.grad(), full({2, 3, 4}, real(1) / 24)) < 1e-7);
}

BOOST_AUTO_TEST_CASE(slice_values)
{
    tape t;
    var m = t.constant(tensor{{1, 2, 3, 4}, {5, 6, 7, 8}});
    BOOST_TEST(max_abs_diff(slice_cols(m, 1, 3).value(), tensor{{2, 3}, {6, 7}}) == 0.0);
    BOOST_TEST(max_abs_diff(slice_rows(m, 1, 2).value(), tensor{{5, 6, 7, 8}}) == 0.0);
    var x = t.constant(counting());
    const tensor mid = slice(x, 1, 1, 3).value();
    BOOST_TEST(mid.shape() == (shape_type{2, 2, 4}));
    BOOST_TEST(mid(1, 0, 2) == 18);
    BOOST_TEST(mid(0, 1, 3) == 11);
    const tensor step = slice(x, -3, 1, 2).value();
    BOOST_TEST(step.shape() == (shape_type{1, 3, 4}));
    BOOST_TEST(step(0, 0, 0) == 12);
    BOOST_TEST(slice(x, -1, 2, 2).value().size() == 0u);
}

BOOST_AUTO_TEST_CASE(slice_gradient_fills_its_block)
{
    tape t;
    var m = t.variable(tensor{{1, 2, 3, 4}, {5, 6, 7, 8}});
    t.backward(sum(slice_cols(m, 1, 3)) + sum(slice_cols(m, 2, 4)));
    BOOST_TEST(max_abs_diff(m.grad(), tensor{{0, 1, 2, 1}, {0, 1, 2, 1}}) == 0.0);
}

BOOST_AUTO_TEST_CASE(concat_values)
{
    tape t;
    var a = t.constant(tensor{{1, 2}, {3, 4}});
    tensor column{5, 6};
    column.reshape({2, 1});
    var b = t.constant(column);
    BOOST_TEST(max_abs_diff(concat_cols({a, b}).value(), tensor{{1, 2, 5}, {3, 4, 6}}) == 0.0);
    BOOST_TEST(max_abs_diff(concat_rows({a, a}).value(), tensor{{1, 2}, {3, 4}, {1, 2}, {3, 4}}) ==
               0.0);
    var x = t.constant(counting());
    const tensor joined = concat({slice(x, 1, 2, 3), x}, -2).value(); // (2, 1 + 3, 4)
    BOOST_TEST(joined.shape() == (shape_type{2, 4, 4}));
    BOOST_TEST(joined(1, 0, 1) == 21);
    BOOST_TEST(joined(1, 1, 1) == 13);
    BOOST_TEST(joined(0, 3, 3) == 11);
}

BOOST_AUTO_TEST_CASE(reshape_and_transpose_values)
{
    tape t;
    var x = t.constant(counting());
    const tensor rows = reshape(x, {6, 4}).value();
    BOOST_TEST(rows.shape() == (shape_type{6, 4}));
    BOOST_TEST(rows(5, 3) == 23);
    BOOST_TEST(rows(2, 1) == 9);
    var m = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    BOOST_TEST(max_abs_diff(transpose(m).value(), tensor{{1, 4}, {2, 5}, {3, 6}}) == 0.0);
    const tensor cycled = transpose(x, {2, 0, 1}).value(); // y[k, i, j] = x[i, j, k]
    BOOST_TEST(cycled.shape() == (shape_type{4, 2, 3}));
    BOOST_TEST(cycled(3, 1, 2) == 23);
    BOOST_TEST(cycled(1, 0, 2) == 9);
}

BOOST_AUTO_TEST_CASE(gather_rows_values_and_scatter_add)
{
    tape t;
    var table = t.variable(tensor{{0, 1}, {10, 11}, {20, 21}, {30, 31}});
    var rows = gather_rows(table, {3, 0, 3});
    BOOST_TEST(max_abs_diff(rows.value(), tensor{{30, 31}, {0, 1}, {30, 31}}) == 0.0);
    var grid = gather_rows(table, {1, 2, 3, 0}, shape_type{2, 2});
    BOOST_TEST(grid.value().shape() == (shape_type{2, 2, 2}));
    BOOST_TEST(grid.value()(1, 0, 1) == 31);
    BOOST_TEST(grid.value()(0, 1, 0) == 20);
    t.backward(rows, tensor{{1, 2}, {3, 4}, {5, 6}});
    BOOST_TEST(max_abs_diff(table.grad(), tensor{{3, 4}, {0, 0}, {0, 0}, {6, 8}}) == 0.0);
}

BOOST_AUTO_TEST_CASE(select_and_stack_are_inverse)
{
    tape t;
    var x = t.constant(counting());
    const tensor second = select(x, 1).value();
    BOOST_TEST(second.shape() == (shape_type{3, 4}));
    BOOST_TEST(second(2, 3) == 23);
    BOOST_TEST(select(x, -2).value()(1, 1) == 5);
    BOOST_TEST(max_abs_diff(stack({select(x, 0), select(x, 1)}).value(), counting()) == 0.0);
    var a = t.constant(tensor{1, 2});
    var b = t.constant(tensor{3, 4});
    BOOST_TEST(max_abs_diff(stack({a, b, a}).value(), tensor{{1, 2}, {3, 4}, {1, 2}}) == 0.0);
}

BOOST_AUTO_TEST_CASE(errors_name_op_and_shapes)
{
    tape t;
    var x = t.constant(counting());
    var m = t.constant(zeros({2, 3}));
    expect_error([&] { (void)sum(x, 3); }, {"sum", "axis 3", "(2, 3, 4)"});
    expect_error([&] { (void)mean(x, -4); }, {"mean", "axis -4", "(2, 3, 4)"});
    expect_error([&] { (void)slice(x, -1, 2, 5); }, {"slice", "[2, 5)", "(2, 3, 4)"});
    expect_error([&] { (void)slice_cols(m, 2, 1); }, {"slice", "[2, 1)", "(2, 3)"});
    expect_error(
        [&] {
            (void)concat({m, t.constant(zeros({3, 4}))}, 1);
        },
        {"concat", "(2, 3), (3, 4)", "axis 1"});
    expect_error([&] { (void)reshape(x, {5, 5}); }, {"reshape", "(2, 3, 4)", "(5, 5)"});
    expect_error([&] { (void)transpose(x); }, {"transpose", "(2, 3, 4)"});
    expect_error([&] { (void)transpose(x, {0, 1, 1}); }, {"transpose", "(0, 1, 1)", "(2, 3, 4)"});
    expect_error(
        [&] {
            (void)gather_rows(m, {0, 2});
        },
        {"gather_rows", "index 2", "position 1", "(2, 3)"});
    expect_error(
        [&] {
            (void)gather_rows(m, {0, 1, 1, 5}, shape_type{2, 2});
        },
        {"gather_rows", "index 5", "position (1, 1)", "(2, 3)"});
    expect_error(
        [&] {
            (void)gather_rows(m, {0, 1, 1}, shape_type{2, 2});
        },
        {"gather_rows", "3 indices", "(2, 2)"});
    expect_error([&] { (void)select(x, 2); }, {"select", "index 2", "(2, 3, 4)"});
    expect_error([&] { (void)stack({m, t.constant(zeros({3, 2}))}); }, {"stack", "(2, 3), (3, 2)"});
}

BOOST_AUTO_TEST_SUITE_END()
