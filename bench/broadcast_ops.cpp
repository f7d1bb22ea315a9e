// Broadcasting elementwise ops against the same op on equal shapes (Note [Broadcast loops] in
// framework/tensor.hpp): forward + backward of y = a ∘ b on a tape, the sum of y as the loss, for
// the shapes a user's composed layer norm and an attention decoder broadcast. Each broadcast case
// runs alternately with its same-size elementwise twin; the ratio is the result.
//
//     build-bench/bench/broadcast_ops [--reps N]
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/div.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/sum.hpp>

#include "bench_util.hpp"

using namespace unfold;
using namespace unfold::bench;

namespace
{
/// One forward + backward of op(a, b) with both inputs needing gradients.
std::function<void()> step_of(const tensor& a, const tensor& b, var (*op)(const var&, const var&))
{
    return [&a, &b, op] {
        tape t;
        const var y = op(t.variable(a), t.variable(b));
        t.backward(sum(y));
    };
}

var divide(const var& a, const var& b) { return a / b; }
var multiply(const var& a, const var& b) { return a * b; }
var plus(const var& a, const var& b) { return a + b; }
} // namespace

int main(int argc, char** argv)
{
    int reps = 200;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--reps") == 0)
            reps = std::stoi(argv[i + 1]);
    struct entry
    {
        const char* what;
        shape_type a, b;
        var (*op)(const var&, const var&);
    };
    const std::vector<entry> cases = {
        {"row division by a column (layer norm's x / σ)", {32, 128}, {32, 1}, divide},
        {"row division by a column, larger", {256, 512}, {256, 1}, divide},
        {"weights × memory (attention's context)", {16, 64, 1}, {16, 64, 512}, multiply},
        {"memory × query (multiplicative score)", {16, 64, 512}, {64, 512}, multiply},
        {"column plus row (both broadcast)", {256, 1}, {1, 512}, plus},
    };
    generator g(1);
    std::printf(
        "| case | shapes | broadcast µs | same-size elementwise µs | broadcast/elementwise |\n"
        "|---|---|---|---|---|\n");
    for (const entry& c : cases)
    {
        const tensor a = g.uniform(c.a, 0.5, 2), b = g.uniform(c.b, 0.5, 2);
        const shape_type out = broadcast_shape("broadcast_ops", c.a, c.b);
        const tensor fa = g.uniform(out, 0.5, 2), fb = g.uniform(out, 0.5, 2);
        const auto broadcast = step_of(a, b, c.op), elementwise = step_of(fa, fb, c.op);
        std::vector<double> tb, te;
        broadcast();
        elementwise();
        for (int r = 0; r < reps; ++r)
        {
            auto start = clock_type::now();
            broadcast();
            tb.push_back(seconds_since(start));
            start = clock_type::now();
            elementwise();
            te.push_back(seconds_since(start));
        }
        const double mb = median(tb), me = median(te);
        std::printf("| %s | %s ∘ %s | %.1f | %.1f | **%.2f** |\n", c.what, shape_str(c.a).c_str(),
                    shape_str(c.b).c_str(), mb * 1e6, me * 1e6, mb / me);
    }
    return 0;
}
