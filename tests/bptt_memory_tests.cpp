// Memory policies for BPTT in the float build (the cases: bptt_memory_cases.hpp).
#include "bptt_memory_cases.hpp"
