// A user's recurrent cell trained with Unfold: the minimal gated unit of mgu.hpp, learning to
// recall its input from two steps back.
#include "mgu.hpp"

int main()
{
    using namespace example;
    const std::size_t steps = 10, batch = 16, hidden = 16, delay = 2, updates = 300;
    generator g(21);
    param_store store;
    const mgu_cell cell = mgu_cell::create(store, 1, hidden, g);
    const linear head = linear::create(store, hidden, 1, g, "head.");
    adam_options options;
    options.lr = real(0.02);
    adam optimiser(std::vector<param>(store.begin(), store.end()), options);

    double first = 0, last = 0;
    for (std::size_t update = 0; update < updates; ++update)
    {
        const tensor x = g.uniform({steps, batch, 1}, -1, 1);
        tape t;
        const std::vector<var> hs =
            unroll(cell, t, t.constant(x), t.constant(zeros({batch, hidden})));
        var loss = t.constant(zeros({}));
        for (std::size_t k = delay; k < steps; ++k)
            loss = loss + mse(head(t, hs[k]), t.constant(xt::view(x, k - delay)));
        loss = loss * (real(1) / real(steps - delay));
        optimiser.zero_grad();
        t.backward(loss);
        optimiser.step();
        if (update == 0)
            first = loss.item();
        last = loss.item();
        if (update % 50 == 0 || update + 1 == updates)
            fmt::print("update {:>3}: loss {:.4f}\n", update, loss.item());
    }
    fmt::print("loss fell from {:.4f} to {:.4f}; predicting 0 would give {:.4f}\n", first, last,
               1.0 / 3);
    return last < first ? 0 : 1;
}
