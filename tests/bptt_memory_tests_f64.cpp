// Memory policies for BPTT in the double build (the cases: bptt_memory_cases.hpp).
#include "bptt_memory_cases.hpp"
