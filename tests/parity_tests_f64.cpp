// Recurrent layers against PyTorch 1.13 (double build: |Δ| ≤ 1e-10): outputs, final states and the
// gradients of x, the initial state and every parameter. See tests/parity.hpp.
#include <boost/test/unit_test.hpp>

#include "parity.hpp"

BOOST_AUTO_TEST_SUITE(parity_f64)

UNFOLD_PARITY_TEST_CASES()

BOOST_AUTO_TEST_SUITE_END()
