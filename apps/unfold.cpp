// The `unfold` command. For now it runs one built-in demo: a vanilla (tanh) RNN learns to
// continue sine waves of random frequency and phase, trained by BPTT over the unrolled tape.
// Training on real tasks (`unfold train`, `unfold sample`) arrives with issue #4.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>

#include "framework/optimizer.hpp"
#include "framework/random.hpp"
#include "models/linear.hpp"
#include "models/rnn.hpp"
#include "ops/mse.hpp"

using namespace unfold;

namespace
{
constexpr std::size_t steps = 30, batch = 32, hidden_size = 24;

/// A batch of sine waves: inputs x_t = sin(ω t + φ) for t < T, targets x_{t+1}; both (T, B, 1).
std::pair<tensor, tensor> sine_batch(generator& g)
{
    const tensor omega = g.uniform({batch}, 0.3, 0.9);
    const tensor phase = g.uniform({batch}, 0, 6.2832);
    tensor x = zeros({steps, batch, 1}), y = zeros({steps, batch, 1});
    for (std::size_t t = 0; t < steps; ++t)
        for (std::size_t b = 0; b < batch; ++b)
        {
            x(t, b, 0) = std::sin(omega(b) * real(t) + phase(b));
            y(t, b, 0) = std::sin(omega(b) * real(t + 1) + phase(b));
        }
    return {x, y};
}
} // namespace

int main(int argc, char** argv)
try
{
    if (argc > 1)
    {
        std::fprintf(stderr, "usage: unfold   (runs the built-in RNN demo; train/sample come with "
                             "issue #4)\n");
        return 2;
    }
    generator g(42);
    param_store store;
    const auto rnn = rnn_layer(store, 1, hidden_size, g);
    const auto head = linear::create(store, hidden_size, 1, g, "head.");
    adam optimiser(params_of(store), {0.01});
    std::printf("unfold demo: a tanh RNN (hidden %zu, %zu parameters) learns to continue sine "
                "waves; BPTT over %zu steps, batch %zu\n",
                hidden_size, store.count(), steps, batch);

    const auto start = std::chrono::steady_clock::now();
    generator data(7);
    const auto [x_valid, y_valid] = sine_batch(data);
    for (int epoch = 1; epoch <= 25; ++epoch)
    {
        double train_loss = 0;
        const int updates = 20;
        for (int i = 0; i < updates; ++i)
        {
            const auto [x, y] = sine_batch(g);
            tape t;
            var prediction = head(t, rnn(t, t.constant(x)).output);
            var loss = mse(prediction, t.constant(y));
            optimiser.zero_grad();
            t.backward(loss);
            optimiser.step();
            train_loss += loss.item() / updates;
        }
        no_grad_guard eval;
        tape t;
        const real valid_loss =
            mse(head(t, rnn(t, t.constant(x_valid)).output), t.constant(y_valid)).item();
        std::printf("epoch %2d  train mse %.5f  valid mse %.5f\n", epoch, train_loss, valid_loss);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("done in %.2f s\n", seconds);
    return 0;
}
catch (const std::exception& e)
{
    std::fprintf(stderr, "unfold: %s\n", e.what());
    return 1;
}
