#define BOOST_TEST_MODULE unfold
#include <boost/test/unit_test.hpp>
