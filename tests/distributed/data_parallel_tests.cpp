// Data-parallel training on 2 MPI ranks (Note [Data parallelism] in framework/data_parallel.hpp).
// Every case runs on both ranks; each also computes, alone, what one process would.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "apps/train.hpp"
#include "world.hpp"
#include <unfold/framework/data_parallel.hpp>

using namespace unfold;
using namespace unfold::app;
using unfold::test::world;

namespace
{
/// The largest |a − b| / (1 + |b|) over every parameter of two stores of the same model.
double largest_difference(const param_store& a, const param_store& b)
{
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t k = 0; k < a[i].size(); ++k)
        {
            const double x = a[i].value().data()[k], y = b[i].value().data()[k];
            worst = std::max(worst, std::abs(x - y) / (1 + std::abs(y)));
        }
    return worst;
}

/// True when every rank holds the same bits in every parameter of `store`.
bool same_bits_on_every_rank(const param_store& store)
{
    bool same = true;
    for (const param& p : store)
    {
        const tensor all =
            world().gather_rows(xt::reshape_view(p.value(), {std::size_t(1), p.size()}));
        for (int r = 1; r < world().size(); ++r)
            same = same && std::memcmp(all.data(), all.data() + std::size_t(r) * p.size(),
                                       p.size() * sizeof(real)) == 0;
    }
    return same;
}

model_config small_config(const std::string& cell, std::size_t layers)
{
    model_config c;
    c.cell = cell;
    c.layers = layers;
    c.hidden = 24;
    c.embed = 8;
    c.vocab = make_task("addition", 2)->vocab();
    return c;
}

/// One SGD step of `m` on `b` (this rank's part of a batch whose counted targets are `counted`),
/// the gradient averaged by `averager` when there is one; returns the gradient norm.
double sgd_step(model& m, optimizer& opt, const token_batch& b, std::size_t counted,
                gradient_averager* averager, int ranks)
{
    teacher_forcing teacher;
    tape t;
    if (averager)
        averager->watch(t);
    const var loss = run_loss(m.run(t, b, teacher), b);
    const double weight = double(b.counted()) * ranks / double(counted);
    opt.zero_grad();
    t.backward(loss * real(weight));
    if (averager)
        averager->finish();
    const double norm = clip_grad_norm(opt.params(), 1.0);
    opt.step();
    return norm;
}
} // namespace

BOOST_AUTO_TEST_SUITE(data_parallel)

BOOST_AUTO_TEST_CASE(the_job_has_two_ranks)
{
    BOOST_TEST(world().size() == 2);
    BOOST_TEST((world().rank() == 0 || world().rank() == 1));
}

BOOST_AUTO_TEST_CASE(broadcast_gives_every_rank_rank_0s_parameters)
{
    // Each rank initialises from its own seed; after the broadcast all hold rank 0's values.
    generator mine(100 + std::uint64_t(world().rank())), rank_0s(100);
    auto m = make_model(small_config("gru", 1), mine);
    auto expected = make_model(small_config("gru", 1), rank_0s);
    BOOST_TEST(!same_bits_on_every_rank(m->store()));
    check_same_parameters(world(), m->store());
    broadcast_parameters(world(), m->store());
    BOOST_TEST(same_bits_on_every_rank(m->store()));
    BOOST_TEST(largest_difference(m->store(), expected->store()) == 0);
}

BOOST_AUTO_TEST_CASE(half_batches_on_two_ranks_take_the_steps_of_one_process_on_the_whole)
{
    for (const char* cell : {"lstm", "gru"})
    {
        const model_config c = small_config(cell, 2);
        generator init_dp(7), init_one(7);
        auto dp = make_model(c, init_dp);   // data-parallel
        auto one = make_model(c, init_one); // one process, the whole batch
        broadcast_parameters(world(), dp->store());
        sgd_options so;
        so.lr = 0.1;
        so.momentum = 0.9;
        sgd opt_dp(params_of(dp->store()), so), opt_one(params_of(one->store()), so);
        gradient_averager averager(world(), params_of(dp->store()));
        const auto tk = make_task("addition", 2);
        generator data(11);
        const std::size_t batch = 8, share = batch / 2;
        bool same_bits = true;
        double norm_difference = 0;
        for (int step = 0; step < 6; ++step)
        {
            std::vector<example> ex;
            for (std::size_t i = 0; i < batch; ++i)
                ex.push_back(tk->draw(data));
            const token_batch b = one->batch_of(ex); // sequences of several lengths: masked
            const double norm_one = sgd_step(*one, opt_one, b, b.counted(), nullptr, 1);
            const double norm_dp =
                sgd_step(*dp, opt_dp, b.rows(std::size_t(world().rank()) * share, share),
                         b.counted(), &averager, 2);
            norm_difference = std::max(norm_difference, std::abs(norm_dp - norm_one) / norm_one);
            same_bits = same_bits && same_bits_on_every_rank(dp->store());
        }
        const double difference = largest_difference(dp->store(), one->store());
        BOOST_TEST_MESSAGE(cell << ": after 6 steps the parameters differ from one process's by "
                                << difference << " at most (relative), the gradient norms by "
                                << norm_difference);
        BOOST_TEST(same_bits, cell << ": the ranks' parameters differ after a step");
        // Float round-off only: a GEMM over 8 rows sums in another order than two over 4.
        BOOST_TEST(difference < 2e-5, cell);
        BOOST_TEST(norm_difference < 1e-4, cell);
    }
}

BOOST_AUTO_TEST_CASE(buckets_follow_the_order_backward_completes_the_parameters)
{
    // A 2-layer decoder: the output head and the top layer are bound after the bottom layer's
    // whole unroll, so backward completes them first; after the first step the buckets follow
    // that order, and every bucket starts during backward.
    const model_config c = small_config("lstm", 2);
    generator init(3);
    auto m = make_model(c, init);
    gradient_averager_options o;
    o.bucket_bytes = 1; // a bucket per parameter
    gradient_averager averager(world(), params_of(m->store()), o);
    BOOST_TEST(averager.buckets() == m->store().size());
    const auto tk = make_task("addition", 2);
    generator data(5);
    std::vector<std::string> first_order;
    for (int step = 0; step < 2; ++step)
    {
        std::vector<example> ex;
        for (int i = 0; i < 4; ++i)
            ex.push_back(tk->draw(data));
        const token_batch b = m->batch_of(ex);
        teacher_forcing teacher;
        tape t;
        averager.watch(t);
        std::vector<std::string> completed; // the order backward completes the parameters in
        struct order_recorder final : gradient_listener
        {
            gradient_averager* next;
            std::vector<std::string>* names;
            void ready(const param& p) override
            {
                names->push_back(p.name());
                next->ready(p);
            }
            void progress() override { next->progress(); }
        } recorder;
        recorder.next = &averager;
        recorder.names = &completed;
        t.set_gradient_listener(&recorder);
        t.backward(run_loss(m->run(t, b, teacher), b));
        averager.finish();
        std::vector<std::string> buckets;
        for (std::size_t k = 0; k < averager.buckets(); ++k)
            buckets.push_back(averager.bucket_parameters(k).at(0).name());
        BOOST_TEST_MESSAGE("step " << step << ": completed "
                                   << fmt::format("{}", fmt::join(completed, " "))
                                   << "; buckets now " << fmt::format("{}", fmt::join(buckets, " "))
                                   << "; the first bucket's all-reduce overlapped "
                                   << averager.seconds_overlapped(0) * 1e3 << " ms of backward");
        BOOST_TEST(completed.size() == m->store().size());
        BOOST_TEST(averager.started_during_backward() == averager.buckets());
        BOOST_TEST(buckets == completed,
                   "the buckets follow the order of the first step"); // rebuilt after step 0
        BOOST_TEST(completed.back().find("embed") != std::string::npos);
        BOOST_TEST(completed.front().find("l0") == std::string::npos); // not the bottom layer
    }
}

BOOST_AUTO_TEST_CASE(parameters_backward_does_not_reach_are_averaged_as_they_are)
{
    param_store store;
    param used = store.add("used", tensor({2}, real(0)));
    param unused = store.add("unused", tensor({3}, real(0)));
    unused.grad().fill(real(world().rank() + 1)); // e.g. left from an earlier backward
    gradient_averager averager(world(), params_of(store));
    tape t;
    averager.watch(t);
    t.backward(sum(t[used] * real(world().rank() + 1)));
    averager.finish();
    BOOST_TEST(used.grad().data()[0] == real(1.5)); // (1 + 2) / 2
    BOOST_TEST(unused.grad().data()[2] == real(1.5));
}

BOOST_AUTO_TEST_CASE(a_second_backward_in_one_step_is_a_clear_error)
{
    param_store store;
    param w = store.add("w", tensor({2}, real(1)));
    gradient_averager averager(world(), params_of(store));
    tape t;
    averager.watch(t);
    const var y = sum(t[w] * t[w]);
    t.backward(y);
    BOOST_CHECK_EXCEPTION(t.backward(y), unfold::error, [](const unfold::error& e) {
        const std::string m = e.what();
        return m.find("'w'") != std::string::npos &&
               m.find("completed twice before finish()") != std::string::npos;
    });
    averager.finish();
}

BOOST_AUTO_TEST_CASE(ranks_with_different_models_get_one_clear_error_each)
{
    // Rank 1's hidden layer is wider: both ranks raise the same error, naming both shapes.
    model_config c = small_config("gru", 1);
    if (world().rank() == 1)
        c.hidden = 32;
    generator init(1);
    auto m = make_model(c, init);
    BOOST_CHECK_EXCEPTION(check_same_parameters(world(), m->store()), unfold::error,
                          [](const unfold::error& e) {
                              const std::string s = e.what();
                              BOOST_TEST_MESSAGE(s);
                              return s.find("of rank 1 is 'rnn.weight_ih_l0' of shape (96, 8) "
                                            "where rank 0's is 'rnn.weight_ih_l0' of shape "
                                            "(72, 8)") != std::string::npos;
                          });
    // And a parameter that only one rank has.
    param_store store;
    store.add("w", tensor({2, 3}, real(0)));
    if (world().rank() == 1)
        store.add("extra", tensor({4}, real(0)));
    BOOST_CHECK_EXCEPTION(
        check_same_parameters(world(), store), unfold::error, [](const unfold::error& e) {
            const std::string s = e.what();
            BOOST_TEST_MESSAGE(s);
            return s.find("parameter 1 of rank 1, 'extra' of shape (4,), "
                          "is not in rank 0's model") != std::string::npos &&
                   s.find("rank 0 has 1 parameters, rank 1 has 2") != std::string::npos;
        });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(unfold_train_on_ranks)

namespace
{
train_options small_run()
{
    train_options o;
    o.model.cell = "gru";
    o.model.hidden = 32;
    o.model.embed = 16;
    o.optimizer = "sgd";
    o.epochs = 2;
    o.steps = 8;
    o.batch = 16;
    o.quiet = true;
    o.samples = 0;
    return o;
}

/// A text file of `n` characters every rank can read (rank 0 writes it).
std::string shared_text(std::size_t n)
{
    const std::string path =
        (std::filesystem::temp_directory_path() / "unfold-distributed-text.txt").string();
    if (world().rank() == 0)
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        const std::string words[] = {"the ", "state ", "is ", "carried ", "from ", "chunk ", "to "};
        for (std::size_t i = 0, k = 0; i < n; k = (k * 7 + 3) % 7)
        {
            f << words[k];
            i += words[k].size();
        }
    }
    world().barrier();
    return path;
}
/// Runs `o` alone and on the 2 ranks; checks that the ranks end with the same bits and within
/// float round-off of one process's parameters, and returns both runs.
std::pair<train_result, train_result> one_and_two(const train_options& o, const std::string& what)
{
    train_result one = train(o, stdout);           // alone, the whole batch
    train_result two = train(o, stdout, &world()); // half of it on each rank
    const double difference = largest_difference(two.trained->store(), one.trained->store());
    BOOST_TEST_MESSAGE(what << ": parameters differ from one process's by " << difference);
    BOOST_TEST(same_bits_on_every_rank(two.trained->store()), what);
    BOOST_TEST(difference < 1e-4, what);
    return {std::move(one), std::move(two)};
}
} // namespace

BOOST_AUTO_TEST_CASE(two_ranks_reach_what_one_process_reaches)
{
    const auto [one, two] = one_and_two(small_run(), "addition, 16 steps");
    BOOST_TEST_MESSAGE("held out: one process " << one.epochs.back().str() << "; two ranks "
                                                << two.epochs.back().str());
    BOOST_TEST(std::abs(two.last_loss - one.last_loss) < 1e-4 * one.last_loss);
    BOOST_REQUIRE(two.epochs.size() == one.epochs.size());
    for (std::size_t e = 0; e < one.epochs.size(); ++e)
        BOOST_TEST(std::abs(two.epochs[e].primary - one.epochs[e].primary) <= 1.0 / 64);
}

BOOST_AUTO_TEST_CASE(every_optimiser_takes_one_process_s_steps_on_two_ranks)
{
    for (const char* name : {"sgd", "adam", "adamw", "rmsprop", "adagrad"})
    {
        train_options o = small_run();
        o.optimizer = name;
        o.epochs = 1;
        o.clip = 0.5; // the norm of the averaged gradient, the same on every rank
        one_and_two(o, name);
    }
}

BOOST_AUTO_TEST_CASE(an_encoder_decoder_splits_its_sources_over_the_ranks)
{
    train_options o = small_run();
    o.model.task = "reverse";
    o.model.architecture = "seq2seq";
    o.epochs = 1;
    one_and_two(o, "seq2seq");
}

BOOST_AUTO_TEST_CASE(truncated_bptt_carries_each_ranks_own_sequences)
{
    train_options o = small_run();
    o.text_file = shared_text(4000);
    o.model.task = "text";
    o.model.cell = "lstm";
    o.tbptt = 16;
    o.batch = 4;
    o.epochs = 1;
    o.steps = 0; // one pass
    one_and_two(o, "text, one pass");
}

BOOST_AUTO_TEST_CASE(a_run_interrupted_on_one_rank_stops_on_both_and_resumes_exactly)
{
    const std::string dir =
        (std::filesystem::temp_directory_path() / "unfold-distributed-resume").string();
    if (world().rank() == 0)
    {
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    world().barrier();
    train_options o = small_run();
    o.text_file = shared_text(6000);
    o.model.task = "text";
    o.model.layers = 2;
    o.model.dropout = 0.2;           // masks drawn per rank
    o.model.recurrent_dropout = 0.1; // and carried state per rank
    o.tbptt = 16;
    o.batch = 4;
    o.epochs = 2;
    o.steps = 20;
    o.checkpoint = dir + "/whole.safetensors";
    const train_result whole = train(o, stdout, &world());

    // The same run, interrupted on rank 1 alone soon after its first checkpoint, then resumed.
    train_options killed = o;
    killed.checkpoint = dir + "/killed.safetensors";
    killed.checkpoint_every_steps = 2;
    std::thread interrupter;
    if (world().rank() == 1)
        interrupter = std::thread([path = killed.checkpoint] {
            while (!std::filesystem::exists(path))
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            std::raise(SIGINT);
        });
    const train_result stopped = train(killed, stdout, &world());
    if (interrupter.joinable())
        interrupter.join();
    BOOST_TEST(stopped.interrupted); // on both ranks
    const checkpoint_metadata saved = read_checkpoint_metadata(killed.checkpoint);
    const auto at = saved.at("state.step");
    // Dropout and feeding draw per rank; the data (the batches) alike on every rank.
    BOOST_TEST(saved.at("state.ranks") == "2");
    BOOST_TEST(saved.at("state.generator.dropout") != saved.at("state.generator.dropout@1"));
    BOOST_TEST(saved.count("state.generator.feeding@1") == 1u);
    BOOST_TEST(saved.count("state.generator.data@1") == 0u);
    BOOST_TEST_MESSAGE("interrupted on rank 1; both stopped, checkpoint at step " << at
                                                                                  << " of 40");
    BOOST_TEST(std::stoul(at) < 40);

    train_options resumed;
    resumed.resume = killed.checkpoint;
    resumed.text_file = o.text_file;
    resumed.quiet = true;
    resumed.samples = 0;
    resumed = read_run_options(resumed.resume, resumed);
    const train_result continued = train(resumed, stdout, &world());
    BOOST_TEST(!continued.interrupted);
    BOOST_TEST(largest_difference(continued.trained->store(), whole.trained->store()) == 0);
    BOOST_TEST(same_bits_on_every_rank(continued.trained->store()));
}

BOOST_AUTO_TEST_CASE(a_batch_that_does_not_split_over_the_ranks_is_refused)
{
    train_options o = small_run();
    o.batch = 15;
    BOOST_CHECK_EXCEPTION(train(o, stdout, &world()), unfold::error, [](const unfold::error& e) {
        return std::string(e.what()).find("--batch 15 does not split over 2") != std::string::npos;
    });
}

BOOST_AUTO_TEST_SUITE_END()
