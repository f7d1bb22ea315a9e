#define BOOST_TEST_MODULE unfold_distributed
#include <boost/test/unit_test.hpp>
