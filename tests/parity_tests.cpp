// Recurrent layers against PyTorch 1.13 (float build: |Δ| ≤ 1e-5 + 1e-4·|torch|): outputs, final
// states and the gradients of x, the initial state and every parameter. See tests/parity.hpp.
#include <boost/test/unit_test.hpp>

#include "parity.hpp"

using unfold::testing::check_parity;

BOOST_AUTO_TEST_SUITE(parity)

BOOST_AUTO_TEST_CASE(rnn_tanh) { check_parity("rnn_tanh"); }
BOOST_AUTO_TEST_CASE(rnn_relu) { check_parity("rnn_relu"); }
BOOST_AUTO_TEST_CASE(gru) { check_parity("gru"); }
BOOST_AUTO_TEST_CASE(lstm) { check_parity("lstm"); }
BOOST_AUTO_TEST_CASE(lstm_2layer) { check_parity("lstm_2layer"); }
BOOST_AUTO_TEST_CASE(gru_2layer) { check_parity("gru_2layer"); }
BOOST_AUTO_TEST_CASE(lstm_bidirectional) { check_parity("lstm_bidir"); }
BOOST_AUTO_TEST_CASE(gru_bidirectional) { check_parity("gru_bidir"); }
BOOST_AUTO_TEST_CASE(lstm_masked) { check_parity("lstm_masked"); }
BOOST_AUTO_TEST_CASE(gru_masked) { check_parity("gru_masked"); }
BOOST_AUTO_TEST_CASE(lstm_bidirectional_masked) { check_parity("lstm_bidir_masked"); }
BOOST_AUTO_TEST_CASE(gru_bidirectional_masked) { check_parity("gru_bidir_masked"); }
BOOST_AUTO_TEST_CASE(lstm_2layer_bidirectional_masked) { check_parity("lstm_2layer_bidir_masked"); }

BOOST_AUTO_TEST_SUITE_END()
