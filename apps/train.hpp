#pragma once
/// The training loop of `unfold train`, the metrics of `unfold eval` and the generation of
/// `unfold sample`, as library functions (the tests call them directly).

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "apps/model.hpp"
#include "apps/task.hpp"
#include "apps/tasks.hpp"
#include <unfold/framework/checkpoint.hpp>
#include <unfold/framework/clip.hpp>
#include <unfold/framework/data_parallel.hpp>
#include <unfold/framework/optimizer.hpp>
#include <unfold/framework/schedule.hpp>
#include <unfold/framework/training_checkpoint.hpp>
#include <unfold/models/batching.hpp>
#include <unfold/models/feeding.hpp>
#include <unfold/models/text.hpp>

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
    std::size_t steps = 0; ///< steps per epoch; 0: 250 for a task (50 for reverse), one text pass
    std::size_t batch = 64;
    std::uint64_t seed = 1;
    std::string checkpoint; ///< empty: unfold-<task>.safetensors (or the --resume file)
    std::size_t checkpoint_every_steps = 0; ///< also save every N steps (0: not by steps)
    double checkpoint_every_seconds = 0;    ///< also save every S seconds (0: not by time)
    std::size_t patience = 0; ///< stop after this many epochs without a better held-out metric
    std::string log;          ///< metrics log (JSON lines); on resume, the run's own by default
    std::string resume;       ///< a training checkpoint whose run to continue
    bool force = false;       ///< replace an existing checkpoint file
    std::size_t samples = 6;  ///< examples generated after training
    bool quiet = false;       ///< no progress lines (tests)
};

/// Calls f(name, field) for every option that defines a run, by its command-line name: the
/// options a training checkpoint records and a resumed run must share. The others (where and
/// how often to save, output) may change between a run and its resumption.
template <class Options, class F>
void for_each_run_option(Options& o, F&& f)
{
    f("task", o.model.task);
    f("text", o.text_file);
    f("digits", o.model.digits);
    f("model", o.model.architecture);
    f("attention", o.model.attention);
    f("cell", o.model.cell);
    f("layers", o.model.layers);
    f("hidden", o.model.hidden);
    f("proj-size", o.model.proj_size);
    f("embed", o.model.embed);
    f("gate", o.model.gate);
    f("state", o.model.state);
    f("dropout", o.model.dropout);
    f("recurrent-dropout", o.model.recurrent_dropout);
    f("feeding", o.feeding);
    f("decay", o.decay);
    f("decay-k", o.decay_k);
    f("decay-c", o.decay_c);
    f("decay-floor", o.decay_floor);
    f("sampling-unit", o.sampling_unit);
    f("optimizer", o.optimizer);
    f("lr", o.lr);
    f("lr-schedule", o.lr_schedule);
    f("clip", o.clip);
    f("tbptt", o.tbptt);
    f("epochs", o.epochs);
    f("steps", o.steps);
    f("batch", o.batch);
    f("seed", o.seed);
    f("patience", o.patience);
}

namespace detail
{
/// FNV-1a over a token sequence: a changed text file is caught on resume.
inline std::uint64_t token_hash(const std::vector<std::size_t>& tokens, std::uint64_t h)
{
    for (std::size_t t : tokens)
        for (int byte = 0; byte < 8; ++byte, t >>= 8)
            h = (h ^ (t & 0xFF)) * 1099511628211ull;
    return h;
}
} // namespace detail

/// The run options as checkpoint metadata: "run.<option>" → its value as text.
inline checkpoint_metadata run_options_metadata(const train_options& o)
{
    checkpoint_metadata m;
    for_each_run_option(o, [&](const char* name, const auto& field) {
        m[std::string("run.") + name] = metadata_text(field);
    });
    return m;
}

/// The run options recorded in a training checkpoint's metadata (the other fields as in `base`);
/// throws unfold::error naming the file and a malformed option. An option the checkpoint does not
/// record keeps its default: it was added after the checkpoint's run, whose behaviour its default
/// keeps (every new run option's default must).
inline train_options run_options_from_metadata(const checkpoint_metadata& m,
                                               const std::string& path, train_options base = {})
{
    for_each_run_option(base, [&](const char* name, auto& field) {
        const std::string key = std::string("run.") + name;
        if (m.count(key))
            field = metadata_value<std::decay_t<decltype(field)>>(m, key, path);
    });
    return base;
}

/// The run options of a training checkpoint, from its metadata `m` (e.g. to resume it with the
/// options it was started with); throws unfold::error naming `path` when it is not a training
/// checkpoint of unfold train.
inline train_options read_run_options(const checkpoint_metadata& m, const std::string& path,
                                      train_options base = {})
{
    UNFOLD_CHECK(is_training_checkpoint(m),
                 "checkpoint {}: it holds a model but no training state (it was not saved by "
                 "unfold train), so it cannot be resumed",
                 path);
    return run_options_from_metadata(m, path, std::move(base));
}
/// The same, reading the metadata of the checkpoint at `path`.
inline train_options read_run_options(const std::string& path, train_options base = {})
{
    return read_run_options(read_checkpoint_metadata(path), path, std::move(base));
}

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

/// Held-out metrics: exact match and teacher-forced loss for addition, copy and reverse (and, with
/// beam > 0, the exact match of beam search of that width); legal-successor accuracy and the
/// fraction of valid sampled strings for reber; next-character accuracy, bits per character and
/// loss for text (score_text, Note [Held-out text]).
inline validation validate(const model& m, const task* tk, const text_corpus* text, generator& g,
                           std::size_t beam = 0)
{
    no_grad_guard no_grad;
    validation v;
    if (tk)
    {
        teacher_forcing teacher;
        tape t;
        const token_batch b = m.batch_of(tk->held_out());
        const double loss = run_loss(m.run(t, b, teacher), b).item();
        if (tk->name() == "reber")
        {
            v.metrics.push_back({"legal_next", reber_legal_accuracy(m, *tk, tk->held_out())});
            v.metrics.push_back({"valid_samples", reber_valid_samples(m, *tk, 200, g)});
        }
        else
        {
            v.metrics.push_back(
                {"exact_match", evaluate_answers(m, *tk, tk->held_out()).accuracy()});
            if (beam > 0)
                v.metrics.push_back(
                    {"beam_exact_match", evaluate_beam_answers(m, *tk, tk->held_out(), beam)});
        }
        v.metrics.push_back({"loss", loss});
    }
    else
    {
        const text_score score = m.score_text(text->valid);
        v.metrics.push_back({"next_char", score.next_char});
        v.metrics.push_back({"bits_per_char", score.bits_per_char});
        v.metrics.push_back({"loss", score.loss});
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
    bool stopped_early = false; ///< by the patience
    double seconds = 0;
    /// The tape's peak bytes in the first training step (Note [Memory policies]).
    std::size_t bptt_peak_bytes = 0;
};

/// The held-out metric that picks the best epoch and drives early stopping: bits per character
/// for text (lower is better), legal-successor accuracy for reber, exact match otherwise.
struct monitored_metric
{
    std::string name;
    bool higher_is_better;
};
inline monitored_metric monitored_for(const std::string& task)
{
    if (task == "text")
        return {"bits_per_char", false};
    if (task == "reber")
        return {"legal_next", true};
    return {"exact_match", true};
}

/// The value of metric `name` in `v`; throws unfold::error when it has none.
inline double metric_value(const validation& v, const std::string& name)
{
    for (const auto& m : v.metrics)
        if (m.name == name)
            return m.value;
    unfold::fail(fmt::format("held-out metrics have no '{}'", name));
}

/// The index of the best of `epochs` by `metric` (the first of equals); epochs must not be empty.
inline std::size_t best_epoch(const std::vector<validation>& epochs, const monitored_metric& metric)
{
    std::size_t best = 0;
    for (std::size_t i = 1; i < epochs.size(); ++i)
    {
        const double a = metric_value(epochs[i], metric.name);
        const double b = metric_value(epochs[best], metric.name);
        if (metric.higher_is_better ? a > b : a < b)
            best = i;
    }
    return best;
}

/// Where the best epoch's model is kept: run.safetensors → run.best.safetensors.
inline std::string best_checkpoint_path(const std::string& path)
{
    const std::string suffix = ".safetensors";
    if (path.size() > suffix.size() &&
        path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
        return path.substr(0, path.size() - suffix.size()) + ".best" + suffix;
    return path + ".best";
}

/// The metrics log of a run: one JSON object per line, a step record
///   {"step": 17, "epoch": 1, "loss": …, "grad_norm": …, "lr": …, "seconds": …}
/// after every step (grad_norm is the global norm before clipping) and an epoch record
///   {"step": 40, "epoch": 1, "train_loss": …, "held_out": {"exact_match": …, …}, "seconds": …}
/// after every held-out evaluation. A resumed run first drops the records its checkpoint does not
/// cover (the steps it redoes, a line cut by a kill), so the log reads as one uninterrupted run.
class metrics_log
{
public:
    /// Starts `path` afresh.
    static metrics_log create(const std::string& path) { return metrics_log(path, {}); }

    /// Continues `path`, keeping the step records up to `step` and the epoch records up to
    /// `epochs`; a missing file starts empty.
    static metrics_log resume(const std::string& path, std::size_t step, std::size_t epochs)
    {
        std::vector<std::string> kept;
        std::ifstream in(path);
        for (std::string line; std::getline(in, line);)
        {
            const auto j = nlohmann::json::parse(line, nullptr, false);
            if (!j.is_object() || !j.contains("step") || !j["step"].is_number_unsigned() ||
                !j.contains("epoch") || !j["epoch"].is_number_unsigned())
                continue; // e.g. the last line of a killed run, cut short
            const bool epoch_record = j.contains("held_out");
            if (epoch_record ? j["epoch"].get<std::size_t>() <= epochs
                             : j["step"].get<std::size_t>() <= step)
                kept.push_back(line);
        }
        return metrics_log(path, kept);
    }

    /// Appends one record and flushes it.
    void write(const nlohmann::json& record)
    {
        const std::string line = record.dump() + "\n";
        UNFOLD_CHECK(std::fwrite(line.data(), 1, line.size(), m_file.get()) == line.size() &&
                         std::fflush(m_file.get()) == 0,
                     "metrics log {}: write failed: {}", m_path, std::strerror(errno));
    }
    const std::string& path() const { return m_path; }

private:
    metrics_log(const std::string& path, const std::vector<std::string>& kept)
        : m_path(path)
    {
        // The kept lines go to a temporary file renamed over the log: a kill now loses nothing.
        const std::string temp = path + ".tmp-" + std::to_string(::getpid());
        {
            std::ofstream t(temp, std::ios::binary | std::ios::trunc);
            UNFOLD_CHECK(t.good(), "metrics log {}: cannot write {}: {}", path, temp,
                         std::strerror(errno));
            for (const auto& line : kept)
                t << line << '\n';
            t.flush();
            UNFOLD_CHECK(t.good(), "metrics log {}: cannot write {}", path, temp);
        }
        UNFOLD_CHECK(std::rename(temp.c_str(), path.c_str()) == 0,
                     "metrics log {}: cannot replace it: {}", path, std::strerror(errno));
        m_file.reset(std::fopen(path.c_str(), "ab"));
        UNFOLD_CHECK(m_file != nullptr, "metrics log {}: cannot open it: {}", path,
                     std::strerror(errno));
    }
    struct closer
    {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };
    std::string m_path;
    std::unique_ptr<std::FILE, closer> m_file;
};

namespace detail
{
/// Rows [first, first + count) of `t` (batch-first), copied.
inline tensor row_range(const tensor& t, std::size_t first, std::size_t count)
{
    shape_type shape(t.shape().begin(), t.shape().end());
    UNFOLD_CHECK(!shape.empty() && first + count <= shape[0],
                 "rows [{}, {}) of a tensor of shape {}", first, first + count,
                 shape_str(t.shape()));
    const std::size_t row = t.size() / shape[0];
    shape[0] = count;
    tensor part(shape);
    std::copy(t.data() + first * row, t.data() + (first + count) * row, part.data());
    return part;
}

/// Rank 0's `v` on every rank (the held-out evaluation runs once, Note [Data parallelism]).
inline validation shared_validation(process_group& group, const validation& v)
{
    nlohmann::json j = nlohmann::json::array();
    for (const auto& x : v.metrics)
        j.push_back({x.name, x.value});
    const auto texts = group.gather_text(group.rank() == 0 ? j.dump() : std::string());
    validation out;
    for (const auto& x : nlohmann::json::parse(texts[0]))
        out.metrics.push_back({x[0].get<std::string>(), x[1].get<double>()});
    out.primary = out.metrics.front().value;
    return out;
}
} // namespace detail

/// Trains as `o` says, printing progress to `out`, saving training checkpoints (Note [Training
/// checkpoints]); returns the model and its metrics. With `o.resume` it continues the run saved
/// there exactly: the same parameters, optimiser state, generators, data position and carried
/// state, so the result is bit-identical to a run that was never stopped. Throws unfold::error on
/// bad options, unreadable files, a resumed run that differs from the checkpoint's, or an
/// existing checkpoint file that would be replaced without `o.force`.
///
/// With a `group` of N processes each running train() with the same options, the run is
/// data-parallel (Note [Data parallelism]): every global batch of o.batch sequences is split into
/// N parts, one per rank, the gradients are averaged, and rank 0 alone prints, evaluates and
/// writes the checkpoints and the log.
inline train_result train(train_options o, std::FILE* out, process_group* group = nullptr)
{
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const train_options given = o; // the run as defined, before defaults are filled in

    const checkpoint_metadata resumed =
        o.resume.empty() ? checkpoint_metadata{} : read_checkpoint_metadata(o.resume);
    if (!o.resume.empty())
    {
        const checkpoint_metadata here = run_options_metadata(o);
        const checkpoint_metadata there = run_options_metadata(read_run_options(resumed, o.resume));
        std::vector<std::string> differ;
        for (const auto& [key, value] : here)
            if (there.at(key) != value)
                differ.push_back(fmt::format("--{} {} (the checkpoint's run has {})", key.substr(4),
                                             value.empty() ? "''" : value,
                                             there.at(key).empty() ? "''" : there.at(key)));
        UNFOLD_CHECK(differ.empty(),
                     "--resume {}: this run differs from the checkpoint's in {}; a resumed run "
                     "continues the same run (leave those options out, or start a new run with "
                     "another --checkpoint)",
                     o.resume, fmt::join(differ, ", "));
        if (o.checkpoint.empty())
            o.checkpoint = o.resume;
    }
    const std::string path = checkpoint_path(o);
    const bool saving = !o.checkpoint.empty() || !o.quiet;
    const std::string best_path = best_checkpoint_path(path);
    const int ranks = group ? group->size() : 1, rank = group ? group->rank() : 0;
    const bool leader = rank == 0; // prints, evaluates and writes the files
    if (!leader)
    {
        o.quiet = true;
        o.log.clear();
    }
    check_model_config(o.model); // before looking at any file
    const bptt_memory memory = bptt_memory::parse(o.model.bptt_memory);
    UNFOLD_CHECK(memory.how != bptt_memory::kind::budget ||
                     (o.feeding == "teacher" && o.model.architecture == "decoder"),
                 "--bptt-memory {}: a budget is planned for a sequence the model reads whole "
                 "(a decoder under --feeding teacher); --feeding {}{} decodes step by step: use "
                 "every:K or gemm",
                 o.model.bptt_memory, o.feeding,
                 o.model.architecture == "seq2seq" ? " with --model seq2seq" : "");
    if (saving && leader && !o.force && path != o.resume)
        for (const std::string& file : {path, best_path})
            UNFOLD_CHECK(!std::filesystem::exists(file),
                         "checkpoint {} already exists: pass --resume {} to continue its run, or "
                         "--force to replace it",
                         file, path);

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
        const std::size_t chunks = stream->chunks();
        if (!o.quiet)
        {
            const text_scoring scoring;
            std::fprintf(out,
                         "text %s: %zu characters; training on the first 90%% (%zu), held out "
                         "the last 10%% (%zu), scored after every epoch: %zu characters in %zu "
                         "streams of chunks of %zu, state carried\n",
                         o.text_file.c_str(), text->train.size() + text->valid.size(),
                         text->train.size(), text->valid.size(), scoring.scored(text->valid.size()),
                         scoring.streams(text->valid.size()), scoring.chunk);
            if (o.steps > 0 && o.steps < chunks)
                std::fprintf(out,
                             "note: --steps %zu trains on the first %zu of the %zu chunks of "
                             "every stream each epoch: %.0f%% of the training text is never "
                             "used (--steps 0: one pass)\n",
                             o.steps, o.steps, chunks,
                             100.0 * double(chunks - o.steps) / double(chunks));
            else if (o.steps > chunks)
                std::fprintf(out,
                             "note: --steps %zu is more than one pass; an epoch is one "
                             "pass, %zu steps\n",
                             o.steps, chunks);
        }
        if (o.steps == 0 || o.steps > chunks)
            o.steps = chunks;
    }
    else if (o.steps == 0) // an encoder–decoder's step is longer, and reversal is learnt in fewer
        o.steps = o.model.task == "reverse" ? 50 : 250;
    UNFOLD_CHECK(o.epochs >= 1 && o.steps >= 1 && o.batch >= 1,
                 "epochs, steps and batch must be positive");
    UNFOLD_CHECK(o.batch % std::size_t(ranks) == 0,
                 "--batch {} does not split over {} data-parallel ranks: the batch is the global "
                 "one, each rank trains on batch / ranks of its sequences",
                 o.batch, ranks);
    const std::size_t share = o.batch / std::size_t(ranks); // sequences per rank

    // Everything the model's state depends on is drawn alike on every rank; feeding decisions
    // and dropout masks differ per rank (each rank's own sequences), rank 0's as without ranks.
    const auto own = [&](std::uint64_t seed) {
        return seed + 0x9E3779B97F4A7C15ull * std::uint64_t(rank);
    };
    generator init(o.seed), data(o.seed + 1), feed_rng(own(o.seed + 2)), eval_rng(o.seed + 3),
        dropout_rng(own(o.seed + 4));
    struct named_generator
    {
        const char* name;
        generator* g;
        bool per_rank;
    };
    const named_generator generators[] = {{"data", &data, false},
                                          {"feeding", &feed_rng, true},
                                          {"eval", &eval_rng, false},
                                          {"dropout", &dropout_rng, true}};
    // A per-rank generator's state in a checkpoint: rank 0's under the name, rank r's after '@'.
    const auto state_key = [](const char* name, int r) {
        return std::string("state.generator.") + name + (r ? "@" + std::to_string(r) : "");
    };
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
    // mpirun hands its ranks a terminal even when its own output goes to a file: lines, then.
    const bool terminal = !o.quiet && !group && ::isatty(::fileno(out));
    const std::uint64_t data_hash =
        text ? detail::token_hash(text->valid,
                                  detail::token_hash(text->train, 14695981039346656037ull))
             : 0;

    // Where the run is: everything besides the parameters and the optimiser that the next step
    // depends on, and the counters its progress lines print.
    std::size_t step = 0;      // steps done
    std::size_t validated = 0; // epochs whose held-out evaluation is done
    std::size_t epoch_steps = 0, first_count = 0;
    double epoch_loss = 0, first_sum = 0, tokens = 0, seconds_before = 0;
    std::vector<tensor> carried; // Note [Truncated BPTT]
    const auto elapsed = [&] {
        return seconds_before + std::chrono::duration<double>(clock::now() - start).count();
    };

    std::optional<metrics_log> log;
    const monitored_metric monitor = monitored_for(o.model.task);
    auto save = [&] {
        training_state st;
        st.metadata = m.config().to_metadata();
        for (const auto& [key, value] : run_options_metadata(given))
            st.metadata[key] = value;
        st.metadata["state.step"] = metadata_text(step);
        st.metadata["state.validated"] = metadata_text(validated);
        st.metadata["state.epoch_steps"] = metadata_text(epoch_steps);
        st.metadata["state.first_count"] = metadata_text(first_count);
        st.metadata["state.epoch_loss"] = metadata_text(epoch_loss);
        st.metadata["state.first_sum"] = metadata_text(first_sum);
        st.metadata["state.last_loss"] = metadata_text(res.last_loss);
        st.metadata["state.tokens"] = metadata_text(tokens);
        st.metadata["state.seconds"] = metadata_text(elapsed());
        st.metadata["state.data_hash"] = metadata_text(data_hash);
        st.metadata["state.log"] = log ? log->path() : "";
        st.metadata["state.ranks"] = metadata_text(std::size_t(ranks));
        nlohmann::json epochs = nlohmann::json::array();
        for (const auto& v : res.epochs)
        {
            nlohmann::json metrics = nlohmann::json::array();
            for (const auto& x : v.metrics)
                metrics.push_back({x.name, x.value});
            epochs.push_back(metrics);
        }
        st.metadata["state.validations"] = epochs.dump();
        for (const auto& [name, g, per_rank] : generators)
        {
            if (!per_rank || !group)
                st.metadata[state_key(name, 0)] = g->state();
            else
            {
                const auto states = group->gather_text(g->state());
                for (int r = 0; r < ranks; ++r)
                    st.metadata[state_key(name, r)] = states[std::size_t(r)];
            }
        }
        for (std::size_t i = 0; i < carried.size(); ++i) // every rank's rows, in rank order
            st.tensors["carried/" + std::to_string(i)] =
                group ? group->gather_rows(carried[i]) : carried[i];
        if (leader)
            save_training_checkpoint(path, m.store(), *opt, st);
    };

    if (!o.resume.empty())
    {
        // Before the parameters: a changed text may also change the vocabulary's size.
        const auto hash = resumed.find("state.data_hash");
        UNFOLD_CHECK(hash == resumed.end() || hash->second == std::to_string(data_hash),
                     "--resume {}: the text of --text {} has changed since the checkpoint was "
                     "saved",
                     o.resume, o.text_file);
        training_state st = load_training_checkpoint(o.resume, m.store(), *opt);
        auto read = [&](const std::string& key, auto& field) {
            field = metadata_value<std::decay_t<decltype(field)>>(st.metadata, key, o.resume);
        };
        read("state.step", step);
        read("state.validated", validated);
        read("state.epoch_steps", epoch_steps);
        read("state.first_count", first_count);
        read("state.epoch_loss", epoch_loss);
        read("state.first_sum", first_sum);
        read("state.last_loss", res.last_loss);
        read("state.tokens", tokens);
        read("state.seconds", seconds_before);
        if (o.log.empty())
            read("state.log", o.log);
        // Evaluated up to the step's epoch, or one short right after an epoch's last step.
        const bool evaluation_fits =
            validated == step / o.steps ||
            (step > 0 && step % o.steps == 0 && validated + 1 == step / o.steps);
        UNFOLD_CHECK(step <= total && evaluation_fits,
                     "checkpoint {}: step {} with {} epochs evaluated does not fit a run of {} "
                     "epochs of {} steps",
                     o.resume, step, validated, o.epochs, o.steps);
        if (group)
        {
            const auto steps = group->gather_text(std::to_string(step));
            for (int r = 1; r < ranks; ++r)
                UNFOLD_CHECK(steps[std::size_t(r)] == steps[0],
                             "--resume {}: rank {} read a checkpoint at step {}, rank 0 one at "
                             "step {}: every rank must resume from the same file",
                             o.resume, r, steps[std::size_t(r)], steps[0]);
        }
        std::size_t saved_ranks = 1;
        if (st.metadata.count("state.ranks"))
            read("state.ranks", saved_ranks);
        UNFOLD_CHECK(saved_ranks == std::size_t(ranks),
                     "--resume {}: the run was saved by {} data-parallel rank(s) and continues on "
                     "{}; resume it on {} (each rank's dropout and feeding draws are its own)",
                     o.resume, saved_ranks, ranks, saved_ranks);
        for (const auto& [name, g, per_rank] : generators)
            try
            {
                g->set_state(metadata_value<std::string>(
                    st.metadata, state_key(name, per_rank ? rank : 0), o.resume));
            }
            catch (const unfold::error& e)
            {
                fail(fmt::format("checkpoint {}: {}", o.resume, e.what()));
            }
        for (std::size_t i = 0; st.tensors.count("carried/" + std::to_string(i)); ++i)
        {
            const tensor& all = st.tensors.at("carried/" + std::to_string(i));
            carried.push_back(ranks > 1 ? detail::row_range(all, std::size_t(rank) * share, share)
                                        : all);
        }
        UNFOLD_CHECK(carried.size() == st.tensors.size(),
                     "checkpoint {}: unexpected run tensors besides the carried state", o.resume);
        const auto epochs = nlohmann::json::parse(
            metadata_value<std::string>(st.metadata, "state.validations", o.resume), nullptr,
            false);
        UNFOLD_CHECK(epochs.is_array() && epochs.size() == validated,
                     "checkpoint {}: metadata 'state.validations' is malformed", o.resume);
        for (const auto& metrics : epochs)
        {
            validation v;
            for (const auto& x : metrics)
            {
                UNFOLD_CHECK(x.is_array() && x.size() == 2 && x[0].is_string() && x[1].is_number(),
                             "checkpoint {}: metadata 'state.validations' is malformed", o.resume);
                v.metrics.push_back({x[0].get<std::string>(), x[1].get<double>()});
            }
            UNFOLD_CHECK(!v.metrics.empty(),
                         "checkpoint {}: metadata 'state.validations' is malformed", o.resume);
            v.primary = v.metrics.front().value;
            res.epochs.push_back(std::move(v));
        }
    }

    std::unique_ptr<gradient_averager> averager;
    if (group)
    {
        // One clear error on every rank if they built different models; then rank 0's values.
        check_same_parameters(*group, m.store());
        broadcast_parameters(*group, m.store());
        averager = std::make_unique<gradient_averager>(*group, params_of(m.store()));
    }

    if (!o.log.empty())
        log = o.resume.empty() ? metrics_log::create(o.log)
                               : metrics_log::resume(o.log, step, validated);

    if (!o.quiet)
    {
        const std::string projection =
            o.model.proj_size ? fmt::format(" projected to {}", o.model.proj_size) : "";
        const std::string shape =
            o.model.architecture == "seq2seq"
                ? fmt::format("encoder–decoder ({} attention), ", o.model.attention)
                : "";
        std::fprintf(out,
                     "unfold train: task %s, %s%s × %zu layer(s), hidden %zu%s, %zu parameters; "
                     "feeding %s, %s lr %g (%s), clip %g, dropout %g, recurrent dropout %g, "
                     "batch %zu, %zu epochs × %zu steps\n",
                     o.model.task.c_str(), shape.c_str(), o.model.cell.c_str(), o.model.layers,
                     o.model.hidden, projection.c_str(), m.store().element_count(),
                     o.feeding.c_str(), o.optimizer.c_str(), lr, o.lr_schedule.c_str(), o.clip,
                     o.model.dropout, o.model.recurrent_dropout, o.batch, o.epochs, o.steps);
        if (tk)
            std::fprintf(out,
                         "held out: %zu fixed %s examples that training never draws, scored "
                         "after every epoch (%s picks the best epoch)\n",
                         tk->held_out().size(), tk->name().c_str(), monitor.name.c_str());
        if (group)
            std::fprintf(out,
                         "data-parallel: %d ranks, each trains on %zu of every batch's %zu "
                         "sequences; gradients averaged in %zu buckets\n",
                         ranks, share, o.batch, averager->buckets());
        if (!o.resume.empty())
            std::fprintf(out, "resuming %s after step %zu of %zu (epoch %zu)\n", o.resume.c_str(),
                         step, total, std::min(o.epochs, step / o.steps + 1));
    }

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

    auto last_save = clock::now();
    bool unsaved = o.resume.empty(); // the state differs from the file's
    const auto epochs_since_best = [&] {
        return res.epochs.size() - 1 - best_epoch(res.epochs, monitor);
    };
    // With ranks, every rank stops at the same step: when any rank was interrupted by then.
    bool stopping = false;
    while (!(group ? stopping : interrupted != 0))
    {
        if (o.patience && step < total && !res.epochs.empty() && epochs_since_best() >= o.patience)
        {
            res.stopped_early = true;
            break;
        }
        if (step > 0 && step % o.steps == 0 && validated < step / o.steps)
        {
            // The end of an epoch: its held-out evaluation, then the next epoch starts afresh.
            if (terminal)
                std::fprintf(out, "\n");
            res.last_loss = epoch_loss / double(std::max<std::size_t>(epoch_steps, 1));
            m.eval();
            if (group)
                res.epochs.push_back(detail::shared_validation(
                    *group, leader ? validate(m, tk.get(), text.get(), eval_rng) : validation{}));
            else
                res.epochs.push_back(validate(m, tk.get(), text.get(), eval_rng));
            ++validated;
            const bool best = best_epoch(res.epochs, monitor) == res.epochs.size() - 1;
            if (!o.quiet)
                std::fprintf(out, "epoch %zu/%zu  train loss %.4f  held-out %s  (%s)%s\n",
                             validated, o.epochs, res.last_loss, res.epochs.back().str().c_str(),
                             duration_str(elapsed()).c_str(), best && saving ? "  best" : "");
            if (log)
            {
                nlohmann::json held_out = nlohmann::json::object();
                for (const auto& x : res.epochs.back().metrics)
                    held_out[x.name] = x.value;
                log->write({{"step", step},
                            {"epoch", validated},
                            {"train_loss", res.last_loss},
                            {"held_out", held_out},
                            {"seconds", elapsed()}});
            }
            if (best && saving && leader)
            {
                checkpoint_metadata meta = m.config().to_metadata();
                meta["unfold.best_epoch"] = std::to_string(validated);
                save_checkpoint(best_path, m.store(), meta);
            }
            epoch_loss = 0;
            epoch_steps = 0;
            carried.clear();
            if (saving)
            {
                save();
                last_save = clock::now();
                unsaved = false;
            }
            continue;
        }
        if (step == total)
            break;
        const std::size_t epoch = step / o.steps + 1, k = step % o.steps;
        m.train(dropout_rng);
        token_batch b;
        if (stream)
            b = stream->chunk(k);
        else
        {
            std::vector<example> ex;
            for (std::size_t i = 0; i < o.batch; ++i)
                ex.push_back(tk->draw(data));
            b = m.batch_of(ex);
        }
        const std::size_t counted = b.counted(); // in the whole batch
        if (ranks > 1)
            b = b.rows(std::size_t(rank) * share, share);
        tape t;
        if (averager)
            averager->watch(t);
        const model_run r = m.run(t, b, *policy, carried, step);
        if (stream)
            carried = r.final_state; // Note [Truncated BPTT]: carried detached
        const var loss = run_loss(r, b);
        // A rank's mean loss weighted by its share of the counted targets, times the ranks the
        // gradients are averaged over: the average is the whole batch's gradient.
        const double weight = ranks > 1 ? double(b.counted()) * double(ranks) /
                                              double(std::max<std::size_t>(counted, 1))
                                        : 1.0;
        opt->zero_grad();
        t.backward(ranks > 1 ? loss * real(weight) : loss);
        if (averager)
            averager->finish();
        const double norm =
            o.clip > 0 ? clip_grad_norm(opt->params(), o.clip) : grad_norm(opt->params());
        opt->set_lr(lr_at(step));
        if (std::isfinite(norm))
            opt->step();
        double l = loss.item();
        const bool save_time = o.checkpoint_every_seconds > 0 &&
                               std::chrono::duration<double>(clock::now() - last_save).count() >=
                                   o.checkpoint_every_seconds;
        bool by_time = save_time;
        if (group)
        {
            // The whole batch's loss, rank 0's clock and whether any rank was interrupted.
            double shared[3] = {b.counted() ? l * weight / double(ranks) : 0.0,
                                leader && save_time ? 1.0 : 0.0, interrupted ? 1.0 : 0.0};
            group->sum_doubles(shared, 3);
            l = shared[0];
            by_time = shared[1] > 0;
            stopping = shared[2] > 0;
        }
        if (res.bptt_peak_bytes == 0)
        {
            res.bptt_peak_bytes = t.peak_bytes();
            if (!o.quiet)
                std::fprintf(out, "BPTT memory %s: the tape's peak in the first step was %.1f MB\n",
                             o.model.bptt_memory.c_str(), double(res.bptt_peak_bytes) / 1e6);
        }
        epoch_loss += l;
        ++epoch_steps;
        if (step < 20)
            first_sum += l, ++first_count;
        tokens += double(counted);
        ++step;
        unsaved = true;
        if (log)
            log->write({{"step", step},
                        {"epoch", epoch},
                        {"loss", l},
                        {"grad_norm", norm},
                        {"lr", lr_at(step - 1)},
                        {"seconds", elapsed()}});

        const double seconds = elapsed();
        const double eta = seconds / double(step) * double(total - step);
        const std::string line = fmt::format(
            "epoch {}/{}  step {}/{}  loss {:.4f}  {:.0f} tok/s  ETA {}", epoch, o.epochs, step,
            total, epoch_loss / double(epoch_steps), tokens / seconds, duration_str(eta));
        if (terminal)
            std::fprintf(out, "\r%s\033[K", line.c_str());
        else if (!o.quiet && ((k + 1) % std::max<std::size_t>(1, o.steps / 4) == 0))
            std::fprintf(out, "%s\n", line.c_str());
        std::fflush(out);
        const bool by_steps = o.checkpoint_every_steps && step % o.checkpoint_every_steps == 0;
        if (saving && (by_steps || by_time))
        {
            save();
            last_save = clock::now();
            unsaved = false;
        }
    }
    res.interrupted = group ? stopping : interrupted != 0;
    if (terminal && res.interrupted)
        std::fprintf(out, "\n");
    res.first_loss = first_count ? first_sum / double(first_count) : 0;
    if (res.stopped_early && !o.quiet)
        std::fprintf(out,
                     "early stop: no better held-out %s for %zu epochs (the best was epoch %zu)\n",
                     monitor.name.c_str(), o.patience, best_epoch(res.epochs, monitor) + 1);
    if (saving)
    {
        if (unsaved)
            save();
        if (!o.quiet && !res.epochs.empty())
            std::fprintf(out, "best model (epoch %zu, held-out %s %.4f) saved to %s\n",
                         best_epoch(res.epochs, monitor) + 1, monitor.name.c_str(),
                         metric_value(res.epochs[best_epoch(res.epochs, monitor)], monitor.name),
                         best_path.c_str());
        if (!o.quiet)
            std::fprintf(out, "%scheckpoint saved to %s\n", res.interrupted ? "interrupted: " : "",
                         path.c_str());
    }
    res.seconds = elapsed();
    if (!o.quiet)
        std::fprintf(out, "trained for %s\n", duration_str(res.seconds).c_str());
    if (group)
        group->barrier(); // every rank returns once rank 0 has written the checkpoint
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
