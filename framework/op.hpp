#pragma once
/// Everything an op file needs: tensors, the tape (apply), and the gradient-check spec.
/// An op is one file, ops/<name>.hpp, defining `<name>_op` and its user-facing function(s); the
/// build finds it there and enrols it in the gradient-check sweep (tests/gradcheck_sweep.cpp).

#include <unfold/framework/gradcheck.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/framework/tensor.hpp>
