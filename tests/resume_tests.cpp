// Resumable training: generator and optimiser state, training checkpoints (all or nothing, a
// failed save keeps the previous file), and `unfold train` killed with SIGKILL and resumed,
// bit-identical to the run that was never stopped.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "apps/train.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"
#include <unfold/framework/optimizer.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/training_checkpoint.hpp>

using namespace unfold;
using namespace unfold::app;
using unfold::testing::built_program;
using unfold::testing::cli_result;
using unfold::testing::expect_error;
using unfold::testing::read_and_close;
using unfold::testing::run;

namespace fs = std::filesystem;

namespace
{
/// A directory of its own for each test, removed at the end.
struct scratch
{
    fs::path dir;
    scratch()
        : dir(fs::temp_directory_path() /
              ("unfold-resume-" + std::to_string(::getpid()) + "-" +
               boost::unit_test::framework::current_test_case().p_name.get()))
    {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~scratch() { fs::remove_all(dir); }
    std::string file(const std::string& name) const { return (dir / name).string(); }
};

std::string read_bytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

bool bit_identical(const tensor& a, const tensor& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(real)) == 0;
}

/// A small model's parameters with fixed values, and a gradient that depends on them (so that
/// every optimiser's state matters to the next step).
struct toy
{
    param_store store;
    toy()
    {
        generator g(3);
        store.add("w", g.normal({3, 4}));
        store.add("b", g.normal({4}));
    }
    void set_gradients(std::size_t step)
    {
        for (auto p : store)
            for (std::size_t i = 0; i < p.size(); ++i)
                p.grad().data()[i] =
                    real(std::sin(double(p.value().data()[i]) * 3 + double(step) + double(i)));
    }
};

using optimizer_factory = std::function<std::unique_ptr<optimizer>(const param_store&)>;

std::vector<std::pair<std::string, optimizer_factory>> every_optimizer()
{
    return {
        {"sgd with momentum",
         [](const param_store& s) {
             sgd_options o;
             o.momentum = 0.9;
             o.weight_decay = 0.01;
             return std::make_unique<sgd>(params_of(s), o);
         }},
        {"sgd nesterov",
         [](const param_store& s) {
             sgd_options o;
             o.momentum = 0.8;
             o.nesterov = true;
             return std::make_unique<sgd>(params_of(s), o);
         }},
        {"adam", [](const param_store& s) { return std::make_unique<adam>(params_of(s)); }},
        {"adamw", [](const param_store& s) { return std::make_unique<adamw>(params_of(s)); }},
        {"rmsprop centered with momentum",
         [](const param_store& s) {
             rmsprop_options o;
             o.centered = true;
             o.momentum = 0.5;
             return std::make_unique<rmsprop>(params_of(s), o);
         }},
        {"adagrad",
         [](const param_store& s) {
             adagrad_options o;
             o.lr_decay = 0.1;
             return std::make_unique<adagrad>(params_of(s), o);
         }},
    };
}

void steps(toy& t, optimizer& opt, std::size_t from, std::size_t count)
{
    for (std::size_t k = from; k < from + count; ++k)
    {
        t.set_gradients(k);
        opt.set_lr(0.05 / double(k + 1));
        opt.step();
    }
}
} // namespace

BOOST_AUTO_TEST_SUITE(resume)

BOOST_AUTO_TEST_CASE(a_generator_restored_from_its_state_repeats_its_draws)
{
    generator g(42);
    g.normal({3}); // an odd count of normals: a Box–Muller spare is pending
    const std::string saved = g.state();
    const tensor u = g.uniform({50}), n = g.normal({51}), k = g.bernoulli({20}, real(0.3));

    generator h(7);
    h.set_state(saved);
    BOOST_TEST(h.state() == saved);
    BOOST_TEST(bit_identical(h.uniform({50}), u));
    BOOST_TEST(bit_identical(h.normal({51}), n));
    BOOST_TEST(bit_identical(h.bernoulli({20}, real(0.3)), k));

    // A state that is not one changes nothing.
    generator before(9), target(9);
    for (const std::string& bad :
         {std::string(), std::string("mt19937_64 1 2 3"), std::string("minstd 1 0 0"), saved + " 5",
          saved.substr(0, saved.size() / 2)})
    {
        expect_error([&] { target.set_state(bad); }, {"generator", "is not a saved generator"});
        BOOST_TEST(target.state() == before.state());
    }
}

BOOST_AUTO_TEST_CASE(every_optimiser_restored_from_its_state_takes_the_same_steps)
{
    for (const auto& [name, make] : every_optimizer())
    {
        BOOST_TEST_CONTEXT(name)
        {
            toy a;
            auto opt_a = make(a.store);
            steps(a, *opt_a, 0, 3);
            const optimizer_state saved = opt_a->state();
            BOOST_TEST(saved.steps == 3u);
            BOOST_TEST(!saved.tensors.empty());

            toy b; // the parameters as they were after three steps, a fresh optimiser
            for (std::size_t i = 0; i < b.store.size(); ++i)
                b.store.get(a.store[i].name()).assign(a.store[i].value());
            auto opt_b = make(b.store);
            opt_b->load_state(saved);
            BOOST_TEST(opt_b->steps() == 3u);
            BOOST_TEST(opt_b->lr() == opt_a->lr());

            steps(a, *opt_a, 3, 4);
            steps(b, *opt_b, 3, 4);
            for (std::size_t i = 0; i < a.store.size(); ++i)
                BOOST_TEST(bit_identical(a.store[i].value(), b.store[i].value()),
                           a.store[i].name());
            for (const auto& [key, value] : opt_a->state().tensors)
                BOOST_TEST(bit_identical(value, opt_b->state().tensors.at(key)), key);

            // A fresh optimiser that did not get the state takes other steps: the state matters.
            toy c;
            for (std::size_t i = 0; i < c.store.size(); ++i)
                c.store.get(b.store[i].name()).assign(b.store[i].value());
            auto opt_c = make(c.store);
            toy d;
            for (std::size_t i = 0; i < d.store.size(); ++i)
                d.store.get(b.store[i].name()).assign(b.store[i].value());
            auto opt_d = make(d.store);
            opt_d->load_state(opt_b->state());
            steps(c, *opt_c, 7, 1);
            steps(d, *opt_d, 7, 1);
            BOOST_TEST(!bit_identical(c.store[0].value(), d.store[0].value()));
        }
    }
}

BOOST_AUTO_TEST_CASE(an_optimiser_state_that_does_not_fit_changes_nothing)
{
    toy t;
    adam opt(params_of(t.store));
    steps(t, opt, 0, 2);
    const optimizer_state good = opt.state();

    auto expect_refused = [&](optimizer_state s, std::initializer_list<std::string> parts) {
        expect_error([&] { opt.load_state(std::move(s)); }, parts);
        BOOST_TEST(opt.steps() == 2u);
        for (const auto& [key, value] : opt.state().tensors)
            BOOST_TEST(bit_identical(value, good.tensors.at(key)), key);
    };
    optimizer_state zeroed = good;
    for (auto& [key, value] : zeroed.tensors)
        value.fill(real(0));
    zeroed.steps = 99;

    optimizer_state other = zeroed;
    other.name = "sgd";
    expect_refused(other, {"adam", "'sgd' optimiser's"});
    optimizer_state missing = zeroed;
    missing.tensors.erase("exp_avg_sq/b");
    expect_refused(missing, {"adam", "no 'exp_avg_sq/b'"});
    optimizer_state misshapen = zeroed;
    misshapen.tensors.at("exp_avg/w") = zeros({4, 3});
    expect_refused(misshapen, {"'exp_avg/w'", "(4, 3)", "(3, 4)"});
    optimizer_state extra = zeroed;
    extra.tensors.emplace("momentum_buffer/w", zeros({3, 4}));
    expect_refused(extra, {"'momentum_buffer/w'", "lacks"});

    opt.load_state(zeroed); // the control: a fitting state is taken
    BOOST_TEST(opt.steps() == 99u);
}

BOOST_FIXTURE_TEST_CASE(a_training_checkpoint_holds_model_optimiser_and_run, scratch)
{
    const std::string path = file("run.safetensors");
    toy t;
    sgd_options so;
    so.momentum = 0.9;
    sgd opt(params_of(t.store), so);
    steps(t, opt, 0, 3);
    training_state run;
    run.metadata["epoch"] = "2";
    run.tensors["carried/0"] = full({2, 4}, real(0.25));
    save_training_checkpoint(path, t.store, opt, run);

    // A model checkpoint still: load_checkpoint takes the parameters and skips the rest.
    toy model_only;
    load_checkpoint(path, model_only.store);
    BOOST_TEST(bit_identical(model_only.store.get("w").value(), t.store.get("w").value()));

    toy u;
    sgd opt_u(params_of(u.store), so);
    const training_state back = load_training_checkpoint(path, u.store, opt_u);
    BOOST_TEST(back.metadata.at("epoch") == "2");
    BOOST_TEST(bit_identical(back.tensors.at("carried/0"), run.tensors.at("carried/0")));
    BOOST_TEST(opt_u.steps() == 3u);
    BOOST_TEST(bit_identical(u.store.get("b").value(), t.store.get("b").value()));
    BOOST_TEST(bit_identical(opt_u.state().tensors.at("momentum_buffer/w"),
                             opt.state().tensors.at("momentum_buffer/w")));

    // Another optimiser, or other parameters: an error naming the file, and nothing changes.
    toy fresh;
    const tensor w0 = fresh.store.get("w").value();
    adam other(params_of(fresh.store));
    expect_error([&] { load_training_checkpoint(path, fresh.store, other); },
                 {path, "adam", "'sgd' optimiser's"});
    BOOST_TEST(bit_identical(fresh.store.get("w").value(), w0));
    BOOST_TEST(other.steps() == 0u);
    param_store bigger;
    bigger.add("w", zeros({3, 5}));
    bigger.add("b", zeros({4}));
    sgd opt_bigger(params_of(bigger), so);
    expect_error([&] { load_training_checkpoint(path, bigger, opt_bigger); },
                 {path, "'w'", "(3, 4)", "(3, 5)"});
    BOOST_TEST(opt_bigger.steps() == 0u);

    // A model-only checkpoint has nothing to resume.
    const std::string plain = file("plain.safetensors");
    save_checkpoint(plain, t.store);
    expect_error([&] { load_training_checkpoint(plain, u.store, opt_u); },
                 {plain, "no training state"});
    // The names the checkpoint writes itself are not the run's to set.
    training_state reserved;
    reserved.metadata["unfold.optimizer.steps"] = "7";
    expect_error([&] { save_training_checkpoint(path, t.store, opt, reserved); },
                 {"'unfold.optimizer.steps'", "reserved"});
    // So are the names of the training state's tensors.
    param_store odd;
    odd.add("run/w", zeros({2}));
    sgd opt_odd(params_of(odd));
    expect_error([&] { save_training_checkpoint(file("odd.safetensors"), odd, opt_odd); },
                 {"'run/w'", "reserved"});
    BOOST_TEST(!fs::exists(file("odd.safetensors")));
    BOOST_TEST(load_training_checkpoint(path, u.store, opt_u).metadata.at("epoch") == "2");
}

BOOST_FIXTURE_TEST_CASE(a_save_that_fails_keeps_the_previous_training_checkpoint, scratch)
{
    const std::string path = file("run.safetensors");
    toy t;
    adam opt(params_of(t.store));
    steps(t, opt, 0, 2);
    save_training_checkpoint(path, t.store, opt, {{{"epoch", "1"}}, {}});
    const std::string previous = read_bytes(path);
    steps(t, opt, 2, 2);
    for (std::size_t fail_after : {std::size_t(0), std::size_t(100), previous.size() - 1})
    {
        std::size_t written = 0;
        // Writes the first `fail_after` bytes, then fails as a full disk would.
        const unfold::detail::checkpoint_writer failing = [&](int fd, const char* data,
                                                              std::size_t size) {
            const std::size_t now = std::min(size, fail_after - std::min(fail_after, written));
            unfold::detail::write_fully(fd, data, now);
            written += now;
            if (now < size)
                throw std::runtime_error("No space left on device (simulated)");
        };
        expect_error(
            [&] {
                unfold::detail::save_training_checkpoint_with(path, t.store, opt,
                                                              {{{"epoch", "2"}}, {}}, failing);
            },
            {path, "saving failed", "previous file is unchanged", "simulated"});
        BOOST_TEST(read_bytes(path) == previous);
    }
    toy u;
    adam opt_u(params_of(u.store));
    BOOST_TEST(load_training_checkpoint(path, u.store, opt_u).metadata.at("epoch") == "1");
    BOOST_TEST(opt_u.steps() == 2u);

    // A truncated file: an error naming it, and the model and optimiser are unchanged.
    const std::string cut = file("cut.safetensors");
    std::ofstream(cut, std::ios::binary) << previous.substr(0, previous.size() - 9);
    toy v;
    const tensor w0 = v.store.get("w").value();
    adam opt_v(params_of(v.store));
    expect_error([&] { load_training_checkpoint(cut, v.store, opt_v); }, {cut});
    BOOST_TEST(bit_identical(v.store.get("w").value(), w0));
    BOOST_TEST(opt_v.steps() == 0u);
}

namespace
{
/// Every tensor of two checkpoint files is bit-identical, and so is the run's position.
void check_same_run(const std::string& a, const std::string& b)
{
    const checkpoint_contents x = read_checkpoint(a), y = read_checkpoint(b);
    BOOST_TEST(x.tensors.size() == y.tensors.size());
    std::size_t optimizer_tensors = 0;
    for (const auto& [name, value] : x.tensors)
    {
        BOOST_TEST_REQUIRE(y.tensors.count(name) == 1u, name);
        BOOST_TEST(bit_identical(value, y.tensors.at(name)), name);
        optimizer_tensors += name.rfind("optimizer/", 0) == 0;
    }
    BOOST_TEST(optimizer_tensors > 0u);
    for (const auto& [key, value] : x.metadata)
        if (key != "state.seconds" && key != "state.log") // times and file names differ
            BOOST_TEST(y.metadata.at(key) == value, key);
}

/// The records of a metrics log without their times.
std::vector<nlohmann::json> log_without_times(const std::string& path)
{
    std::vector<nlohmann::json> records;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
    {
        auto j = nlohmann::json::parse(line);
        j.erase("seconds");
        records.push_back(j);
    }
    return records;
}

/// The "state.step" of the checkpoint at `path`, or -1 while there is none to read.
long saved_step(const std::string& path)
{
    try
    {
        return std::stol(read_checkpoint_metadata(path).at("state.step"));
    }
    catch (const std::exception&)
    {
        return -1;
    }
}

/// Starts the built program with `args` (stdout to /dev/null); returns its pid.
pid_t start_program(const fs::path& program, std::vector<std::string> args)
{
    std::vector<char*> argv{const_cast<char*>("unfold")};
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0)
    {
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::execv(program.c_str(), argv.data());
        ::_exit(127);
    }
    return pid;
}

/// Runs the built program with `args` to the end; true when it exits with status 0.
bool run_program(const fs::path& program, const std::vector<std::string>& args)
{
    const pid_t pid = start_program(program, args);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/// Runs `unfold train ARGS --checkpoint PATH`, kills it with SIGKILL as soon as its checkpoint
/// has reached `kill_after` steps, and returns the step count of the checkpoint it left.
long kill_during(const fs::path& program, std::vector<std::string> args, const std::string& path,
                 long kill_after)
{
    args.insert(args.begin(), "train");
    args.push_back("--checkpoint=" + path);
    const pid_t pid = start_program(program, args);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (saved_step(path) < kill_after && std::chrono::steady_clock::now() < deadline &&
           ::waitpid(pid, &status, WNOHANG) == 0)
        ::usleep(200);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    BOOST_TEST_REQUIRE(WIFSIGNALED(status), "the run ended before it could be killed");
    BOOST_TEST(WTERMSIG(status) == SIGKILL);
    return saved_step(path);
}
} // namespace

BOOST_FIXTURE_TEST_CASE(a_run_killed_with_sigkill_resumes_bit_identical_to_one_never_stopped,
                        scratch)
{
    const fs::path program = built_program();
    BOOST_TEST_REQUIRE(fs::exists(program), program << " is not built");
    std::ofstream(file("text.txt")) << [] {
        std::string s;
        for (int i = 0; i < 400; ++i)
            s += "the quick brown fox " + std::to_string(i * 7 % 13) + " jumps. ";
        return s;
    }();
    const std::vector<std::string> common = {"--threads", "1", "--quiet", "--samples", "0"};
    const std::vector<std::pair<std::string, std::vector<std::string>>> runs = {
        {"adam, dropout, recurrent dropout, scheduled sampling",
         {"--cell",
          "lstm",
          "--layers",
          "2",
          "--hidden",
          "24",
          "--embed",
          "8",
          "--dropout",
          "0.3",
          "--recurrent-dropout",
          "0.2",
          "--feeding",
          "scheduled",
          "--sampling-unit",
          "token",
          "--optimizer",
          "adam",
          "--epochs",
          "3",
          "--steps",
          "40",
          "--batch",
          "16"}},
        {"sgd with momentum, dropout, scheduled sampling by sequence",
         {"--cell",          "gru",      "--layers",    "2",   "--hidden",  "24",
          "--embed",         "8",        "--dropout",   "0.5", "--feeding", "scheduled",
          "--sampling-unit", "sequence", "--optimizer", "sgd", "--epochs",  "3",
          "--steps",         "40",       "--batch",     "16",  "--task",    "reber"}},
        {"text: a state carried between chunks",
         {"--text", file("text.txt"), "--cell", "gru", "--hidden", "24", "--embed", "8",
          "--recurrent-dropout", "0.25", "--tbptt", "16", "--batch", "8", "--epochs", "3"}},
    };
    std::mt19937 pick(std::random_device{}());
    for (std::size_t r = 0; r < runs.size(); ++r)
    {
        const auto& [name, options] = runs[r];
        std::vector<std::string> args = options;
        args.insert(args.end(), common.begin(), common.end());
        const std::string whole = file("whole" + std::to_string(r)),
                          killed = file("killed" + std::to_string(r));
        std::vector<std::string> uninterrupted = {"train", "--checkpoint", whole, "--log",
                                                  whole + ".jsonl"};
        uninterrupted.insert(uninterrupted.end(), args.begin(), args.end());
        // Every run in the same program: the arithmetic is compiled once.
        BOOST_TEST_REQUIRE(run_program(program, uninterrupted), name);
        const long total = std::stol(read_checkpoint_metadata(whole).at("state.step"));

        // Killed at a random step: some steps after its last checkpoint are lost and redone.
        const long kill_after = std::uniform_int_distribution<long>(3, total * 2 / 3)(pick);
        std::vector<std::string> every = args;
        every.insert(every.end(), {"--checkpoint-every", "5", "--log", killed + ".jsonl"});
        const long left = kill_during(program, every, killed, kill_after);
        BOOST_TEST_MESSAGE(name << ": killed after step " << kill_after << ", its checkpoint at "
                                << left << " of " << total);
        BOOST_TEST(left >= 5);
        BOOST_TEST(left < total);

        BOOST_TEST_REQUIRE(run_program(program, {"train", "--resume", killed, "--quiet"}), name);
        BOOST_TEST_CONTEXT(name << ", killed after step " << kill_after)
        {
            check_same_run(whole, killed);
            // The log was cut back to the checkpoint and continued: it reads as one run.
            const auto a = log_without_times(whole + ".jsonl"),
                       b = log_without_times(killed + ".jsonl");
            BOOST_TEST(a.size() == std::size_t(total) + 3u); // a record per step and per epoch
            BOOST_TEST((a == b));
        }
    }
}

namespace
{
/// Rewrites the checkpoint at `path` with its metadata changed by `edit`.
void edit_metadata(const std::string& path, const std::function<void(checkpoint_metadata&)>& edit)
{
    checkpoint_contents c = read_checkpoint(path);
    edit(c.metadata);
    std::vector<std::string> names;
    names.reserve(c.tensors.size()); // no reallocation: the named tensors point in
    std::vector<unfold::detail::named_tensor> tensors;
    for (const auto& [name, value] : c.tensors)
    {
        names.push_back(name);
        tensors.push_back({&names.back(), &value});
    }
    unfold::detail::save_tensors_with(path, tensors, c.metadata, unfold::detail::write_fully);
}
} // namespace

BOOST_FIXTURE_TEST_CASE(a_checkpoint_from_before_a_run_option_existed_resumes_with_its_default,
                        scratch)
{
    // A checkpoint written before --patience and --recurrent-dropout existed lacks their keys; it
    // resumes as the run it was, with their defaults, and ends bit-identical to a run never
    // stopped. A recorded option that does not parse is refused, naming it.
    const fs::path program = built_program();
    BOOST_TEST_REQUIRE(fs::exists(program), program << " is not built");
    const std::vector<std::string> args = {
        "--hidden", "12", "--embed", "6",         "--epochs", "2",         "--steps", "30",
        "--batch",  "8",  "--quiet", "--threads", "1",        "--samples", "0"};
    const std::string whole = file("whole"), killed = file("killed");
    std::vector<std::string> uninterrupted = {"train", "--checkpoint", whole};
    uninterrupted.insert(uninterrupted.end(), args.begin(), args.end());
    BOOST_TEST_REQUIRE(run_program(program, uninterrupted));
    std::vector<std::string> every = args;
    every.insert(every.end(), {"--checkpoint-every", "5"});
    const long left = kill_during(program, every, killed, 10);
    BOOST_TEST_REQUIRE(left >= 10);
    BOOST_TEST_REQUIRE(left < 60);

    const std::string malformed = file("malformed");
    fs::copy_file(killed, malformed);
    edit_metadata(malformed, [](checkpoint_metadata& m) { m["run.hidden"] = "12x"; });
    const cli_result refused = run({"train", "--resume", malformed, "--quiet"});
    BOOST_TEST(refused.status == 2);
    BOOST_TEST(refused.err.find("metadata 'run.hidden' = '12x' is malformed") != std::string::npos,
               refused.err);

    edit_metadata(killed, [](checkpoint_metadata& m) {
        BOOST_TEST_REQUIRE(m.erase("run.patience") == 1u);
        BOOST_TEST_REQUIRE(m.erase("run.recurrent-dropout") == 1u);
    });
    BOOST_TEST_REQUIRE(run_program(program, {"train", "--resume", killed, "--quiet"}));
    check_same_run(whole, killed);
}

BOOST_FIXTURE_TEST_CASE(resuming_refuses_another_run_and_saving_refuses_to_replace_one, scratch)
{
    const std::string ckpt = file("run.safetensors");
    const std::vector<std::string> small = {"--hidden", "12", "--embed", "6",
                                            "--epochs", "2",  "--steps", "4",
                                            "--batch",  "8",  "--quiet", "--checkpoint"};
    auto train_with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = {"train"};
        args.insert(args.end(), small.begin(), small.end());
        args.push_back(ckpt);
        args.insert(args.end(), extra.begin(), extra.end());
        return run(args);
    };
    BOOST_TEST_REQUIRE(train_with({}).status == 0);
    const std::string saved = read_bytes(ckpt);

    // An existing checkpoint is never replaced by an unrelated run.
    const cli_result again = train_with({"--seed", "2"});
    BOOST_TEST(again.status == 2);
    BOOST_TEST(again.err.find(ckpt + " already exists") != std::string::npos, again.err);
    BOOST_TEST(again.err.find("--resume") != std::string::npos, again.err);
    BOOST_TEST(again.err.find("--force") != std::string::npos, again.err);
    BOOST_TEST(read_bytes(ckpt) == saved);

    // A resumed run must be the checkpoint's run: what differs is named.
    const cli_result other = run({"train", "--resume", ckpt, "--hidden", "16", "--cell", "lstm"});
    BOOST_TEST(other.status == 2);
    BOOST_TEST(other.err.find("--hidden 16 (the checkpoint's run has 12)") != std::string::npos,
               other.err);
    BOOST_TEST(other.err.find("--cell lstm (the checkpoint's run has gru)") != std::string::npos,
               other.err);
    const cli_result task = run({"train", "--resume", ckpt, "--task", "copy"});
    BOOST_TEST(task.status == 2);
    BOOST_TEST(task.err.find("--task copy") != std::string::npos, task.err);
    BOOST_TEST(read_bytes(ckpt) == saved);

    // A model-only file, a truncated one, a missing one: one line naming it, nothing written.
    const std::string plain = file("plain.safetensors");
    param_store s;
    s.add("w", zeros({2}));
    save_checkpoint(plain, s);
    const std::string cut = file("cut.safetensors");
    std::ofstream(cut, std::ios::binary) << saved.substr(0, saved.size() / 2);
    for (const auto& [path, what] : std::vector<std::pair<std::string, std::string>>{
             {plain, "no training state"}, {cut, cut}, {file("none"), file("none")}})
    {
        const cli_result r = run({"train", "--resume", path, "--quiet"});
        BOOST_TEST(r.status == 2, path);
        BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
        BOOST_TEST(r.err.find(what) != std::string::npos, r.err);
    }
    BOOST_TEST(read_bytes(cut) == saved.substr(0, saved.size() / 2));

    const cli_result interval = train_with({"--force", "--checkpoint-every", "10x"});
    BOOST_TEST(interval.status == 2);
    BOOST_TEST(interval.err.find("--checkpoint-every") != std::string::npos, interval.err);
    BOOST_TEST(read_bytes(ckpt) == saved);

    // --force replaces it, and the result is a new run from step 0.
    BOOST_TEST_REQUIRE(train_with({"--force", "--seed", "2"}).status == 0);
    BOOST_TEST(read_bytes(ckpt) != saved);
    BOOST_TEST(read_checkpoint_metadata(ckpt).at("run.seed") == "2");
}

BOOST_FIXTURE_TEST_CASE(resuming_a_text_run_refuses_a_changed_text, scratch)
{
    const std::string text = file("t.txt"), ckpt = file("t.safetensors");
    std::string words;
    for (int i = 0; i < 300; ++i)
        words += "abc def " + std::to_string(i % 10) + " ";
    std::ofstream(text) << words;
    const cli_result first =
        run({"train", "--text", text, "--hidden", "8", "--embed", "4", "--tbptt", "8", "--batch",
             "4", "--epochs", "2", "--steps", "5", "--quiet", "--checkpoint", ckpt});
    BOOST_TEST_REQUIRE(first.status == 0, first.err);
    std::ofstream(text) << words.substr(0, words.size() - 5) << "xyz. ";
    const cli_result r = run({"train", "--resume", ckpt, "--quiet"});
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.err.find("has changed since the checkpoint was saved") != std::string::npos,
               r.err);
}

BOOST_AUTO_TEST_CASE(the_best_epoch_is_the_first_of_the_best_in_the_metric_s_direction)
{
    auto epochs_of = [](std::vector<double> values) {
        std::vector<validation> v;
        for (double x : values)
            v.push_back({{{"loss", 1 - x}, {"exact_match", x}, {"bits_per_char", x}}, x});
        return v;
    };
    const auto v = epochs_of({0.2, 0.5, 0.1, 0.5, 0.3});
    BOOST_TEST(best_epoch(v, monitored_for("addition")) == 1u); // highest, first of equals
    BOOST_TEST(best_epoch(v, monitored_for("text")) == 2u);     // lowest bits per character
    BOOST_TEST(monitored_for("reber").name == "legal_next");
    BOOST_TEST(best_checkpoint_path("dir/run.safetensors") == "dir/run.best.safetensors");
    BOOST_TEST(best_checkpoint_path("run") == "run.best");
}

BOOST_FIXTURE_TEST_CASE(patience_stops_a_run_that_no_longer_improves_and_keeps_its_best, scratch)
{
    // A learning rate too small to change the greedy answers: exact match cannot improve after
    // the first epoch, so patience 2 stops the run after epoch 3 of 8.
    const std::string ckpt = file("run.safetensors");
    train_options o;
    o.model.hidden = 16;
    o.model.embed = 8;
    o.optimizer = "sgd";
    o.lr = 1e-12;
    o.epochs = 8;
    o.steps = 3;
    o.batch = 8;
    o.patience = 2;
    o.quiet = true;
    o.checkpoint = ckpt;
    const train_result r = train(o, stdout);
    BOOST_TEST(r.stopped_early);
    BOOST_TEST_REQUIRE(r.epochs.size() == 3u);
    BOOST_TEST(r.epochs[0].primary == r.epochs[2].primary);
    BOOST_TEST(read_checkpoint_metadata(ckpt).at("state.step") == "9");
    const std::string best = file("run.best.safetensors");
    BOOST_TEST_REQUIRE(fs::exists(best));
    BOOST_TEST(read_checkpoint_metadata(best).at("unfold.best_epoch") == "1");
    BOOST_TEST(load_model(best)->config().hidden == 16u); // a model checkpoint of its own

    // Resumed, a run that stopped early stays stopped: nothing more is trained.
    train_options again;
    again.resume = ckpt;
    again.quiet = true;
    const train_result resumed = train(read_run_options(ckpt, again), stdout);
    BOOST_TEST(resumed.stopped_early);
    BOOST_TEST(resumed.epochs.size() == 3u);
    BOOST_TEST(read_checkpoint_metadata(ckpt).at("state.step") == "9");
}

BOOST_FIXTURE_TEST_CASE(unfold_plot_draws_a_metrics_log_and_names_a_bad_line, scratch)
{
    const std::string log = file("run.jsonl"), image = file("run.svg");
    const cli_result trained =
        run({"train", "--hidden", "12", "--embed", "6", "--epochs", "2", "--steps", "5", "--batch",
             "8", "--quiet", "--checkpoint", file("run.safetensors"), "--log", log});
    BOOST_TEST_REQUIRE(trained.status == 0, trained.err);
    const cli_result plotted = run({"plot", log, "--output", image});
    BOOST_TEST_REQUIRE(plotted.status == 0, plotted.err);
    const std::string svg = read_bytes(image);
    for (const std::string label :
         {"run.jsonl", "training loss", "held-out loss", "held-out exact_match", "step"})
        BOOST_TEST(svg.find(">" + label + "<") != std::string::npos, label);

    std::string lines = read_bytes(log);
    const std::string garbled = file("garbled.jsonl");
    std::ofstream(garbled) << lines.substr(0, lines.find('\n') + 1) << "{\"loss\": 1}\n" << lines;
    const cli_result bad = run({"plot", garbled, "--output", file("bad.svg")});
    BOOST_TEST(bad.status == 2);
    BOOST_TEST(bad.err.find(garbled + ":2: not a metrics record") != std::string::npos, bad.err);
    BOOST_TEST(!fs::exists(file("bad.svg")));
    const cli_result missing = run({"plot", file("none.jsonl")});
    BOOST_TEST(missing.status == 2);
    BOOST_TEST(missing.err.find(file("none.jsonl")) != std::string::npos, missing.err);
}

BOOST_FIXTURE_TEST_CASE(a_text_run_says_what_it_trains_on_and_its_checkpoint_finds_its_text,
                        scratch)
{
    const std::string text = file("t.txt"), ckpt = file("t.safetensors");
    std::string words;
    for (int i = 0; i < 300; ++i)
        words += "abc def " + std::to_string(i % 10) + "\n";
    std::ofstream(text) << words;
    const cli_result trained =
        run({"train", "--text", text, "--hidden", "8", "--embed", "4", "--tbptt", "8", "--batch",
             "4", "--epochs", "1", "--steps", "3", "--samples", "0", "--checkpoint", ckpt});
    BOOST_TEST_REQUIRE(trained.status == 0, trained.err);
    BOOST_TEST(trained.out.find("held out the last 10%") != std::string::npos, trained.out);
    BOOST_TEST(trained.out.find("note: --steps 3 trains on the first 3 of the") !=
                   std::string::npos,
               trained.out);

    // No --text: eval scores the run's own held-out split; no --prompt: sample starts a line.
    const cli_result evaluated = run({"eval", "--checkpoint", ckpt});
    BOOST_TEST(evaluated.status == 0, evaluated.err);
    BOOST_TEST(evaluated.out.find("held-out split of " + text) != std::string::npos, evaluated.out);
    BOOST_TEST(evaluated.out.find("bits_per_char") != std::string::npos, evaluated.out);
    const cli_result sampled =
        run({"sample", "--checkpoint", ckpt, "--length", "20", "--top-k", "3"});
    BOOST_TEST(sampled.status == 0, sampled.err);
    BOOST_TEST(sampled.out.size() > 1u);

    // By default an epoch of text is one pass.
    const cli_result pass =
        run({"train", "--text", text, "--hidden", "8", "--embed", "4", "--tbptt", "8", "--batch",
             "4", "--epochs", "1", "--samples", "0", "--checkpoint", file("pass.safetensors")});
    BOOST_TEST_REQUIRE(pass.status == 0, pass.err);
    BOOST_TEST(pass.out.find("note:") == std::string::npos, pass.out);
    const std::size_t chunks = (words.size() * 9 / 10 / 4 - 1) / 8;
    BOOST_TEST(read_checkpoint_metadata(file("pass.safetensors")).at("state.step") ==
               std::to_string(chunks));
}

BOOST_AUTO_TEST_SUITE_END()
