// Checks the user's op against central differences in double precision, and shows that the
// check catches a wrong backward (the square left out of the derivative).
#include "softsign.hpp"

#include <unfold/unfold.hpp>

namespace example
{
struct wrong_softsign_op : softsign_op
{
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy / (1 + xt::abs(x));
    }
};
} // namespace example

int main()
{
    using namespace example;
    const gradcheck_result right = check_op<softsign_op>();
    fmt::print("softsign: {} derivatives checked, max |numeric - analytic| = {:.1e}, passed: {}\n",
               right.checked, right.max_abs_error, right.passed);
    const gradcheck_result wrong = check_op<wrong_softsign_op>();
    fmt::print("softsign without the square: max |numeric - analytic| = {:.1e}, passed: {}\n",
               wrong.max_abs_error, wrong.passed);
    return right.passed && !wrong.passed ? 0 : 1;
}
