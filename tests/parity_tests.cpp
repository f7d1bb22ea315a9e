// Recurrent layers against PyTorch 1.13 (float build: |Δ| ≤ 1e-5 + 1e-4·|torch|): outputs, final
// states and the gradients of x, the initial state and every parameter. See tests/parity.hpp.
#include <boost/test/unit_test.hpp>

#include "parity.hpp"

BOOST_AUTO_TEST_SUITE(parity)

UNFOLD_PARITY_TEST_CASES()

BOOST_AUTO_TEST_SUITE_END()
