#pragma once
#include <type_traits>

#include <unfold/framework/op.hpp>
#include <unfold/ops/elu.hpp>
#include <unfold/ops/hard_sigmoid.hpp>
#include <unfold/ops/relu.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/tanh.hpp>

namespace unfold
{

/// False when op F declares `static constexpr bool backward_reads_input = false`: its backward
/// reads y and gy only, never x. Ops that say nothing read it.
template <class F, class = void>
struct backward_reads_input : std::true_type
{};
template <class F>
struct backward_reads_input<F, std::void_t<decltype(F::backward_reads_input)>>
    : std::bool_constant<F::backward_reads_input>
{};

/// y = f(x[..., begin:end]) for an elementwise op f: a gate's block of the fused pre-activation
/// and its activation as one node. `f(slice_cols(x, begin, end))` records the block as a node of
/// its own — a copy kept until the tape ends, and one more node per gate per step, which is most
/// of a small recurrent step's cost. Here the block is a temporary of forward and of backward; the
/// arithmetic is f's own (its forward and backward run on the block), so the result is
/// identical. The op takes f's name, so anomaly messages still say "sigmoid".
template <class F>
struct sliced_elementwise_op
{
    static constexpr const char* name = F::name; ///< f's, so messages name the activation
    /// Backward reads y, and x only when f's backward does (Note [Recomputation]).
    static constexpr unsigned backward_reads = backward_reads_input<F>::value ? 0b11 : 0b10;
    F f;                      ///< the elementwise op applied to the block
    std::ptrdiff_t begin = 0; ///< the block's first column of the last axis
    std::ptrdiff_t end = 0;   ///< one past the block's last column

    /// The slice that cuts the block out of x.
    slice_op block() const { return {-1, begin, end}; }
    /// f of columns [begin, end) of x's last axis; throws as slice does
    tensor forward(const tensor& x) const { return f.forward(block().forward(x)); }
    /// dx[..., begin:end] += f'(block) gy; the block is cut out of x only when f's backward
    /// reads its input (not for sigmoid and tanh, whose derivatives come from y).
    void backward(const tensor& x, const tensor& y, const tensor& gy, tensor& gx) const
    {
        tensor gb = zeros(y.shape());
        if constexpr (backward_reads_input<F>::value)
            f.backward(block().forward(x), y, gy, gb);
        else
            f.backward(y, y, gy, gb); // its input argument is never read
        block().backward(x, y, gb, gx);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto of = [](auto op, std::ptrdiff_t b, std::ptrdiff_t e) {
            return [=](const std::vector<var>& x) {
                return apply(sliced_elementwise_op<decltype(op)>{op, b, e}, x[0]);
            };
        };
        return gradcheck_spec("sigmoid of a gate block")
            .input({3, 8}, -4, 4)
            .build(of(sigmoid_op{}, 2, 4))
            .next("tanh of the last block")
            .input({3, 8}, -3, 3)
            .build(of(tanh_op{}, 6, 8))
            .next("relu of a sequence's columns")
            .input({2, 3, 6})
            .avoid(0)
            .build(of(relu_op{}, 0, 3))
            .next("hard sigmoid")
            .input({4, 6}, -5, 5)
            .avoid(-3)
            .avoid(3)
            .build(of(hard_sigmoid_op{}, 3, 6))
            .next("elu")
            .input({4, 6}, -2, 2)
            .avoid(0)
            .build(of(elu_op{0.5}, 1, 5));
    }
};

/// The sweep checks every instance above through its spec.
using sliced_op = sliced_elementwise_op<sigmoid_op>;

/// f(x[..., begin:end]) for an elementwise op f (sigmoid_op{}, tanh_op{}, …), one node; equal to
/// `apply(f, slice_cols(x, begin, end))`.
template <class F>
[[nodiscard]] var sliced(F f, const var& x, std::ptrdiff_t begin, std::ptrdiff_t end)
{
    return apply(sliced_elementwise_op<F>{f, begin, end}, x);
}

} // namespace unfold
