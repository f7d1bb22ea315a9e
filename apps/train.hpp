#pragma once
/// The training loop of `unfold train`, the metrics of `unfold eval` and the generation of
/// `unfold sample`, as library functions (the tests call them directly).

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "apps/batching.hpp"
#include "apps/model.hpp"
#include "apps/task.hpp"
#include "apps/tasks.hpp"
#include "apps/text.hpp"
#include <unfold/framework/checkpoint.hpp>
#include <unfold/framework/clip.hpp>
#include <unfold/framework/optimizer.hpp>
#include <unfold/framework/schedule.hpp>
#include <unfold/models/feeding.hpp>

namespace unfold::app
{

/// Everything `unfold train` can be told.
struct train_options
{
    model_config model;
    std::string text_file; ///< for model.task == "text"

    std::string feeding = "teacher";       ///< teacher, free or scheduled
    std::string decay = "inverse_sigmoid"; ///< linear, exponential or inverse_sigmoid
    double decay_k = 0;                    ///< 0: a default that suits the run's length
    double decay_c = 0;                    ///< linear slope; 0: reach the floor at the end
    double decay_floor = 0;                ///< linear decay's lower bound
    std::string sampling_unit = "token";   ///< token or sequence
    std::string optimizer = "adam";        ///< sgd, adam, adamw, rmsprop or adagrad
    double lr = 0;                         ///< 0: the optimiser's default for this program
    std::string lr_schedule = "cosine";    ///< constant or cosine (to lr / 20 at the end)
    double clip = 1.0;                     ///< global gradient norm; 0: no clipping
    std::size_t tbptt = 64;                ///< chunk length for --text
    std::size_t epochs = 7;
    std::size_t steps = 250; ///< steps per epoch (text: 0 = one pass)
    std::size_t batch = 64;
    std::uint64_t seed = 1;
    std::string checkpoint;     ///< empty: unfold-<task>.safetensors
    std::size_t save_every = 0; ///< 0: only at the end
    std::size_t samples = 6;    ///< examples generated after training
    bool quiet = false;         ///< no progress lines (tests)
};

/// Set by the SIGINT handler; the loop saves a checkpoint and stops when it sees it.
inline volatile std::sig_atomic_t interrupted = 0;

extern "C" inline void on_interrupt(int) { interrupted = 1; }

/// The metrics of a model on its task, one line's worth.
struct validation
{
    std::vector<metric> metrics;
    double primary = 0; ///< the first metric (exact match, legal successors, or −loss)
    std::string str() const
    {
        std::string s;
        for (const auto& m : metrics)
            s += fmt::format("{}{} {:.4f}", s.empty() ? "" : "  ", m.name, m.value);
        return s;
    }
};

/// Held-out metrics: exact match and teacher-forced loss for addition and copy; legal-successor
/// accuracy and the fraction of valid sampled strings for reber; loss, bits per character and
/// next-character accuracy for text (on at most `text_limit` validation characters).
inline validation validate(const model& m, const task* tk, const text_corpus* text, generator& g,
                           std::size_t text_limit = 20000)
{
    no_grad_guard no_grad;
    validation v;
    if (tk)
    {
        teacher_forcing teacher;
        tape t;
        const token_batch b = make_batch(tk->vocab(), tk->held_out());
        const double loss = run_loss(m.run(t, b, teacher), b).item();
        if (tk->name() == "reber")
        {
            v.metrics.push_back({"legal_next", reber_legal_accuracy(m, *tk, tk->held_out())});
            v.metrics.push_back({"valid_samples", reber_valid_samples(m, *tk, 200, g)});
        }
        else
            v.metrics.push_back(
                {"exact_match", evaluate_answers(m, *tk, tk->held_out()).accuracy()});
        v.metrics.push_back({"loss", loss});
    }
    else
    {
        std::vector<std::size_t> valid(
            text->valid.begin(),
            text->valid.begin() + std::ptrdiff_t(std::min(text_limit, text->valid.size())));
        const std::size_t streams =
            std::max<std::size_t>(1, std::min<std::size_t>(16, valid.size() / 200));
        const text_stream s(valid, streams, 64);
        teacher_forcing teacher;
        std::vector<tensor> state;
        double total = 0, right = 0, count = 0;
        for (std::size_t k = 0; k < s.chunks(); ++k)
        {
            const token_batch b = s.chunk(k);
            tape t;
            const model_run r = m.run(t, b, teacher, state);
            state = r.final_state;
            total += run_loss(r, b).item() * double(b.targets.size());
            for (std::size_t step = 0; step < b.steps; ++step)
            {
                const auto guess = choose_tokens(r.logits[step].value(), token_choice::greedy);
                for (std::size_t j = 0; j < b.batch; ++j)
                    right += std::int64_t(guess[j]) == b.target(step, j);
            }
            count += double(b.targets.size());
        }
        const double loss = count ? total / count : 0;
        v.metrics.push_back({"next_char", count ? right / count : 0});
        v.metrics.push_back({"bits_per_char", loss / std::log(2.0)});
        v.metrics.push_back({"loss", loss});
    }
    v.primary = v.metrics.front().value;
    return v;
}

/// The optimiser called `name` over `params`, with learning rate `lr`.
inline std::unique_ptr<optimizer> make_optimizer(const std::string& name,
                                                 const std::vector<param>& params, double lr)
{
    if (name == "sgd")
    {
        sgd_options o;
        o.lr = lr;
        o.momentum = 0.9;
        return std::make_unique<sgd>(params, o);
    }
    if (name == "adam" || name == "adamw")
    {
        adam_options o = name == "adam" ? adam_options{} : adamw_options();
        o.lr = lr;
        if (name == "adam")
            return std::make_unique<adam>(params, o);
        return std::make_unique<adamw>(params, o);
    }
    if (name == "rmsprop")
    {
        rmsprop_options o;
        o.lr = lr;
        return std::make_unique<rmsprop>(params, o);
    }
    if (name == "adagrad")
    {
        adagrad_options o;
        o.lr = lr;
        return std::make_unique<adagrad>(params, o);
    }
    unfold::fail(fmt::format("unknown optimizer '{}'", name));
}

/// The default learning rate of `optimizer` for these models.
inline double default_lr(const std::string& optimizer)
{
    if (optimizer == "sgd")
        return 0.1;
    if (optimizer == "adagrad")
        return 0.05;
    if (optimizer == "rmsprop")
        return 2e-3;
    return 1e-2; // adam, adamw
}

/// The k ≥ 1 of an inverse-sigmoid decay whose ε is 1/2 at step i: k / (k + e^{i/k}) = 1/2,
/// i.e. k log k = i (solved by bisection).
inline double half_way_k(double i)
{
    double lo = 1, hi = std::max(2.0, i);
    for (int it = 0; it < 100; ++it)
    {
        const double mid = (lo + hi) / 2;
        (mid * std::log(mid) < i ? lo : hi) = mid;
    }
    return hi;
}

/// The feeding policy of the options, for a run of `total_steps` steps.
inline std::unique_ptr<feeding_policy> make_feeding(const train_options& o, std::size_t total_steps,
                                                    generator& g)
{
    if (o.feeding == "teacher")
        return std::make_unique<teacher_forcing>();
    if (o.feeding == "free")
        return std::make_unique<free_running>();
    UNFOLD_CHECK(o.feeding == "scheduled", "unknown feeding policy '{}'", o.feeding);
    const double n = double(std::max<std::size_t>(total_steps, 1));
    teacher_schedule s;
    if (o.decay == "linear")
        s = teacher_schedules::linear(o.decay_k > 0 ? o.decay_k : 1,
                                      o.decay_c > 0 ? o.decay_c : (1 - o.decay_floor) / n,
                                      o.decay_floor);
    else if (o.decay == "exponential")
        // by default ε falls to 0.05 at the last step
        s = teacher_schedules::exponential(o.decay_k > 0 ? o.decay_k : std::pow(0.05, 1 / n));
    else if (o.decay == "inverse_sigmoid")
        // by default ε crosses 1/2 at 60% of the run: k / (k + e^{0.6 n / k}) = 1/2
        s = teacher_schedules::inverse_sigmoid(o.decay_k > 0 ? o.decay_k : half_way_k(0.6 * n));
    else
        unfold::fail(fmt::format("unknown teacher-forcing decay '{}'", o.decay));
    const sampling_unit unit =
        o.sampling_unit == "sequence" ? sampling_unit::sequence : sampling_unit::token;
    return std::make_unique<scheduled_sampling>(s, g, unit);
}

/// "1m05s", "42s".
inline std::string duration_str(double seconds)
{
    const long s = std::lround(std::max(0.0, seconds));
    return s >= 60 ? fmt::format("{}m{:02d}s", s / 60, s % 60) : fmt::format("{}s", s);
}

/// The checkpoint path of the options (unfold-<task>.safetensors by default).
inline std::string checkpoint_path(const train_options& o)
{
    return o.checkpoint.empty() ? "unfold-" + o.model.task + ".safetensors" : o.checkpoint;
}

/// What a training run ends with.
struct train_result
{
    std::unique_ptr<model> trained;
    std::vector<validation> epochs; ///< per-epoch validation
    double first_loss = 0;          ///< the mean training loss of the first epoch's first steps
    double last_loss = 0;           ///< the mean training loss of the last epoch
    bool interrupted = false;
    double seconds = 0;
};

/// Trains as `o` says, printing progress to `out`, saving checkpoints; returns the model and its
/// metrics. Throws unfold::error on bad options or unreadable files.
inline train_result train(train_options o, std::FILE* out)
{
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    std::unique_ptr<task> tk;
    std::unique_ptr<text_corpus> text;
    if (o.model.task == "text")
    {
        text = std::make_unique<text_corpus>(text_corpus::load(o.text_file));
        o.model.vocab = text->vocab;
    }
    else
    {
        tk = make_task(o.model.task, o.model.digits);
        o.model.vocab = tk->vocab();
    }
    std::unique_ptr<text_stream> stream;
    if (text)
    {
        stream = std::make_unique<text_stream>(text->train, o.batch, o.tbptt);
        if (o.steps == 0 || o.steps > stream->chunks())
            o.steps = stream->chunks();
    }
    UNFOLD_CHECK(o.epochs >= 1 && o.steps >= 1 && o.batch >= 1,
                 "epochs, steps and batch must be positive");

    generator init(o.seed), data(o.seed + 1), feed_rng(o.seed + 2), eval_rng(o.seed + 3),
        dropout_rng(o.seed + 4);
    train_result res;
    res.trained = make_model(o.model, init);
    model& m = *res.trained;
    const std::size_t total = o.epochs * o.steps;
    const double lr = o.lr > 0 ? o.lr : default_lr(o.optimizer);
    auto opt = make_optimizer(o.optimizer, params_of(m.store()), lr);
    UNFOLD_CHECK(o.lr_schedule == "constant" || o.lr_schedule == "cosine",
                 "unknown learning-rate schedule '{}'", o.lr_schedule);
    const schedule lr_at =
        o.lr_schedule == "cosine" ? cosine_annealing(lr, total, lr / 20) : constant_lr(lr);
    auto policy = make_feeding(o, total, feed_rng);
    const std::string path = checkpoint_path(o);
    const checkpoint_metadata meta = m.config().to_metadata();
    const bool terminal = !o.quiet && ::isatty(::fileno(out));

    if (!o.quiet)
        std::fprintf(out,
                     "unfold train: task %s, %s × %zu layer(s), hidden %zu, %zu parameters; "
                     "feeding %s, %s lr %g (%s), clip %g, dropout %g, recurrent dropout %g, "
                     "batch %zu, %zu epochs × %zu steps\n",
                     o.model.task.c_str(), o.model.cell.c_str(), o.model.layers, o.model.hidden,
                     m.store().element_count(), o.feeding.c_str(), o.optimizer.c_str(), lr,
                     o.lr_schedule.c_str(), o.clip, o.model.dropout, o.model.recurrent_dropout,
                     o.batch, o.epochs, o.steps);

    interrupted = 0;
    struct sigaction action = {}, previous = {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previous);
    struct restore_handler
    {
        struct sigaction* p;
        ~restore_handler() { ::sigaction(SIGINT, p, nullptr); }
    } restore{&previous};

    std::size_t step = 0;
    double tokens = 0;
    std::vector<tensor> carried;
    double first_sum = 0;
    std::size_t first_count = 0;
    for (std::size_t epoch = 1; epoch <= o.epochs && !interrupted; ++epoch)
    {
        double epoch_loss = 0;
        std::size_t epoch_steps = 0;
        carried.clear();
        m.train(dropout_rng);
        for (std::size_t k = 0; k < o.steps && !interrupted; ++k, ++step)
        {
            token_batch b;
            if (stream)
                b = stream->chunk(k);
            else
            {
                std::vector<example> ex;
                for (std::size_t i = 0; i < o.batch; ++i)
                    ex.push_back(tk->draw(data));
                b = make_batch(tk->vocab(), ex);
            }
            tape t;
            const model_run r = m.run(t, b, *policy, carried, step);
            if (stream)
                carried = r.final_state; // Note [Truncated BPTT]: carried detached
            const var loss = run_loss(r, b);
            opt->zero_grad();
            t.backward(loss);
            const double norm = o.clip > 0 ? clip_grad_norm(opt->params(), o.clip) : 0;
            opt->set_lr(lr_at(step));
            if (std::isfinite(norm))
                opt->step();
            const double l = loss.item();
            epoch_loss += l;
            ++epoch_steps;
            if (step < 20)
                first_sum += l, ++first_count;
            for (auto y : b.targets)
                tokens += y != token_batch::ignore_index;

            const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
            const double eta = elapsed / double(step + 1) * double(total - step - 1);
            const std::string line =
                fmt::format("epoch {}/{}  step {}/{}  loss {:.4f}  {:.0f} tok/s  ETA {}", epoch,
                            o.epochs, step + 1, total, epoch_loss / double(epoch_steps),
                            tokens / elapsed, duration_str(eta));
            if (terminal)
                std::fprintf(out, "\r%s\033[K", line.c_str());
            else if (!o.quiet && ((k + 1) % std::max<std::size_t>(1, o.steps / 4) == 0))
                std::fprintf(out, "%s\n", line.c_str());
            std::fflush(out);
            if (o.save_every && (step + 1) % o.save_every == 0)
                save_checkpoint(path, m.store(), meta);
        }
        if (terminal)
            std::fprintf(out, "\n");
        if (interrupted)
            break;
        res.last_loss = epoch_loss / double(std::max<std::size_t>(epoch_steps, 1));
        m.eval();
        res.epochs.push_back(validate(m, tk.get(), text.get(), eval_rng));
        if (!o.quiet)
            std::fprintf(
                out, "epoch %zu/%zu  train loss %.4f  held-out %s  (%s)\n", epoch, o.epochs,
                res.last_loss, res.epochs.back().str().c_str(),
                duration_str(std::chrono::duration<double>(clock::now() - start).count()).c_str());
    }
    res.first_loss = first_count ? first_sum / double(first_count) : 0;
    res.interrupted = interrupted != 0;
    if (!o.checkpoint.empty() || !o.quiet)
    {
        save_checkpoint(path, m.store(), meta);
        if (!o.quiet)
            std::fprintf(out, "%scheckpoint saved to %s\n",
                         res.interrupted ? "\ninterrupted: " : "", path.c_str());
    }
    res.seconds = std::chrono::duration<double>(clock::now() - start).count();
    if (!o.quiet)
        std::fprintf(out, "trained for %s\n", duration_str(res.seconds).c_str());
    return res;
}

/// A model rebuilt from a checkpoint's metadata, its parameters loaded.
inline std::unique_ptr<model> load_model(const std::string& path)
{
    const model_config c = model_config::from_metadata(read_checkpoint_metadata(path), path);
    generator g(0);
    auto m = make_model(c, g);
    load_checkpoint(path, m->store());
    return m;
}

} // namespace unfold::app
